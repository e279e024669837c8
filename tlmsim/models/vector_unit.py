"""Vector unit: RMSNorm, softmax, activations, RoPE, residual adds.

Ports: ``commands`` (a queue of frozen ``VectorCommand``s from the controller) and
``done_port`` (a ``Completion`` per command).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Annotated

import simpy
from pydantic import Field

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.configbase import CYCLES, Section
from tlmsim.engine.payload import Completion
from tlmsim.engine.ports import InitiatorPort, QueueTarget
from tlmsim.engine.protocol import Frame
from tlmsim.engine.timebase import cycles_to_ps
from tlmsim.engine.units import ceil_div

CyclesPerElement = Annotated[float, Field(ge=0, le=10**6)]


class VectorUnitConfig(Section):
    """SIMD unit for norms, softmax, activations, RoPE and residual adds."""

    lanes: int = Field(ge=1, le=65536, description="elements per cycle")
    latency_cycles: int = Field(16, **CYCLES)
    cycles_per_element: dict[str, CyclesPerElement] = Field(
        default_factory=lambda: {"rmsnorm": 2, "layernorm": 3, "softmax": 3, "activation": 2,
                                 "elementwise": 1, "rope_table": 2},
        description="issue cycles per element and lane for each vector op")


@dataclass(frozen=True)
class VectorCommand:
    """Apply ``vector_op`` to ``elements`` elements; ``work`` is the issuer's id for it."""

    label: str
    vector_op: str
    elements: int
    work: Hashable


class VectorUnit(Component):
    """``lanes`` elements per cycle, ``cycles_per_element[op]`` issue slots each."""

    role = "compute"
    REUSE_STATE = ("cmd", "since", "incoming")
    WIRING = ("cfg", "clock_mhz", "commands", "done_port")

    def __init__(self, ctx: SimContext, name: str, cfg: VectorUnitConfig, clock_mhz: float):
        super().__init__(ctx, name)
        self.cfg = cfg
        self.clock_mhz = clock_mhz
        self.commands = QueueTarget(ctx.env, name, VectorCommand)
        self.done_port = InitiatorPort(name, Completion)
        self.cmd: VectorCommand | None = None  # the command being executed
        self.since = 0  # when it started
        self.incoming: simpy.Event | None = None  # the request for the next command while idle
        self.process = self.start(self.run())

    def run(self):
        """Execute commands in order."""
        while True:
            self.cmd = None
            self.incoming = self.commands.get()
            cmd = self.cmd = yield self.incoming
            self.incoming = None
            self.since = self.env.now
            yield from self.hold("busy", self.op_ps(cmd.vector_op, cmd.elements), cmd.label, elements=cmd.elements)
            self.done_port.request(Completion(cmd.work, cmd.label, self.env.now))

    def boundary_state(self, frame: Frame) -> tuple:
        """The command and since when (relative to the boundary), queued commands and a command
        on its way in."""
        cmd, incoming = self.cmd, self.incoming
        return (None if cmd is None else frame.name(cmd.label), frame.time(self.since) if cmd else 0,
                tuple(frame.name(c.label) for c in self.commands.queued()),
                frame.name(incoming.value.label) if incoming is not None and incoming.triggered else None)

    def cost(self, vector_op: str) -> float:
        """Issue cycles per element of ``vector_op``."""
        if vector_op not in self.cfg.cycles_per_element:
            raise KeyError(f"accelerator.vector_unit.cycles_per_element has no entry for '{vector_op}'; add one")
        return self.cfg.cycles_per_element[vector_op]

    def op_ps(self, vector_op: str, elements: int) -> int:
        """Time of one vector op including pipeline latency."""
        cycles = ceil_div(int(elements * self.cost(vector_op)), self.cfg.lanes) + self.cfg.latency_cycles
        return cycles_to_ps(cycles, self.clock_mhz)

    def ideal_ps(self, vector_op: str, elements: int) -> int:
        """Throughput-only bound for the roofline."""
        return cycles_to_ps(ceil_div(int(elements * self.cost(vector_op)), self.cfg.lanes), self.clock_mhz)
