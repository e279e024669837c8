"""System builder: instantiates every component from the config and wires the ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy
from pydantic import Field

from tlmsim.engine.component import SimContext
from tlmsim.engine.configbase import CLOCK_MHZ, ON_CHIP_KIB, Section
from tlmsim.engine.ports import connect
from tlmsim.engine.reuse import Environment
from tlmsim.engine.trace import Tracer
from tlmsim.models.buffer import ActivationBufferConfig, BankedBuffer, BufferConfig
from tlmsim.models.controller import Controller, OpState, Program
from tlmsim.models.decoder import DecoderConfig, WeightDecoder
from tlmsim.models.dma import Dma
from tlmsim.models.memory import Memory
from tlmsim.models.pe_array import PeArray, PeArrayConfig
from tlmsim.models.placement import Placement
from tlmsim.models.steady_state import SteadyStateReuse
from tlmsim.models.vector_unit import VectorUnit, VectorUnitConfig
from tlmsim.workloads.phases import Op, Step, Workload, embedding_table_bytes

if TYPE_CHECKING:  # the composed config is the application's; components only read it
    from tlmsim.config import Config


class FpgaConfig(Section):
    """Device totals used to check that on-chip buffers fit (AMD DS963 for the U280)."""

    uram_kib: float = Field(**ON_CHIP_KIB)
    bram_kib: float = Field(**ON_CHIP_KIB)


class AcceleratorConfig(Section):
    """The accelerator on the FPGA fabric."""

    clock_mhz: float = Field(**CLOCK_MHZ)
    fpga: FpgaConfig
    weight_buffer: BufferConfig
    kv_buffer: BufferConfig
    activation_buffer: ActivationBufferConfig
    decoder: DecoderConfig
    pe_array: PeArrayConfig
    vector_unit: VectorUnitConfig


@dataclass
class OpRecord:
    """What one op did: its simulated span and its analytic (roofline) demands."""

    name: str
    kind: str
    layer: int | None
    step: int
    phase: str
    start_ps: int
    end_ps: int
    demands_ps: dict[str, int]
    bytes_by_memory: dict[str, int]

    @property
    def bound_ps(self) -> int:
        """Roofline bound: the largest single-resource demand."""
        return max(self.demands_ps.values(), default=0)

    @property
    def bound_by(self) -> str:
        """The resource with the largest demand."""
        return max(self.demands_ps, key=self.demands_ps.get) if self.demands_ps else "none"


@dataclass
class StepRecord:
    """Timing and roofline totals of one step."""

    step: Step
    start_ps: int
    end_ps: int
    demands_ps: dict[str, int]
    bytes_by_memory: dict[str, int]
    ops: list[OpRecord] = field(default_factory=list)


class Accelerator:
    """The whole simulated system for one config and workload."""

    def __init__(self, cfg: Config, workload: Workload, keep_ops: str = "first_and_last", progress=None):
        self.cfg = cfg
        self.progress = progress  # callable(done_steps, total_steps, phase) or None
        self.workload = workload
        self.keep_ops = keep_ops
        self.env = Environment()  # keeps a table of pending events (steady-state reuse reads it)
        self.ctx = SimContext(self.env, Tracer())
        self.placement = self._place_tensors()
        self.steps: list[StepRecord] = []
        self._demands: dict[tuple, tuple] = {}
        self._shared_demands: dict[tuple[int, int], tuple[dict, dict]] = {}
        self._build()

    def _build(self) -> None:
        acc, ctx = self.cfg.accelerator, self.ctx
        self.memories = {name: Memory(ctx, name, mcfg) for name, mcfg in self.cfg.memory.items()}
        self.weight_buffer = BankedBuffer(ctx, "weight_buffer", acc.weight_buffer)
        self.kv_buffer = BankedBuffer(ctx, "kv_buffer", acc.kv_buffer)
        self.decoder = WeightDecoder(ctx, "decoder", acc.decoder, acc.clock_mhz)
        pe_commands, vector_commands = simpy.Store(self.env), simpy.Store(self.env)
        self.program = Program(self.env, self.cfg, self.workload, self.placement)
        self.program.check_fits()
        ctx.register(self.program)  # its op progress and skip tables are reuse state
        # The DMAs start prefetching at time 0, before the controller opens the first step:
        # their first reads belong to that step's phase (and its trace).
        ctx.phase = self.program.steps[0].phase
        ctx.tracer.enabled = Controller.traced(self.cfg, self.program.steps[0])
        names = list(self.memories)
        self.weight_dma = Dma(ctx, "weight_dma", names, self.weight_buffer, self.program.weight_descriptors())
        self.kv_dma = Dma(ctx, "kv_dma", names, self.kv_buffer, self.program.kv_descriptors())
        self.pe_array = PeArray(ctx, "pe_array", acc.pe_array, acc.clock_mhz, pe_commands, self.decoder,
                                on_tile_start=self._tile_start)
        self.vector_unit = VectorUnit(ctx, "vector_unit", acc.vector_unit, acc.clock_mhz, vector_commands)
        self.controller = Controller(ctx, "controller", self.program, pe_commands, vector_commands,
                                     self.weight_buffer, self.kv_buffer, names, self._step_done, self._layer_start)
        for initiator in (self.weight_dma, self.kv_dma, self.controller):
            for mem, port in initiator.ports.items():
                connect(port, self.memories[mem].target)
        self.reuse = SteadyStateReuse(ctx, self.program, self.placement, self.cfg.simulation.reuse_identical_layers)

    def _layer_start(self, step: Step, layer: int, states: list[OpState]) -> None:
        self.reuse.at_layer_start(step, layer, states)

    def _tile_start(self, cmd, index: int) -> None:
        self.reuse.at_tile_start(cmd, index)

    def _place_tensors(self) -> Placement:
        placement = Placement(self.cfg)
        graph, final_kv = self.workload.graph, self.workload.prefill_tokens + self.workload.decode_tokens
        nodes = self.workload.node_order
        kinds = {n: graph.nodes[n]["kind"] for n in nodes}
        of_kind = lambda kind: [n for n in nodes if kinds[n] == kind]  # noqa: E731
        placement.place("kv_cache", {n: self.workload.kv_cache_bytes(n, final_kv) for n in of_kind("kv_append")})
        placement.place("weights", {n: graph.nodes[n]["weight_nbytes"] for n in of_kind("linear")})
        placement.place("embeddings", {n: embedding_table_bytes(graph.nodes[n]) for n in of_kind("embedding")})
        return placement

    def run(self) -> list[StepRecord]:
        """Simulate every step; returns their records."""
        self.env.run(until=self.controller.process)
        self.reuse.finish()  # statistics and traces get the skipped work back
        return self.steps

    @property
    def components(self) -> dict:
        """Every component by name (memories first)."""
        parts = [self.weight_dma, self.kv_dma, self.weight_buffer, self.kv_buffer, self.decoder,
                 self.pe_array, self.vector_unit, self.controller]
        return {**self.memories, **{c.name: c for c in parts}}

    def _step_done(self, step: Step, start: int, end: int, states: list[OpState]) -> None:
        # Times of a run with skipped layers move to where the skipped layers put them back.
        self.reuse.finish_step(step.index, states)
        start, end = self.reuse.real_time(start), self.reuse.real_time(end)
        keep = self.keep_ops == "all" or step.index in (0, 1, len(self.program.steps) - 1)
        records = []
        if keep:
            demands, moved = self._add_demands({}, {}, states)
            records = [OpRecord(st.op.name, st.op.kind, st.op.layer, st.step.index, st.step.phase, st.first_issue_ps,
                                st.done_ps, *map(dict, self._op_demands(st))) for st in states]
        else:  # the ops shared by steps with as many new tokens are summed once
            shared = self.workload.kv_independent_nodes
            key = (step.tokens, step.batch)
            if key not in self._shared_demands:
                self._shared_demands[key] = self._add_demands({}, {}, [st for st in states if st.op.name in shared])
            demands, moved = map(dict, self._shared_demands[key])
            self._add_demands(demands, moved, [st for st in states if st.op.name not in shared])
        for mem, nbytes in moved.items():
            demands[mem] = self.memories[mem].min_transfer_ps(nbytes)
        self.steps.append(StepRecord(step, start, end, demands, moved, records))
        if self.progress is not None:
            self.progress(len(self.steps), len(self.program.steps), step.phase)

    def _add_demands(self, demands: dict[str, int], moved: dict[str, int],
                     states: list[OpState]) -> tuple[dict[str, int], dict[str, int]]:
        """Add the compute demands and bytes of ``states`` to the totals (memory demands follow
        from the bytes of the whole step)."""
        for st in states:
            op_demands, op_moved = self._op_demands(st)
            for key, value in op_demands.items():
                if key not in self.memories:
                    demands[key] = demands.get(key, 0) + value
            for mem, nbytes in op_moved.items():
                moved[mem] = moved.get(mem, 0) + nbytes
        return demands, moved

    def _op_demands(self, st: OpState) -> tuple[dict[str, int], dict[str, int]]:
        """(roofline demands, bytes per memory) of one op (remembered for ops that decode steps
        share: the same op and tile objects, or the same vector op size)."""
        op = st.op
        if op.kind == "linear":
            key = (id(op), id(st.tiles))
        elif op.kind == "vector":
            key = (op.vector_op, op.elements)
        else:
            key = None
        found = self._demands.get(key) if key is not None else None
        if found is not None:
            return found[2], found[3]
        moved = self.op_bytes(st)
        demands = {mem: self.memories[mem].min_transfer_ps(nbytes) for mem, nbytes in moved.items()}
        demands.update(self.op_compute_demands(op, st))
        if key is not None:
            self._demands[key] = (op, st.tiles, demands, moved)  # op and tiles kept: their ids stay unique
        return demands, moved

    def op_bytes(self, st: OpState) -> dict[str, int]:
        """Bytes the op moves, per memory."""
        op = st.op
        if op.kind in ("linear", "attn_matmul") and st.tiles:
            return {self.placement[op.operand_tensor].memory: sum(t.nbytes for t in st.tiles)}
        if op.kind in ("embedding", "kv_append"):
            return {self.placement[op.operand_tensor].memory: op.read_bytes + op.write_bytes}
        return {}

    def op_compute_demands(self, op: Op, st: OpState) -> dict[str, int]:
        """Roofline compute demands of an op on the PE array, decoder and vector unit."""
        if op.kind == "vector":
            return {"vector_unit": self.vector_unit.ideal_ps(op.vector_op, op.elements)}
        if op.kind not in ("linear", "attn_matmul") or not st.tiles:
            return {}
        work = sum(t.rows * t.stored_weights for t in st.tiles)
        demands = {"pe_array": self.pe_array.ideal_ps(op.weight_format, 1, work)}
        if op.kind == "linear":
            demands["decoder"] = self.decoder.ideal_ps(sum(t.stored_weights for t in st.tiles))
        return demands
