"""Statistics and tracing shared by all components.

Every component reports what it did as intervals in a *state*: "busy" or
"stall:<reason>". ``Stats`` sums them per phase (prefill/decode); ``Tracer`` keeps
the intervals of a chosen window so they can be written as a Chrome/Perfetto trace and
drawn as a timeline. Plots and reports read these records, never live components.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


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


class Stats:
    """Time per (phase, state) of one component, plus free-form counts."""

    def __init__(self) -> None:
        self.time_ps: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add_time(self, phase: str, state: str, duration_ps: int) -> None:
        """Account ``duration_ps`` of ``state`` to ``phase``."""
        self.time_ps[phase][state] += duration_ps

    def add_count(self, phase: str, key: str, amount: int) -> None:
        """Add to a named count (bytes read, tiles, ...)."""
        self.counts[phase][key] += amount


def chrome_trace(slices: list[Slice], counters: list[Counter]) -> dict:
    """Chrome trace-event JSON (opens in ui.perfetto.dev): one thread per component.

    Complete ("X") events on one thread must nest, so overlapping intervals of one
    component (several reads in flight) go to extra threads named "track [2]", ...
    """
    placed = _assign_lanes(slices)
    names = sorted({name for name, _ in placed} | {c.track for c in counters})
    tid = {name: i + 1 for i, name in enumerate(names)}
    events: list[dict] = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0,
                           "args": {"name": "tlmsim accelerator"}}]
    events += [{"ph": "M", "name": "thread_name", "pid": 1, "tid": tid[n], "args": {"name": n}} for n in names]
    events += [{"ph": "X", "name": s.name, "cat": s.state, "pid": 1, "tid": tid[name],
                "ts": s.start_ps / 1e6, "dur": (s.end_ps - s.start_ps) / 1e6,
                "args": {"state": s.state, **s.args}} for name, s in placed]
    events += [{"ph": "C", "name": c.track, "pid": 1, "tid": tid[c.track], "ts": c.ts_ps / 1e6,
                "args": {"value": c.value}} for c in counters]
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def _assign_lanes(slices: list[Slice]) -> list[tuple[str, Slice]]:
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


def write_chrome_trace(path: Path, slices: list[Slice], counters: list[Counter]) -> None:
    """Write the trace JSON to ``path``."""
    Path(path).write_text(json.dumps(chrome_trace(slices, counters)))
