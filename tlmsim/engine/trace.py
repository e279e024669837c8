"""Statistics and tracing shared by all components.

Every component reports what it did as intervals in a *state*: "busy" or
"stall:<reason>". ``Stats`` sums them per phase (prefill/decode), with free-form counts
and per-index arrays (e.g. per memory channel); ``Tracer`` keeps the intervals of a
chosen window so they can be written as a Chrome/Perfetto trace and drawn as a
timeline. Plots and reports read these records, never live components.

Steady-state reuse (tlmsim/reuse.py) skips periods that repeat; it puts them back
afterwards: ``Stats.add_growth`` scales one period's growth, ``put_back`` copies the
period's trace records and moves the later ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tlmsim.engine.units import ceil_div


@dataclass
class Slice:
    """One traced interval of one component."""

    track: str
    state: str
    name: str
    start_ps: int
    end_ps: int
    args: dict = field(default_factory=dict)


@dataclass
class Counter:
    """One sample of a counter track (buffer occupancy, bytes in flight)."""

    track: str
    ts_ps: int
    value: float


class Tracer:
    """Keeps slices and counters while enabled (tracing every token would be huge)."""

    def __init__(self) -> None:
        self.enabled = True
        self.slices: list[Slice] = []
        self.counters: list[Counter] = []

    def slice(self, track: str, state: str, name: str, start_ps: int, end_ps: int, **args) -> None:
        """Record an interval if tracing is on."""
        if self.enabled and end_ps > start_ps:
            self.slices.append(Slice(track, state, name, start_ps, end_ps, args))

    def counter(self, track: str, ts_ps: int, value: float) -> None:
        """Record a counter sample if tracing is on."""
        if self.enabled:
            self.counters.append(Counter(track, ts_ps, value))

    def mark(self) -> tuple[int, int]:
        """How many slices and counter samples are recorded so far."""
        return len(self.slices), len(self.counters)


@dataclass(frozen=True)
class Repeat:
    """A skipped run as the trace sees it: the records between marks ``source`` and ``at``
    (one period) happen ``times`` more times, one period apart, and everything recorded from
    ``at`` on happened that much later."""

    source: tuple[int, int]  # Tracer.mark() where the repeated period began
    at: tuple[int, int]  # ... and where the run was skipped
    times: int
    period_ps: int
    copy_name: Callable[[str, int], str] | None = None  # name of a record in copy j (None: kept)
    later_name: Callable[[str], str] | None = None  # renames the records made from ``at`` ...
    later_until: tuple[int, int] | None = None  # ... up to this mark (None: to the end)


def put_back(slices: list[Slice], counters: list[Counter], repeats: list[Repeat]) -> tuple[list[Slice], list[Counter]]:
    """The trace of the whole run from the records of a run that skipped ``repeats``: each
    repeat's copies go where it was skipped, every later record moves by the time skipped
    before it (and is renamed while a repeat says so)."""
    return (_put_back(slices, repeats, 0, _copy_slices, _move_slice),
            _put_back(counters, repeats, 1, _copy_counters, None))


def _put_back(records: list, repeats: list[Repeat], which: int, copy, move) -> list:
    order = sorted(repeats, key=lambda r: r.at[which])
    final: list = []  # records[i] as it ends up (moved, renamed), without the copies
    out: list = []
    shift, renames, done = 0, [], 0
    for r in order:
        at = r.at[which]
        _finish(records[done:at], done, shift, renames, which, move, final, out)
        done = at
        for j in range(1, r.times + 1):
            out += copy(final[r.source[which]:at], j * r.period_ps, r.copy_name, j)
        shift += r.times * r.period_ps
        renames = [x for x in renames if x.later_until is None or x.later_until[which] > at]
        if r.later_name is not None and move is not None:  # counters carry no names
            renames.append(r)
    _finish(records[done:], done, shift, renames, which, move, final, out)
    return out


def _finish(records: list, first: int, shift: int, renames: list[Repeat], which: int, move, final: list,
            out: list) -> None:
    """Append ``records`` (indices from ``first``) moved by ``shift`` and renamed as they end up."""
    for i, rec in enumerate(records, first):
        active = [r.later_name for r in renames if r.later_until is None or i < r.later_until[which]]
        if shift or active:
            rec = move(rec, shift, active) if move else Counter(rec.track, rec.ts_ps + shift, rec.value)
        final.append(rec)
        out.append(rec)


def _move_slice(s: Slice, shift: int, renames: list) -> Slice:
    name = s.name
    for rename in renames:
        name = rename(name)
    return Slice(s.track, s.state, name, s.start_ps + shift, s.end_ps + shift, s.args)


def _copy_slices(slices: list[Slice], shift: int, rename, j: int) -> list[Slice]:
    if rename is None:
        return [Slice(s.track, s.state, s.name, s.start_ps + shift, s.end_ps + shift, s.args) for s in slices]
    return [Slice(s.track, s.state, rename(s.name, j), s.start_ps + shift, s.end_ps + shift, s.args) for s in slices]


def _copy_counters(counters: list[Counter], shift: int, _rename, _j: int) -> list[Counter]:
    return [Counter(c.track, c.ts_ps + shift, c.value) for c in counters]


# A snapshot of one phase of a Stats: (time per state, counts, arrays).
StatsSnapshot = tuple[dict[str, int], dict[str, int], dict[str, list[int]]]


class Stats:
    """Time per (phase, state) of one component, plus free-form counts and per-index arrays.

    Every counter of a component lives here, so steady-state reuse can scale any period's
    growth without knowing what the counters mean.
    """

    def __init__(self) -> None:
        self.time_ps: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.arrays: dict[str, dict[str, list[int]]] = defaultdict(dict)

    def add_time(self, phase: str, state: str, duration_ps: int) -> None:
        """Account ``duration_ps`` of ``state`` to ``phase``."""
        self.time_ps[phase][state] += duration_ps

    def add_count(self, phase: str, key: str, amount: int) -> None:
        """Add to a named count (bytes read, tiles, ...)."""
        self.counts[phase][key] += amount

    def array(self, phase: str, key: str, size: int) -> list[int]:
        """A per-index count of ``phase`` (e.g. ps per memory channel), zeros at first; callers
        add to its items in place."""
        arrays = self.arrays[phase]
        if key not in arrays:
            arrays[key] = [0] * size
        return arrays[key]

    def snapshot(self, phase: str) -> StatsSnapshot:
        """A copy of every counter of ``phase``."""
        return (dict(self.time_ps.get(phase, {})), dict(self.counts.get(phase, {})),
                {key: list(values) for key, values in self.arrays.get(phase, {}).items()})

    @staticmethod
    def growth(before: StatsSnapshot, after: StatsSnapshot) -> StatsSnapshot:
        """What every counter grew by from ``before`` to ``after`` (unchanged ones left out)."""
        times, counts = ({key: value - old.get(key, 0) for key, value in new.items() if value != old.get(key, 0)}
                         for old, new in zip(before[:2], after[:2]))
        arrays = {key: [v - b for v, b in zip(values, before[2].get(key, [0] * len(values)))]
                  for key, values in after[2].items()}
        return times, counts, arrays

    def add_growth(self, phase: str, growth: StatsSnapshot, times: int) -> None:
        """Add ``times`` x ``growth`` to the counters of ``phase``."""
        for key, value in growth[0].items():
            self.time_ps[phase][key] += times * value
        for key, value in growth[1].items():
            self.counts[phase][key] += times * value
        for key, values in growth[2].items():
            array = self.array(phase, key, len(values))
            for i, value in enumerate(values):
                array[i] += times * value


def chrome_trace(slices: list[Slice], counters: list[Counter], memories: dict[str, float] | None = None,
                 layer_of: dict[str, int | None] | None = None, markers: list[Slice] | None = None) -> dict:
    """Chrome trace-event JSON (opens in ui.perfetto.dev): one process track per component.

    Complete ("X") events on one thread must nest, so overlapping intervals of one
    component (several reads in flight) go to extra threads "hbm [2]", ... of the
    component's process. ``memories`` (name -> peak GB/s) adds a bandwidth counter per
    memory; ``layer_of`` (op name -> layer) adds the layer to each slice's args;
    ``markers`` (steps, layers) go to a separate "workload" process.
    """
    layer_of = layer_of or {}
    components = sorted({s.track for s in slices} | {_owner(c.track) for c in counters}, key=component_order)
    pid = {name: i + 1 for i, name in enumerate(components)}
    pid["workload"] = len(components) + 1
    events: list[dict] = []
    for name, p in pid.items():
        events += [{"ph": "M", "name": "process_name", "pid": p, "tid": 0, "args": {"name": name}},
                   {"ph": "M", "name": "process_sort_index", "pid": p, "tid": 0, "args": {"sort_index": p}}]
    events += _slice_events(slices, pid, layer_of)
    events += _slice_events(markers or [], {m.track: pid["workload"] for m in markers or []}, {}, by_track=True)
    events += [{"ph": "C", "name": c.track, "pid": pid[_owner(c.track)], "tid": 0, "ts": c.ts_ps / 1e6,
                "args": {"value": c.value}} for c in counters]
    for mem in memories or {}:
        if mem in pid:
            events += [{"ph": "C", "name": f"{mem} bandwidth (GB/s)", "pid": pid[mem], "tid": 0, "ts": ts / 1e6,
                        "args": {"value": gbps}} for ts, gbps in bandwidth_series(slices, mem)]
    return {"traceEvents": events, "displayTimeUnit": "ns"}


COMPONENT_ORDER = ["hbm", "ddr", "weight_dma", "kv_dma", "weight_buffer", "kv_buffer", "decoder", "pe_array",
                   "vector_unit", "controller"]


def component_order(track: str) -> tuple[int, str]:
    """Sort key: memories, DMAs, buffers, compute, controller; unknown tracks last."""
    return (COMPONENT_ORDER.index(track) if track in COMPONENT_ORDER else len(COMPONENT_ORDER), track)


def _owner(counter_track: str) -> str:
    """The component a counter belongs to ("weight_buffer tiles held" -> weight_buffer)."""
    return counter_track.split(" ", 1)[0]


def _slice_events(slices: list[Slice], pid: dict[str, int], layer_of: dict, by_track: bool = False) -> list[dict]:
    placed = _assign_lanes(slices, by_track)
    lanes = sorted({(s.track, lane) for lane, s in placed}, key=lambda tl: (tl[0], _lane_index(tl[1])))
    tid = {tl: i + 1 for i, tl in enumerate(lanes)}
    events = [{"ph": "M", "name": "thread_name", "pid": pid[track], "tid": tid[(track, lane)], "args": {"name": lane}}
              for track, lane in lanes]
    for lane, s in placed:
        args = {"state": s.state, **s.args}
        if layer_of.get(s.name) is not None:
            args["layer"] = layer_of[s.name]
        events.append({"ph": "X", "name": s.name, "cat": s.state, "pid": pid[s.track], "tid": tid[(s.track, lane)],
                       "ts": s.start_ps / 1e6, "dur": (s.end_ps - s.start_ps) / 1e6, "args": args})
    return events


def _lane_index(lane: str) -> int:
    return int(lane.rsplit("[", 1)[1][:-1]) if lane.endswith("]") else 1


def _assign_lanes(slices: list[Slice], by_track: bool = False) -> list[tuple[str, Slice]]:
    lane_ends: dict[str, list[int]] = defaultdict(list)
    placed = []
    for s in sorted(slices, key=lambda s: (s.track, s.start_ps)):
        ends = lane_ends[s.track]
        lane = next((i for i, end in enumerate(ends) if end <= s.start_ps), len(ends))
        if lane == len(ends):
            ends.append(0)
        ends[lane] = s.end_ps
        placed.append((s.track if lane == 0 else f"{s.track} [{lane + 1}]", s))
    return placed


def bandwidth_series(slices: list[Slice], track: str, bins: int = 400,
                     window: tuple[int, int] | None = None) -> list[tuple[int, float]]:
    """(bin start ps, GB/s) of one memory over its traced span (or ``window``): each
    transaction's bytes are spread evenly over the window its data moves in (``data_ps``,
    set by the memory), else over its request-to-completion interval."""
    spans = [(*_data_span(s), s.args["bytes"]) for s in slices if s.track == track and s.args.get("bytes")]
    if window is not None:
        spans = [t for t in spans if t[1] > window[0] and t[0] < window[1]]
    if not spans:
        return []
    lo, hi = window or (min(t[0] for t in spans), max(t[1] for t in spans))
    width = max(1, ceil_div(hi - lo, bins))
    moved = [0.0] * (ceil_div(hi - lo, width) + 1)
    for start, end, nbytes in spans:
        rate = nbytes / (end - start)
        first, last = max(start, lo), min(end, hi)
        for b in range((first - lo) // width, (last - 1 - lo) // width + 1):
            b_lo, b_hi = lo + b * width, lo + (b + 1) * width
            moved[b] += rate * (min(end, b_hi) - max(start, b_lo))
    # bytes per ps = 1e12 B/s = 1000 GB/s; the final sample returns the counter to 0.
    return [(lo + b * width, 1000.0 * m / width) for b, m in enumerate(moved[:-1])] + [(hi, 0.0)]


def _data_span(s: Slice) -> tuple[int, int]:
    """When a transaction's data moves: ``data_ps`` is relative to the slice's start."""
    start, end = s.args.get("data_ps") or (0, s.end_ps - s.start_ps)
    return (s.start_ps + start, s.start_ps + end) if end > start else (s.start_ps, s.end_ps)


def write_chrome_trace(path: Path, slices: list[Slice], counters: list[Counter], **options) -> None:
    """Write the trace JSON to ``path`` (options as for ``chrome_trace``)."""
    Path(path).write_text(json.dumps(chrome_trace(slices, counters, **options)))
