"""Base class of every hardware component model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import simpy

from tlmsim.engine.trace import Stats, Tracer


@dataclass
class SimContext:
    """What all components of one simulation share: the clock, the tracer, the phase."""

    env: simpy.Environment
    tracer: Tracer
    phase: str = "setup"


class Component:
    """A named hardware block with statistics and tracing hooks.

    Subclasses take ``(ctx, name, cfg, ...ports)`` and are valid once constructed;
    active ones implement one ``run()`` process, passive targets only serve requests.
    """

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

    def record(self, state: str, start_ps: int, end_ps: int, label: str = "", **args) -> None:
        """Account an interval to the current phase and trace it."""
        if end_ps <= start_ps:
            return
        self.stats.add_time(self.ctx.phase, state, end_ps - start_ps)
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
