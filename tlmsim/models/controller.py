"""Controller: tiles every op, feeds the DMAs' descriptor chains, dispatches work in order.

The controller walks the steps (prefill, then one per generated token) and, within a
step, the ops in graph order. An op is dispatched once the ops it depends on are done
(in-order issue, like a simple sequencer): matmuls to the PE array, vector ops to the
vector unit, embedding gathers and KV-cache appends to memory. Weight and KV tiles are
not fetched by dispatch: the DMAs walk the same program ahead of it (prefetching the
next tiles while the current ones compute) as far as the buffers allow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.payload import Command, Transaction
from tlmsim.engine.ports import InitiatorPort
from tlmsim.models.dma import Descriptor
from tlmsim.models.pe_array import PeCommand, check_runs, tile_order
from tlmsim.models.placement import Placement
from tlmsim.models.tiling import Tile, attention_tiles, linear_tiles, token_chunk
from tlmsim.models.vector_unit import VectorCommand
from tlmsim.workloads.phases import Op, Step, Workload

if TYPE_CHECKING:  # the composed config is the application's; components only read it
    from tlmsim.config import Config


@dataclass(slots=True)
class OpState:
    """One op of one step while it runs: its tiles, completion event and timestamps."""

    op: Op
    step: Step
    done: simpy.Event
    tiles: list[Tile] = field(default_factory=list)
    first_issue_ps: int | None = None
    done_ps: int | None = None
    # Tiles [first, last] skipped by steady-state reuse (shared with the PE command and the DMA).
    skipped_tiles: list[int] = field(default_factory=list)

    def mark_done(self, event: simpy.Event) -> None:
        """Callback of ``done``: note the completion time."""
        self.done_ps = event.env.now

    def mark_issue(self, now_ps: int) -> None:
        """Note the first time any work of this op started (DMA read or dispatch)."""
        if self.first_issue_ps is None or now_ps < self.first_issue_ps:
            self.first_issue_ps = now_ps


class Program:
    """The tiled ops of every step, built lazily and shared by controller and DMAs."""

    def __init__(self, env: simpy.Environment, cfg: Config, workload: Workload, placement: Placement):
        self.env = env
        self.cfg = cfg
        self.workload = workload
        self.placement = placement
        self.steps = workload.steps()
        self._states: dict[int, list[OpState]] = {}
        self._tile_cache: dict[tuple, list[Tile]] = {}
        # Decoder layers skipped by steady-state reuse: step index -> (first, last) layer.
        self.skipped: dict[int, tuple[int, int]] = {}
        ops = self.workload.ops(self.steps[0])
        self.layer_start: dict[int, int] = {}  # layer -> index of its first op in a step
        for i, op in enumerate(ops):
            if op.layer is not None:
                self.layer_start.setdefault(op.layer, i)
        sizes = {op.layer: sum(1 for o in ops if o.layer == op.layer) for op in ops if op.layer is not None}
        self.ops_per_layer = next(iter(sizes.values())) if len(set(sizes.values())) == 1 else None

    def check_fits(self) -> None:
        """Tile the first and last steps now, so a buffer too small fails before simulating."""
        pe = self.cfg.accelerator.pe_array
        for step in {self.steps[0], self.steps[-1]}:
            for op in self.workload.ops(step):
                if op.weight_format is not None:
                    check_runs(pe, op.weight_format, f"{op.name} (stored in workload.model)")
                self.tiles(op)

    def state(self, index: int) -> list[OpState]:
        """Op states of step ``index`` (created on first use)."""
        if index not in self._states:
            step = self.steps[index]
            self._states[index] = [self._new_state(op, step) for op in self.workload.ops(step)]
        return self._states[index]

    def is_skipped(self, st: OpState) -> bool:
        """True if ``st`` belongs to a decoder layer skipped by steady-state reuse."""
        skip = self.skipped.get(st.step.index)
        return skip is not None and st.op.layer is not None and skip[0] <= st.op.layer <= skip[1]

    def dependency(self, states: list[OpState], index: int) -> OpState:
        """The op state that stands for ``states[index]``: a skipped layer's op is represented by
        the same op of the simulated layer that replaced the skipped run."""
        st = states[index]
        if not self.is_skipped(st):
            return st
        first, last = self.skipped[st.step.index]
        return states[index - (last - first + 1) * self.ops_per_layer]

    def states_if_built(self, index: int) -> list[OpState]:
        """Op states of step ``index`` if some process already asked for them, else []."""
        return self._states.get(index, [])

    def forget(self, index: int) -> None:
        """Drop a finished step's states."""
        self._states.pop(index, None)

    def _new_state(self, op: Op, step: Step) -> OpState:
        st = OpState(op, step, self.env.event(), self.tiles(op))
        st.done.callbacks.append(st.mark_done)
        return st

    def tiles(self, op: Op) -> list[Tile]:
        """Tiles of ``op`` on this accelerator (cached: decode steps repeat shapes)."""
        key = (op.name, op.rows, op.k, op.n, op.groups, op.operand_bytes)
        if key not in self._tile_cache:
            self._tile_cache[key] = self._make_tiles(op)
        return self._tile_cache[key]

    def _make_tiles(self, op: Op) -> list[Tile]:
        acc = self.cfg.accelerator
        if op.kind == "linear":
            chunk = token_chunk(op, int(acc.activation_buffer.capacity_kib * 1024), self.cfg.workload.activation_bits)
            pe = acc.pe_array
            one_beat = pe.lanes * (op.weight_format.m if op.weight_format.sparse else pe.n)
            return linear_tiles(op, acc.weight_buffer.bank_bytes, pe.cols, chunk, one_beat)
        if op.kind == "attn_matmul" and op.operand_bytes:
            return attention_tiles(op, acc.kv_buffer.bank_bytes)
        return []

    def weight_descriptors(self):
        """Descriptor chain of the weight DMA: every linear layer's tiles, in order."""
        yield from self._descriptors("linear")

    def kv_descriptors(self):
        """Descriptor chain of the KV DMA: attention operands, each after its KV append."""
        yield from self._descriptors("attn_matmul")

    def _descriptors(self, kind: str):
        for step in self.steps:
            states = self.state(step.index)
            by_name = {st.op.name: st for st in states}
            for st in states:
                if st.op.kind != kind or not st.tiles or self.is_skipped(st):
                    continue
                region = self.placement[st.op.operand_tensor]
                wait = by_name[st.op.operand_tensor].done if kind == "attn_matmul" else None
                for index in tile_order(st.tiles, st.skipped_tiles):
                    tile = st.tiles[index]
                    yield Descriptor(region.memory, region.addr + tile.offset, tile.nbytes,
                                     st.op.name, None, wait_for=wait, on_issue=st.mark_issue, tag=st, tile=index)


class Controller(Component):
    """In-order dispatcher of the program's ops."""

    role = "control"

    def __init__(self, ctx: SimContext, name: str, program: Program, pe_queue: simpy.Store,
                 vector_queue: simpy.Store, weight_buffer, kv_buffer, memories: list[str], on_step_done=None,
                 on_layer_start=None):
        super().__init__(ctx, name)
        self.program = program
        self.pe_queue = pe_queue
        self.vector_queue = vector_queue
        self.weight_buffer = weight_buffer
        self.kv_buffer = kv_buffer
        self.ports = {mem: InitiatorPort(name, Transaction) for mem in memories}
        self.on_step_done = on_step_done
        self.on_layer_start = on_layer_start  # called at each decoder layer's first dispatch
        self.process = self.env.process(self.run())

    def run(self):
        """Dispatch every op of every step once its dependencies are done."""
        program = self.program
        for step in program.steps:
            self.ctx.phase = step.phase
            self.ctx.tracer.enabled = self.traced(program.cfg, step)
            states = program.state(step.index)
            start = self.env.now
            for index, st in enumerate(states):
                if program.is_skipped(st):
                    continue
                deps = [program.dependency(states, d).done for d in st.op.deps]
                pending = [event for event in deps if not event.processed]
                if pending:
                    yield from self.wait(simpy.AllOf(self.env, pending), "waiting for dependency", st.op.name)
                if self.on_layer_start is not None and index == program.layer_start.get(st.op.layer):
                    self.on_layer_start(step, st.op.layer, states)
                self.dispatch(st)
            yield simpy.AllOf(self.env, [st.done for st in states if not program.is_skipped(st)])
            if self.on_step_done is not None:
                self.on_step_done(step, start, self.env.now, states)
            self.program.forget(step.index)

    @staticmethod
    def traced(cfg: Config, step: Step) -> bool:
        """True if ``step`` goes into the trace."""
        trace = cfg.trace
        return (step.phase == "prefill" and trace.prefill) or (step.phase == "decode" and step.index <= trace.decode_steps)

    def dispatch(self, st: OpState) -> None:
        """Send one op to the unit that executes it."""
        st.mark_issue(self.env.now)
        op = st.op
        if op.kind == "linear":
            self.pe_queue.put(PeCommand(op.name, op.weight_format, st.tiles, self.weight_buffer, True, st.done,
                                        st.skipped_tiles, st))
        elif op.kind == "attn_matmul" and st.tiles:
            self.pe_queue.put(PeCommand(op.name, op.weight_format, st.tiles, self.kv_buffer, False, st.done,
                                        st.skipped_tiles, st))
        elif op.kind == "vector":
            self.vector_queue.put(VectorCommand(op.name, op.vector_op, op.elements, st.done))
        elif op.kind == "embedding":
            self.env.process(self._memory_op(st, Command.READ, op.read_bytes, 0))
        elif op.kind == "kv_append":
            offset = self.program.workload.kv_cache_bytes(op.name, st.step.kv - st.step.tokens)
            self.env.process(self._memory_op(st, Command.WRITE, op.write_bytes, offset))
        else:
            st.done.succeed()

    def _memory_op(self, st: OpState, command: Command, nbytes: int, offset: int):
        region = self.program.placement[st.op.operand_tensor]
        txn = Transaction(command, region.addr + offset, nbytes, self.name, st.op.name, self.env.now)
        yield from self.ports[region.memory].transport(txn)
        st.done.succeed()
