"""System builder: instantiates every component from the config and wires the ports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tlmsim.engine.component import SimContext
from tlmsim.engine.configbase import CLOCK_MHZ, ON_CHIP_KIB, Section
from tlmsim.engine.ports import connect
from tlmsim.engine.reuse import Environment
from tlmsim.engine.trace import Tracer
from tlmsim.models.buffer import ActivationBufferConfig, BankedBuffer, BufferConfig
from tlmsim.models.controller import Controller
from tlmsim.models.decoder import DecoderConfig, WeightDecoder
from tlmsim.models.dma import Dma
from tlmsim.models.memory import Memory
from tlmsim.models.pe_array import Operands, PeArray, PeArrayConfig
from tlmsim.models.placement import Placement
from tlmsim.models.program import OpState, Program
from tlmsim.models.roofline import Roofline, StepRecord
from tlmsim.models.steady_state import SteadyStateReuse
from tlmsim.models.vector_unit import VectorUnit, VectorUnitConfig
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Step, Workload, embedding_table_bytes

if TYPE_CHECKING:  # the composed config is the application's; components only read it
    from tlmsim.config import Config


PREFETCH_QOS, DEMAND_QOS = 0, 1  # AXI QoS of each kind of memory traffic (MemoryConfig.arbitration)


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
        self._build()
        self.roofline = Roofline(self.memories, self.pe_array, self.decoder, self.vector_unit, self.placement)

    def _build(self) -> None:
        acc, ctx = self.cfg.accelerator, self.ctx
        # The memories' AXI ports cross into the kernel clock (their kernel-side masters run at it).
        self.memories = {name: Memory(ctx, name, mcfg, kernel_clock_mhz=acc.clock_mhz)
                         for name, mcfg in self.cfg.memory.items()}
        self.weight_buffer = BankedBuffer(ctx, "weight_buffer", acc.weight_buffer, acc.clock_mhz)
        self.kv_buffer = BankedBuffer(ctx, "kv_buffer", acc.kv_buffer, acc.clock_mhz)
        self.decoder = WeightDecoder(ctx, "decoder", acc.decoder, acc.clock_mhz)
        self.program = Program(self.env, self.cfg, self.workload, self.placement)
        self.program.check_fits()
        ctx.register(self.program)  # its op progress and skip tables are reuse state
        # The DMAs start prefetching at time 0, before the controller opens the first step:
        # their first reads belong to that step's phase (and its trace).
        ctx.enter_phase(self.program.steps[0].phase)
        ctx.tracer.enabled = Controller.traced(self.cfg, self.program.steps[0])
        names = list(self.memories)
        # AXI QoS: weight reads are bulk prefetch (the DMA runs ahead of the PEs by up to a whole
        # buffer); KV reads, embedding gathers and KV appends are what the next op waits for.
        self.weight_dma = Dma(ctx, "weight_dma", names, self.program.weight_descriptors(), qos=PREFETCH_QOS)
        self.kv_dma = Dma(ctx, "kv_dma", names, self.program.kv_descriptors(), qos=DEMAND_QOS)
        weights, kv, decoder = self.weight_buffer, self.kv_buffer, self.decoder
        supply = {Operands.WEIGHTS: lambda t: max(weights.drain_ps(t.nbytes), decoder.decode_ps(t.stored_weights)),
                  Operands.KV: lambda t: kv.drain_ps(t.nbytes)}  # what each operand path delivers at best
        self.pe_array = PeArray(ctx, "pe_array", acc.pe_array, acc.clock_mhz, acc.decoder.latency_cycles,
                                on_tile_start=self._tile_start, supply_ps=supply)
        self.vector_unit = VectorUnit(ctx, "vector_unit", acc.vector_unit, acc.clock_mhz)
        self.controller = Controller(ctx, "controller", self.program, names, self._step_done, self._layer_start,
                                     qos=DEMAND_QOS)
        self._wire()
        self.reuse = SteadyStateReuse(ctx, self.program, self.placement, self.cfg.simulation.reuse_identical_layers)

    def _wire(self) -> None:
        """Bind every initiator port to its target (payload types are checked here)."""
        for initiator in (self.weight_dma, self.kv_dma, self.controller):
            for mem, port in initiator.ports.items():
                connect(port, self.memories[mem].target)
        connect(self.weight_dma.buffer_port, self.weight_buffer.write_port)
        connect(self.kv_dma.buffer_port, self.kv_buffer.write_port)
        connect(self.pe_array.operand_ports[Operands.WEIGHTS], self.weight_buffer.read_port)
        connect(self.pe_array.operand_ports[Operands.KV], self.kv_buffer.read_port)
        connect(self.pe_array.decoder_port, self.decoder.stream_port)
        connect(self.controller.pe_port, self.pe_array.commands)
        connect(self.controller.vector_port, self.vector_unit.commands)
        connect(self.pe_array.done_port, self.controller.completions)
        connect(self.vector_unit.done_port, self.controller.completions)

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
        placement.place("kv_cache", {n: self.workload.kv_cache_bytes(n, final_kv) for n in of_kind(OpKind.KV_APPEND)})
        placement.place("weights", {n: graph.nodes[n]["weight_nbytes"] for n in of_kind(OpKind.LINEAR)})
        placement.place("embeddings", {n: embedding_table_bytes(graph.nodes[n]) for n in of_kind(OpKind.EMBEDDING)})
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
        demands, moved, records = self.roofline.step(step, states, self.workload.kv_independent_nodes, keep)
        self.steps.append(StepRecord(step, start, end, demands, moved, records))
        if self.progress is not None:
            self.progress(len(self.steps), len(self.program.steps), step.phase)
