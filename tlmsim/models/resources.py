"""FPGA resources of a whole accelerator design, per component, each line with its source.

* PE array: synthesized (``models/synthesis``: Yosys on rtl/nm_pe.v, times the array, plus
  the analytic forwarding/drain registers).
* Buffers: exact URAM/BRAM primitive counts from capacity and width (``BufferConfig``,
  UG573 block geometry).
* HBM and DDR controllers: the infrastructure cost FINN reserves per memory controller,
  from its Vivado runs (Xilinx/finn, src/finn/util/platforms.py, HBM_RESOURCE_REQUIREMENTS
  and DDR_RESOURCE_REQUIREMENTS).
* Decoder, vector unit, DMA engines: structural estimates (no RTL in rtl/ yet), marked so.

Every line says which of these it is (``source``), so a table can show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tlmsim.engine.units import ceil_div
from tlmsim.models.accelerator import AcceleratorConfig
from tlmsim.models.buffer import BufferConfig
from tlmsim.models.memory import MemoryConfig
from tlmsim.models.synthesis import ResourceCount, pe_array_resources

SYNTHESIZED = "synthesized (Yosys, rtl/nm_pe.v) x array + analytic interconnect"
PRIMITIVES = "exact primitive count (capacity and width, UG573 block geometry)"
PUBLISHED_FINN = "published: FINN platforms.py per-controller infrastructure (Vivado)"
ESTIMATE = "structural estimate, no RTL (docs/cost.md)"

# FINN (Xilinx/finn src/finn/util/platforms.py): resources "required to instantiate ...
# memory controllers": LUT, FF, BRAM_18K, URAM, DSP. One HBM subsystem; one DDR4 MIG per channel.
HBM_CONTROLLER = ResourceCount(dsp=0, lut=10718, ff=21793, bram36=8 / 2, uram=0)
DDR_CONTROLLER = ResourceCount(dsp=3, lut=33256, ff=44889, bram36=199 / 2, uram=0)
# A read DMA engine per memory channel and DMA (descriptor walk, 512-bit AXI master, a
# 2-deep burst FIFO in one BRAM36): assumed, not synthesized.
DMA_ENGINE = ResourceCount(dsp=0, lut=1000, ff=1500, bram36=1, uram=0)
# One vector lane: an fp32 multiply-add datapath (2 DSPs), exp/rsqrt tables and control:
# assumed, not synthesized (order of AMD PG060 floating-point operator sizes; unverified).
VECTOR_LANE = ResourceCount(dsp=2, lut=600, ff=900, bram36=0, uram=0)
CODE_BITS, INDEX_BITS_MAX = 4, 3  # a decoded weight: 4-bit code and up to 3 index bits (1:8)


@dataclass(frozen=True)
class Line:
    """One component's resources and where the numbers come from."""

    count: ResourceCount
    source: str

    def to_json(self) -> dict:
        """Plain JSON data."""
        return {**self.count.to_json(), "source": self.source}


def design_resources(acc: AcceleratorConfig, memories: Mapping[str, MemoryConfig], act_bits: int,
                     family: str = "xcup", hard_controllers: frozenset[str] = frozenset()) -> dict[str, Line]:
    """Resources of every component of the design, by component name (``hard_controllers``:
    memories whose controller is hard silicon and costs no fabric)."""
    pe = acc.pe_array
    array = pe_array_resources(pe, act_bits, pack=pe.pack, ternary_only=pe.pe == "ternary", family=family)
    lines = {
        "pe_array": Line(array.total, SYNTHESIZED),
        "weight_buffer": Line(buffer_blocks(acc.weight_buffer), PRIMITIVES),
        "kv_buffer": Line(buffer_blocks(acc.kv_buffer), PRIMITIVES),
        "activation_buffer": Line(_blocks(acc.activation_buffer.memory,
                                          ceil_div(acc.activation_buffer.capacity_kib, _block_kib(
                                              acc.activation_buffer.memory))), PRIMITIVES),
        "decoder": Line(decoder_logic(acc.decoder.weights_per_cycle), ESTIMATE),
        "vector_unit": Line(VECTOR_LANE.times(acc.vector_unit.lanes), ESTIMATE),
        "dmas": Line(DMA_ENGINE.times(2 * sum(m.channels for m in memories.values())), ESTIMATE),
    }
    for name, mem in memories.items():
        hard = Line(ResourceCount(), "hard controller (board preset): no fabric resources")
        lines[f"{name}_controller"] = hard if name in hard_controllers else memory_controller(mem)
    return lines


def total(lines: Mapping[str, Line]) -> ResourceCount:
    """Sum of every component's resources."""
    out = ResourceCount()
    for line in lines.values():
        out = out + line.count
    return out


def buffer_blocks(cfg: BufferConfig) -> ResourceCount:
    """URAM or BRAM36 blocks of a banked buffer (whole blocks, as wide as configured)."""
    return _blocks(cfg.memory, cfg.banks * cfg.blocks_per_bank)


def _block_kib(memory: str) -> float:
    from tlmsim.models.buffer import ON_CHIP_BLOCKS

    return ON_CHIP_BLOCKS[memory][0]


def _blocks(memory: str, count: int) -> ResourceCount:
    return ResourceCount(uram=int(count)) if memory == "uram" else ResourceCount(bram36=float(count))


def decoder_logic(weights_per_cycle: int) -> ResourceCount:
    """Weight decoder: two register stages of (code + index) bits per decoded weight and
    one LUT per two bits for the unpacking multiplexers (structural estimate)."""
    bits = weights_per_cycle * (CODE_BITS + INDEX_BITS_MAX)
    return ResourceCount(lut=ceil_div(bits, 2), ff=2 * bits)


def memory_controller(mem: MemoryConfig) -> Line:
    """The controller infrastructure of one memory: FINN's per-controller figures."""
    if mem.kind == "hbm2":
        return Line(HBM_CONTROLLER, PUBLISHED_FINN)
    if mem.kind == "ddr4":
        return Line(DDR_CONTROLLER.times(mem.channels), PUBLISHED_FINN + " x channels")
    return Line(ResourceCount(), "generic memory: no controller counted")
