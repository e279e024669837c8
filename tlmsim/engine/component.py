"""Base class of every hardware component model, and the context components share."""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import ClassVar

import simpy

from tlmsim.engine.protocol import Stateful
from tlmsim.engine.trace import Stats, Tracer


@dataclass
class SimContext:
    """What all components of one simulation share: the clock, the tracer, the phase, and
    the registry of everything whose state decides the simulation (steady-state reuse walks
    it: tlmsim/reuse.py)."""

    env: simpy.Environment
    tracer: Tracer
    phase: str = "setup"
    components: list[Stateful] = field(default_factory=list)
    # (start ps, phase) of every phase so far: intervals are split at phase boundaries.
    phase_starts: list[tuple[int, str]] = field(default_factory=list)

    def enter_phase(self, phase: str) -> None:
        """From now on, time is accounted to ``phase``."""
        if phase != self.phase:
            self.phase = phase
            self.phase_starts.append((self.env.now, phase))

    def phase_shares(self, start_ps: int, end_ps: int) -> list[tuple[str, int]]:
        """[(phase, ps)] of the interval [start_ps, end_ps) split at phase boundaries (an
        interval that began before the first phase belongs to it)."""
        shares, end = [], end_ps
        for since, phase in reversed(self.phase_starts):
            if start_ps >= since or since == self.phase_starts[0][0]:
                shares.append((phase, end - start_ps))
                return shares
            if end > since:
                shares.append((phase, end - since))
                end = since
        return shares or [(self.phase, end_ps - start_ps)]

    def register(self, part: Stateful) -> None:
        """Add a participant (components register themselves; the builder adds other state
        holders, such as the controller's program)."""
        self.components.append(part)


class Component(Stateful):
    """A named hardware block with statistics and tracing hooks.

    Subclasses take ``(ctx, name, cfg, ...ports)`` and are valid once constructed;
    active ones implement one ``run()`` process (started with ``start``), passive targets
    only serve requests. Each subclass declares its attributes for steady-state reuse
    (``REUSE_STATE``, ``WIRING``, ``CACHES``) and returns its reuse state from
    ``boundary_state`` (tlmsim/reuse.py); one that does not turns reuse off.
    """

    WIRING = ("ctx", "env", "name", "stats", "log", "process")

    # What the component is to the application (reports group and filter by it):
    # memory (off-chip channels), transfer (DMAs), buffer (on-chip storage), compute
    # (throughput units that can bound a run), control (sequencing only).
    role: ClassVar[str] = "unknown"

    def __init__(self, ctx: SimContext, name: str):
        self.ctx = ctx
        self.env = ctx.env
        self.name = name
        self.stats = Stats()
        self.log = logging.getLogger(f"tlmsim.{name}")
        ctx.register(self)

    def start(self, generator: Generator) -> simpy.Process:
        """Start a process of this component; the events it schedules are owned by it."""
        process = self.env.process(generator)
        process.owner = self.name  # read by tlmsim.engine.reuse.Environment's table of pending events
        return process

    def record(self, state: str, start_ps: int, end_ps: int, label: str = "", **args) -> None:
        """Account an interval to the phases it lies in and trace it."""
        if end_ps <= start_ps:
            return
        ctx = self.ctx
        if not ctx.phase_starts or start_ps >= ctx.phase_starts[-1][0]:
            self.stats.add_time(ctx.phase, state, end_ps - start_ps)
        else:  # the interval began in an earlier phase: each phase gets its part
            for phase, ps in ctx.phase_shares(start_ps, end_ps):
                if ps > 0:
                    self.stats.add_time(phase, state, ps)
        if self.ctx.tracer.enabled:
            self.ctx.tracer.slice(self.name, state, label or state, start_ps, end_ps, **args)

    def hold(self, state: str, duration_ps: int, label: str = "", **args):
        """Spend ``duration_ps`` in ``state`` (a SimPy generator: ``yield from``)."""
        start = self.env.now
        yield self.env.timeout(duration_ps)
        self.record(state, start, self.env.now, label, **args)

    def wait(self, event, reason: str, label: str = ""):
        """Wait for ``event``, accounting the wait as a stall with ``reason``."""
        start = self.env.now
        value = yield event
        self.record(f"stall:{reason}", start, self.env.now, label)
        return value
