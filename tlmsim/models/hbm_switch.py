"""The HBM AXI switch of an UltraScale+ HBM device (AMD PG276) and the ports in front of it.

Structure (PG276, "Core Overview", "Features" and "Lateral AXI Switch Access Throughput
Loss", Figure 1 "HBM AXI Switch Connections"): per stack a 16 x 16 switch built from
mini-switches of 4 AXI masters (ports) x 4 pseudo-channels, a full crossbar inside; "two
lateral connections are provided between sets of 4 masters x 4 slaves within the switch,
with one lateral connected to M0 and M1, and the other connected to M2 and M3. The shared
connections limit the maximum throughput laterally to 50% of the full bandwidth". The U280's
two stacks form one chain of 8 mini-switches (any port reaches any pseudo-channel, UG1393
"HBM Configuration and Use").

Model: a lateral connection is one resource per mini-switch boundary, per master pair
(M0/M1 or M2/M3) and per side its masters are on; it carries ``lateral_fraction`` of a
port's rate, shared by every transfer routed over it. Traffic passing through a middle
mini-switch stays on the same master pair (an assumption: PG276 does not say). A port moves
data at ``axi_width_bits x axi_clock_mhz`` and no faster than its kernel-side master
(``kernel_width_bits`` x the accelerator clock) delivers it across the clock crossing.

Routing: the accelerator's ``ports_used`` ports sit at positions ``i * channels //
ports_used``; each pseudo-channel's bytes are split over the ports at fixed fractions chosen
once, at build time, to maximise the sustained rate of traffic spread over the address map
(a maximum concurrent flow), preferring local ports (fewest lateral crossings at that rate).
With one port per pseudo-channel that is the identity; with fewer, a mini-switch short of
ports borrows the lateral links of its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field, model_validator

from tlmsim.engine.configbase import CLOCK_MHZ, PORTS, TIME_NS, Section
from tlmsim.engine.protocol import Frame, Stateful
from tlmsim.engine.timebase import transfer_ps

CAPACITY_UNITS = 2520  # a port's rate in integer flow units (divisible by 1..10: exact shares)


class HbmSwitchConfig(Section):
    """The U280 HBM AXI switch: 32 ports in mini-switches of 4 ports x 4 pseudo-channels.

    A port reaching a pseudo-channel of another mini-switch crosses lateral links, which
    are shared and limit throughput (AMD PG276, "Lateral AXI Switch Access Throughput
    Loss"); each crossing adds latency.
    """

    ports_per_switch: int = Field(4, **PORTS, description="AXI ports (and pseudo-channels) per mini-switch")
    masters_per_lateral: int = Field(2, **PORTS, description="masters sharing one lateral connection (PG276)")
    ports_used: int = Field(**PORTS, description="AXI ports the accelerator drives, spread evenly over the switch")
    axi_width_bits: int = Field(256, ge=8, le=4096, description="AXI port data width (PG276: 256 bit)")
    axi_clock_mhz: float = Field(450, **CLOCK_MHZ, description="AXI port clock (PG276: 450 MHz for full rate)")
    kernel_width_bits: int = Field(512, ge=8, le=4096, description="kernel-side AXI master width per port, "
                                   "clocked by the accelerator clock")
    lateral_fraction: float = Field(0.5, gt=0.001, le=1, description="lateral connection rate / port rate")
    lateral_latency_ns: float = Field(**TIME_NS, description="extra latency per mini-switch crossed")

    @property
    def port_gbps(self) -> float:
        """Peak of one AXI port on the memory side: width x AXI clock."""
        return self.axi_width_bits / 8 * self.axi_clock_mhz / 1000

    def kernel_side_gbps(self, kernel_clock_mhz: float) -> float:
        """Peak of one port's kernel-side master: width x kernel clock."""
        return self.kernel_width_bits / 8 * kernel_clock_mhz / 1000

    @model_validator(mode="after")
    def _pairs_fit(self):
        if self.ports_per_switch % self.masters_per_lateral:
            raise ValueError(f"ports_per_switch={self.ports_per_switch} must be a multiple of "
                             f"masters_per_lateral={self.masters_per_lateral}")
        return self


@dataclass(frozen=True)
class Routes:
    """Fixed shares of each channel's bytes over ports and lateral links."""

    ports: tuple[tuple[tuple[int, float], ...], ...]  # per channel: (port, fraction)
    links: tuple[tuple[tuple[int, float], ...], ...]  # per channel: (link index, fraction)
    hops: tuple[int, ...]  # per channel: most lateral crossings of any of its paths
    link_count: int

    @property
    def identity(self) -> bool:
        """True when every channel goes whole through a port of its own and no link."""
        return all(p == ((ch, 1.0),) for ch, p in enumerate(self.ports)) and not any(self.links)

    def sustained_share(self, channels: range, channel_gbps: float, port_gbps: float, link_gbps: float) -> float:
        """GB/s per channel when every channel of ``channels`` streams at the same rate."""
        port_load = [0.0] * len(self.ports)
        link_load = [0.0] * self.link_count
        for ch in channels:
            for port, share in self.ports[ch]:
                port_load[port] += share
            for link, share in self.links[ch]:
                link_load[link] += share
        rate = channel_gbps
        rate = min([rate, *(port_gbps / x for x in port_load if x), *(link_gbps / x for x in link_load if x)])
        return rate


class HbmSwitch(Stateful):
    """When each used port and lateral link is next free (part of ``Memory``'s reuse state)."""

    REUSE_STATE = ("port_free", "link_free", "port_first", "link_first")
    WIRING = ("cfg", "routes", "port_gbps", "link_gbps", "one_to_one", "can_bind")

    def __init__(self, cfg: HbmSwitchConfig, channels: int, demand: range, channel_gbps: float,
                 channel_peak_gbps: float, kernel_clock_mhz: float | None):
        """``channel_gbps``: a channel's sustained rate (routing); ``channel_peak_gbps``: its peak."""
        self.cfg = cfg
        self.port_gbps = cfg.port_gbps if kernel_clock_mhz is None else \
            min(cfg.port_gbps, cfg.kernel_side_gbps(kernel_clock_mhz))
        self.link_gbps = cfg.lateral_fraction * self.port_gbps
        self.routes = route(channels, cfg.ports_per_switch, cfg.masters_per_lateral, cfg.ports_used,
                            (demand.start, len(demand)), channel_gbps / self.port_gbps, cfg.lateral_fraction)
        self.one_to_one = self.routes.identity
        # A port of its own at least as fast as its channel's peak never ends a transfer later
        # than the channel does (same bytes, each queue starts no earlier): nothing to track,
        # and no state that could keep identical layers from being reused.
        self.can_bind = not (self.one_to_one and self.port_gbps >= channel_peak_gbps)
        self.port_free = [0] * channels
        self.link_free = [0] * self.routes.link_count
        self.port_first = [0] * channels  # when each port's higher-QoS work ends
        self.link_first = [0] * self.routes.link_count

    def through(self, shares: list[tuple[int, int, int]], now: int, first: bool = False,
                ends: dict | None = None, cut_ins: list | None = None) -> int:
        """Reserve the ports and links for (channel, local start, bytes) shares; returns the end.

        In issue order unless ``first`` (a higher-QoS request): then a resource's transfer
        goes behind the higher-QoS work there and ahead of the lower-QoS work queued, which is
        pushed back; ``cut_ins`` gets (resource, begin, push) of each such overtaking. ``ends``,
        if given, gets each resource's end (``("port", i)`` or ``("link", i)``)."""
        if not self.can_bind:
            return now
        if self.one_to_one:  # each channel through its own, slower port
            loads = [(("port", ch), ch, nbytes, self.port_free, self.port_first, self.port_gbps)
                     for ch, _, nbytes in shares]
        else:
            ports: dict[int, float] = {}
            links: dict[int, float] = {}
            for ch, _, nbytes in shares:
                for port, share in self.routes.ports[ch]:
                    ports[port] = ports.get(port, 0.0) + nbytes * share
                for link, share in self.routes.links[ch]:
                    links[link] = links.get(link, 0.0) + nbytes * share
            loads = [(("port", i), i, nbytes, self.port_free, self.port_first, self.port_gbps)
                     for i, nbytes in sorted(ports.items())]
            loads += [(("link", i), i, nbytes, self.link_free, self.link_first, self.link_gbps)
                      for i, nbytes in sorted(links.items())]
        last = now
        for key, i, nbytes, free, higher, gbps in loads:
            time = transfer_ps(nbytes, gbps)
            if first and free[i] > max(now, higher[i]):  # lower-QoS work queued: go ahead of it
                begin = max(now, higher[i])
                end = higher[i] = begin + time
                free[i] += time
                cut_ins.append((key, begin, time))
            else:
                begin = free[i] if free[i] > now else now
                free[i] = end = begin + time
                if first:
                    higher[i] = end
            if ends is not None:
                ends[key] = end
            last = end if end > last else last
        return last

    def sustained_share(self, channels: range, channel_gbps: float) -> float:
        """GB/s per channel of ``channels`` streaming together through the switch."""
        return self.routes.sustained_share(channels, channel_gbps, self.port_gbps, self.link_gbps)

    def boundary_state(self, frame: Frame) -> tuple:
        """Time until each port and link is free, and free of higher-QoS work (0 once free: a
        free resource has no past)."""
        if not self.can_bind:
            return ()
        return tuple(tuple(max(f - frame.now, 0) for f in times)
                     for times in (self.port_free, self.link_free, self.port_first, self.link_first))


def used_ports(channels: int, ports_used: int) -> list[int]:
    """The ports the accelerator drives: spread as evenly as possible over the switch."""
    return [i * channels // ports_used for i in range(ports_used)]


@lru_cache(maxsize=64)
def route(channels: int, per_switch: int, per_lateral: int, ports_used: int, demand: tuple[int, int],
          channel_per_port: float, lateral_fraction: float) -> Routes:
    """Routes of ``demand`` = (first channel, count), each channel able to stream
    ``channel_per_port`` x a port's rate, through ``ports_used`` ports (see the module doc)."""
    ports = used_ports(channels, ports_used)
    if ports_used == channels and channel_per_port <= 1:  # every channel has a port at least as fast
        return Routes(tuple(((ch, 1.0),) for ch in range(channels)), ((),) * channels, (0,) * channels, 0)
    from tlmsim.models.hbm_flow import concurrent_routes  # networkx: only when a solve is needed

    return concurrent_routes(channels, per_switch, per_lateral, ports, range(demand[0], demand[0] + demand[1]),
                             max(1, round(channel_per_port * CAPACITY_UNITS)),
                             max(1, round(lateral_fraction * CAPACITY_UNITS)), CAPACITY_UNITS)
