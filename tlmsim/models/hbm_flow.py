"""Port and lateral-link shares of each pseudo-channel: a maximum concurrent flow (networkx).

The network (tlmsim/models/hbm_switch.py describes the switch): each demanded channel sends
``d`` units to a port; inside its mini-switch it reaches any used port; leaving it, it takes
a lateral connection of one master pair toward the masters' side, one per boundary crossed,
each carrying at most ``link_units``; a port carries at most ``port_units``. The largest
``d`` every channel can send at once (binary search over integer ``d``, each test one
maximum flow) is then routed at least cost: a channel's own port first, then another local
port, then the fewest lateral crossings. Capacities are integers so the solve is exact and
deterministic.
"""

from __future__ import annotations

import networkx as nx

from tlmsim.models.hbm_switch import Routes

LOCAL_OTHER_PORT = 1  # cost of a local port other than the channel's own
CROSSING = 16  # cost of one lateral crossing: dearer than any local choice


def concurrent_routes(channels: int, per_switch: int, per_lateral: int, ports: list[int], demand: range,
                      channel_units: int, link_units: int, port_units: int) -> Routes:
    """Routes of ``demand`` channels through ``ports`` at the highest common rate."""
    graph = _network(channels, per_switch, per_lateral, ports, demand, link_units, port_units)
    d = _max_common_demand(graph, demand, channel_units)
    for ch in demand:
        graph.add_edge("src", ("pc", ch), capacity=d, weight=0)
    graph.nodes["src"]["demand"] = -d * len(demand)
    graph.nodes["sink"]["demand"] = d * len(demand)
    _, flow = nx.network_simplex(graph)
    return _decompose(flow, channels, per_switch, per_lateral, demand, d)


def _network(channels: int, per_switch: int, per_lateral: int, ports: list[int], demand: range,
             link_units: int, port_units: int) -> nx.DiGraph:
    switches, pairs = channels // per_switch, per_switch // per_lateral
    graph = nx.DiGraph()
    graph.add_node("src", demand=0)
    graph.add_node("sink", demand=0)
    for p in ports:
        graph.add_edge(("port", p), "sink", capacity=port_units, weight=0)
    for ch in demand:
        here = ch // per_switch
        for p in ports:
            if p // per_switch == here:
                graph.add_edge(("pc", ch), ("port", p), weight=0 if p == ch else LOCAL_OTHER_PORT)
        for q in range(pairs):
            for side in ("w", "e"):
                graph.add_edge(("pc", ch), ("out", here, q, side), weight=0)
    for s in range(switches):
        for q in range(pairs):
            for side, step in (("w", -1), ("e", 1)):
                nxt = s + step
                if 0 <= nxt < switches:  # the connection across this boundary toward the masters
                    graph.add_edge(("out", s, q, side), ("in", nxt, q, side), capacity=link_units, weight=CROSSING)
                    graph.add_edge(("in", s, q, side), ("out", s, q, side), weight=0)  # passing through
                for p in ports:
                    if p // per_switch == s and p % per_switch // per_lateral == q:
                        graph.add_edge(("in", s, q, side), ("port", p), weight=0)
    return graph


def _max_common_demand(graph: nx.DiGraph, demand: range, channel_units: int) -> int:
    """Largest integer d <= channel_units that every channel of ``demand`` can send at once."""
    port_units = sum(graph.edges[u, "sink"]["capacity"] for u in graph.predecessors("sink"))
    lo, hi = 0, min(channel_units, port_units // len(demand))  # no more than the ports carry
    if _feasible(graph, demand, hi):  # the usual case: one maximum flow
        return hi
    while lo < hi - 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _feasible(graph, demand, mid) else (lo, mid)
    return lo


def _feasible(graph: nx.DiGraph, demand: range, d: int) -> bool:
    """True if every channel of ``demand`` can send ``d`` units at once."""
    trial = graph.copy()
    for ch in demand:
        trial.add_edge("src", ("pc", ch), capacity=d)
    return nx.maximum_flow_value(trial, "src", "sink") == d * len(demand)


def link_index(boundary: int, pair: int, masters_east: bool, pairs: int) -> int:
    """Index of the lateral connection across ``boundary`` (between mini-switches boundary and
    boundary + 1) of master pair ``pair`` whose masters are east (or west) of it."""
    return (boundary * pairs + pair) * 2 + masters_east


def _decompose(flow: dict, channels: int, per_switch: int, per_lateral: int, demand: range, d: int) -> Routes:
    """Split the flow into paths per channel: (port, fraction) and (link, fraction) shares."""
    pairs, switches = per_switch // per_lateral, channels // per_switch
    left = {u: dict(vs) for u, vs in flow.items()}
    ports: list[dict[int, float]] = [{} for _ in range(channels)]
    links: list[dict[int, float]] = [{} for _ in range(channels)]
    hops = [0] * channels
    for ch in demand:
        while any(v > 0 for v in left[("pc", ch)].values()):
            path = [("pc", ch)]
            while path[-1] != "sink":
                path.append(next(v for v, f in left[path[-1]].items() if f > 0))
            amount = min(left[u][v] for u, v in zip(path, path[1:]))
            crossed = 0
            for u, v in zip(path, path[1:]):
                left[u][v] -= amount
                if u[0] == "out" and v[0] == "in":  # a lateral connection
                    boundary = min(u[1], v[1])
                    link = link_index(boundary, u[2], u[3] == "e", pairs)
                    links[ch][link] = links[ch].get(link, 0.0) + amount / d
                    crossed += 1
            port = path[-2][1]
            ports[ch][port] = ports[ch].get(port, 0.0) + amount / d
            hops[ch] = max(hops[ch], crossed)
    return Routes(tuple(tuple(sorted(p.items())) for p in ports), tuple(tuple(sorted(x.items())) for x in links),
                  tuple(hops), max(1, (switches - 1) * pairs * 2))
