"""Controller: dispatches the program's ops in order to the units that execute them.

The controller walks the steps (prefill, then one per generated token) and, within a
step, the ops in graph order. An op is dispatched once the ops it depends on are done
(in-order issue, like a simple sequencer): matmuls to the PE array, vector ops to the
vector unit (frozen commands on their queues), embedding gathers and KV-cache appends
to memory (transactions on its memory ports). Units answer on ``completions`` with a
``Completion`` naming the op. Weight and KV tiles are not fetched by dispatch: the DMAs
walk the same program (tlmsim/models/program.py) ahead of it as far as the buffers allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.payload import Command, Completion, Transaction
from tlmsim.engine.ports import InitiatorPort, QueuePort, TargetPort
from tlmsim.engine.protocol import Frame
from tlmsim.models.pe_array import Operands, PeCommand
from tlmsim.models.program import OpState, Program
from tlmsim.models.vector_unit import VectorCommand
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Step

if TYPE_CHECKING:  # the composed config is the application's; components only read it
    from tlmsim.config import Config


class Controller(Component):
    """In-order dispatcher of the program's ops."""

    role = "control"
    REUSE_STATE = ("activity", "since", "current", "memory_ops")
    WIRING = ("program", "pe_port", "vector_port", "completions", "ports", "on_step_done", "on_layer_start",
              "_handlers", "qos")

    def __init__(self, ctx: SimContext, name: str, program: Program, memories: list[str], on_step_done=None,
                 on_layer_start=None, qos: int = 0):
        """``qos``: the AXI QoS of the embedding gathers and KV appends (see ``Transaction.qos``)."""
        super().__init__(ctx, name)
        self.program = program
        self.qos = qos
        self.pe_port = QueuePort(name, PeCommand)
        self.vector_port = QueuePort(name, VectorCommand)
        self.completions = TargetPort(name, Completion, nb_handler=self._completed)
        self.ports = {mem: InitiatorPort(name, Transaction) for mem in memories}
        self.on_step_done = on_step_done
        self.on_layer_start = on_layer_start  # called at each decoder layer's first dispatch
        self.activity = "start"  # dispatch | dependency | step end | done
        self.since = 0  # when the current activity began
        self.current: OpState | None = None  # the op being dispatched, or waited for
        self.memory_ops: list[OpState] = []  # embedding gathers and KV appends in flight
        # One handler per op kind (a generator: dispatching may wait for room in a queue).
        self._handlers = {OpKind.LINEAR: self._matmul, OpKind.ATTN_MATMUL: self._matmul,
                          OpKind.VECTOR: self._vector, OpKind.EMBEDDING: self._embedding,
                          OpKind.KV_APPEND: self._kv_append, OpKind.NOOP: self._noop}
        self.process = self.start(self.run())

    def run(self):
        """Dispatch every op of every step once its dependencies are done."""
        program = self.program
        for step in program.steps:
            self.ctx.enter_phase(step.phase)
            self.ctx.tracer.enabled = self.traced(program.cfg, step)
            states = program.state(step.index)
            start = self.env.now
            for index, st in enumerate(states):
                if program.is_skipped(st):
                    continue
                self.current = st
                deps = [program.dependency(states, d).done for d in st.op.deps]
                pending = [event for event in deps if not event.processed]
                if pending:
                    self._begin("dependency")
                    yield simpy.AllOf(self.env, pending)
                    self.record("stall:waiting for dependency", self.since, self.env.now, st.op.name)
                self._begin("dispatch")
                if self.on_layer_start is not None and index == program.layer_start.get(st.op.layer):
                    self.on_layer_start(step, st.op.layer, states)
                st.mark_issue(self.env.now)
                yield from self._handlers[st.op.kind](st, (step.index, index))
            self.current = None
            self._begin("step end")
            yield simpy.AllOf(self.env, [st.done for st in states if not program.is_skipped(st)])
            if self.on_step_done is not None:
                self.on_step_done(step, start, self.env.now, states)
            self.program.forget(step.index)
        self._begin("done")

    def _begin(self, activity: str) -> None:
        self.activity, self.since = activity, self.env.now

    def boundary_state(self, frame: Frame) -> tuple:
        """Activity (and since when, if it records a stall when it ends), the op it dispatches
        or waits to dispatch, and the memory ops in flight (relative to the boundary)."""
        current = self.current
        return (self.activity, frame.time(self.since) if self.activity == "dependency" else None,
                None if current is None else frame.name(current.op.name, current.step.index),
                tuple(frame.name(st.op.name, st.step.index) for st in self.memory_ops))

    @staticmethod
    def traced(cfg: Config, step: Step) -> bool:
        """True if ``step`` goes into the trace."""
        trace = cfg.trace
        if step.phase == "prefill":
            return trace.prefill
        return step.phase == "decode" and step.index <= trace.decode_steps

    # -- one handler per op kind -------------------------------------------------------

    def _matmul(self, st: OpState, work: tuple[int, int]):
        """Weights (through the decoder) or KV-cache operands on the PE array."""
        op = st.op
        if not st.tiles:  # an attention matmul with nothing cached to read
            st.done.succeed()
            return
        operands = Operands.WEIGHTS if op.kind is OpKind.LINEAR else Operands.KV
        yield self.pe_port.put(PeCommand(op.name, op.weight_format, st.tiles, operands, work))

    def _vector(self, st: OpState, work: tuple[int, int]):
        op = st.op
        yield self.vector_port.put(VectorCommand(op.name, op.vector_op, op.elements, work))

    def _embedding(self, st: OpState, work: tuple[int, int]):
        self.start(self._memory_op(st, Command.READ, st.op.read_bytes, 0))
        yield from ()

    def _kv_append(self, st: OpState, work: tuple[int, int]):
        offset = self.program.workload.kv_write_offset(st.op.name, st.step.kv - st.step.tokens)
        self.start(self._memory_op(st, Command.WRITE, st.op.write_bytes, offset))
        yield from ()

    def _noop(self, st: OpState, work: tuple[int, int]):
        st.done.succeed()
        yield from ()

    def _completed(self, done: Completion) -> None:
        """A unit finished the op ``done.work`` names."""
        step, index = done.work
        self.program.state(step)[index].done.succeed()

    def _memory_op(self, st: OpState, command: Command, nbytes: int, offset: int):
        region = self.program.placement[st.op.operand_tensor]
        txn = Transaction(command, region.addr + offset, nbytes, self.name, st.op.name, self.env.now, self.qos)
        self.memory_ops.append(st)
        yield from self.ports[region.memory].transport(txn)
        self.memory_ops.remove(st)
        st.done.succeed()
