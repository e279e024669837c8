"""Exact steady-state reuse: signatures at boundaries, skips, and putting skipped work back.

gem5 checkpoints a system by asking each SimObject to serialize exactly the state it
declares, after draining it to a quiescent point; the simulator never digs into an
object's internals. Exact fast-forward here follows the same discipline:

* Every participant declares its state (tlmsim/engine/protocol.py); what a process waits
  for is declared state too (an explicit ``activity``); what is pending comes from
  ``Environment.pending``.
* ``ReuseEngine`` walks the registry (``SimContext.components``). An attribute declared
  neither way, or an ``UNKNOWN`` state, turns reuse off for the run (one warning and
  ``disabled_reason``): slower, never wrong. When the signatures of two boundaries are
  equal and the application says the following units repeat, every participant
  ``advance``s past them itself; afterwards, in a pure step, every ``Stats`` grows by the
  skipped units and the trace gets the skipped periods back (``tlmsim.engine.trace.put_back``).

The engine knows nothing of layers, tiles or memories: what repeats and how names and
addresses relate to a boundary come from the application (tlmsim/models/steady_state.py).
"""

from __future__ import annotations

import bisect
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heappop, heappush
from itertools import count

import simpy
from simpy.events import NORMAL

from tlmsim.engine.protocol import NO_REPEAT, UNKNOWN, Frame, RepeatUnit, Stateful, declaration_problems, owned_parts
from tlmsim.engine.trace import Repeat, Stats, StatsSnapshot, put_back

log = logging.getLogger("tlmsim.engine.reuse")


class Environment(simpy.Environment):
    """A SimPy environment that keeps a public table of its pending events.

    Every event goes through ``schedule`` (SimPy's public hook); the table records its due
    time, priority, kind and who scheduled it: a process (whose ``owner``, set by
    ``Component.start``, names its component), else whoever scheduled the event being
    processed (a callback's events belong to whoever caused them). ``step`` processes the
    event SimPy's queue pops: both are ordered by (due, priority, order of scheduling), so
    the table pops the same entry.
    """

    def __init__(self, initial_time: int = 0) -> None:
        super().__init__(initial_time)
        # SimPy binds its event factories to the instance only for its own class: do it here.
        self.process, self.timeout, self.event = self.process, self.timeout, self.event
        self.all_of, self.any_of = self.all_of, self.any_of
        self._pending: list[tuple] = []  # heap of (due, priority, order, event class, process or cause)
        self._order = count()
        self._cause: simpy.Process | None = None  # who scheduled the event being processed
        self._clock = initial_time  # ``now``, kept here as well: cheaper than the property

    def schedule(self, event: simpy.Event, priority: int = NORMAL, delay: int = 0) -> None:
        """Schedule ``event`` (SimPy's own) and note it in the table."""
        _schedule(self, event, priority, delay)
        heappush(self._pending, (self._clock + delay, priority, next(self._order), event.__class__,
                                 self.active_process or self._cause))

    def step(self) -> None:
        """Process the next event (SimPy's own), dropping it from the table; SimPy's clock
        moves to its due time."""
        if self._pending:
            self._clock, _, _, _, self._cause = heappop(self._pending)
        _step(self)

    def pending(self, now: int) -> tuple:
        """Every pending event in processing order: (due relative to ``now``, priority, kind, owner)."""
        return tuple((due - now, priority, kind.__name__, getattr(by, "owner", None))
                     for due, priority, _, kind, by in sorted(self._pending))


_schedule, _step = simpy.Environment.schedule, simpy.Environment.step


@dataclass
class Mark:
    """The system at one boundary."""

    at_ps: int
    signature: tuple | None  # None: it cannot repeat here
    stats: list[tuple[Stats, StatsSnapshot]]
    traced: tuple[int, int]  # Tracer.mark()
    skips: int  # skips made before it


@dataclass
class Skip:
    """One skipped run and what puts it back: one period's growth of every Stats, its trace."""

    unit: RepeatUnit
    at_ps: int  # simulated time of the skip
    period_ps: int
    phase: str
    growth: list[tuple[Stats, StatsSnapshot]]
    trace: Repeat

    @property
    def shift_ps(self) -> int:
        """Time the skipped units take."""
        return self.unit.periods * self.period_ps


class ReuseEngine:
    """Signatures of the registered participants at boundaries, skips, and putting them back."""

    def __init__(self, ctx, enabled: bool, off_reason: str | None = None) -> None:
        self.ctx = ctx
        self.enabled = enabled
        self.disabled_reason = None if enabled else off_reason
        self.skips: list[Skip] = []
        self._skip_times: list[int] = []  # when each skip happened
        self._shifts: list[int] = [0]  # time skipped before the i-th skip
        self._finished = False
        self._checked = -1  # participants that passed the full declaration check
        self._splitting: tuple[int, list[Stateful]] = (-1, [])  # (registry size, parts with close_intervals)
        self._watched: list[tuple[object, int]] = []  # they and their owned parts, with their referents
        if enabled and not isinstance(ctx.env, Environment):
            self._disable("the environment keeps no table of pending events (use tlmsim.engine.reuse.Environment)")
        self._check_declarations()

    def _check_declarations(self) -> None:
        """Turn reuse off if any participant leaves an attribute undeclared (checked at every
        mark: an attribute may appear after construction)."""
        if not self.enabled:
            return
        parts = self.ctx.components
        if len(parts) == self._checked and all(len(gc.get_referents(obj)) == n for obj, n in self._watched):
            return  # the same participants with as many attributes: the full check still holds
        registered = frozenset(id(part) for part in parts)
        for part in parts:
            problems = declaration_problems(part, _name(part), registered)
            if problems:
                if self.skips:  # earlier skips were decided without it: they may be wrong
                    raise RuntimeError(f"{problems[0]} after steady-state reuse had skipped work; "
                                       f"declare it in REUSE_STATE, WIRING or CACHES")
                self._disable(problems[0])
                return
        self._checked = len(parts)
        watched = [*parts, *(obj for part in parts for obj, _ in owned_parts(part, "", registered))]
        self._watched = [(obj, len(gc.get_referents(obj))) for obj in watched]

    def _disable(self, reason: str) -> None:
        log.warning("%s: steady-state reuse is off for this run (slower, never wrong)", reason)
        self.enabled = False
        self.disabled_reason = reason

    # -- boundaries ------------------------------------------------------------------

    def boundary(self) -> None:
        """Split every participant's open intervals here (call at every boundary)."""
        parts = self.ctx.components
        if self._splitting[0] != len(parts):  # only the few that keep open intervals (tile boundaries are many)
            self._splitting = (len(parts), [p for p in parts
                                            if type(p).close_intervals is not Stateful.close_intervals])
        for part in self._splitting[1]:
            part.close_intervals()

    def mark(self, frame: Frame) -> Mark | None:
        """The system at the boundary ``frame``; None once reuse is off."""
        self._check_declarations()
        if not self.enabled:
            return None
        ctx = self.ctx
        states: list = [ctx.phase, ctx.tracer.enabled, ctx.env.pending(frame.now)]
        repeatable = True
        for part in ctx.components:
            state = part.boundary_state(frame)
            if state is UNKNOWN:
                self._disable(f"{_name(part)} does not declare its boundary state")
                return None
            repeatable = repeatable and state is not NO_REPEAT
            states.append(state)
        if not repeatable:
            return Mark(frame.now, None, [], ctx.tracer.mark(), len(self.skips))
        snapshot = [(part.stats, part.stats.snapshot(ctx.phase)) for part in ctx.components
                    if isinstance(getattr(part, "stats", None), Stats)]
        return Mark(frame.now, tuple(states), snapshot, ctx.tracer.mark(), len(self.skips))

    @staticmethod
    def repeats(previous: Mark | None, mark: Mark | None) -> bool:
        """True if the system at ``mark`` is the system at ``previous`` moved forward in time."""
        return (previous is not None and mark is not None and previous.signature is not None
                and previous.signature == mark.signature)

    def skip(self, unit: RepeatUnit, previous: Mark, mark: Mark, copy_name: Callable[[str, int], str] | None = None,
             later_name: Callable[[str], str] | None = None) -> Skip | None:
        """Skip ``unit`` (the period from ``previous`` to ``mark`` repeats): every participant
        advances past it. None if it cannot be skipped (a participant has reached it, or the
        period holds another skip). ``copy_name(name, j)`` names the trace records of the j-th
        repeated period; ``later_name`` renames those made after the skip until ``end_renames``."""
        participants = self.ctx.components
        if (not self.enabled or not self.repeats(previous, mark) or previous.skips != len(self.skips)
                or not all(part.can_advance(unit) for part in participants)):
            return None
        for part in participants:
            part.advance(unit)
        period = mark.at_ps - previous.at_ps
        pairs = zip(previous.stats, mark.stats)
        growth = [(stats, Stats.growth(before, after)) for (stats, before), (_, after) in pairs]
        skip = Skip(unit, mark.at_ps, period, self.ctx.phase, growth,
                    Repeat(previous.traced, mark.traced, unit.periods, period, copy_name, later_name))
        self.skips.append(skip)
        self._skip_times.append(skip.at_ps)
        self._shifts.append(self._shifts[-1] + skip.shift_ps)
        return skip

    def end_renames(self) -> None:
        """Records made from now on keep their names."""
        now = self.ctx.tracer.mark()
        for skip in self.skips:
            if skip.trace.later_name is not None and skip.trace.later_until is None:
                skip.trace = Repeat(**{**skip.trace.__dict__, "later_until": now})

    # -- putting skipped runs back -----------------------------------------------------

    def finish(self) -> None:
        """After the run: every statistic grows by each skipped run, the trace gets them back."""
        if self._finished:
            return
        self._finished = True
        for skip in self.skips:
            for stats, growth in skip.growth:
                stats.add_growth(skip.phase, growth, skip.unit.periods)
        tracer = self.ctx.tracer
        if self.skips:
            tracer.slices, tracer.counters = put_back(tracer.slices, tracer.counters, [s.trace for s in self.skips])

    def shift_before(self, t: int) -> int:
        """Total time skipped before simulated time ``t`` (skips are in time order)."""
        return self._shifts[bisect.bisect_left(self._skip_times, t)]

    def real_time(self, t: int | None) -> int | None:
        """The time ``t`` of the simulation stands for once skipped runs are put back."""
        return None if t is None else t + self.shift_before(t)


def _name(part: object) -> str:
    return getattr(part, "name", type(part).__name__)
