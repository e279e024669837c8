"""FPGA resources of the PE array: synthesized PEs times their number, plus the array's wiring.

The PEs come from Yosys (``cache.pe_resources``). The array around them is counted
analytically from the dataflow ``models/pe_array.py`` times (its fill time
``(rows - 1) + (cols - 1)`` is a systolic skew: one register stage per PE hop):

* activation forwarding: each PE registers its row's activation beat
  (``pack * lanes * m * act_bits`` bits) and hands it to its right neighbour;
* weight forwarding: each PE registers the weight beat for the PE below it
  (``lanes * n * (code_bits + index_bits)`` bits, the ``scale_bits`` scale, and the
  valid / group_last / tile_last flags); two rows packed in one PE share one copy;
* result drain: each PE's ``pack * acc_bits`` result enters a per-column shift chain
  (one flip-flop and one 2:1-mux LUT per bit).

That wiring is an estimate of the structure, not a synthesis of an array RTL (none
exists in rtl/ yet); docs/resources.md lists it per line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tlmsim.engine.errors import ConfigError
from tlmsim.models.pe_array import PeArrayConfig
from tlmsim.models.synthesis.cache import pe_resources
from tlmsim.models.synthesis.yosys import PeDesign, PeResources

RTL_WEIGHT_BITS = 4  # rtl/nm_pe.v multiplies INT4 weights (WMODE 0)
FLAG_BITS = 3  # valid, group_last, tile_last travel with each weight beat


@dataclass(frozen=True)
class ResourceCount:
    """FPGA primitive totals: DSP slices, LUTs, flip-flops, BRAM36 and URAM blocks."""

    dsp: int = 0
    lut: int = 0
    ff: int = 0
    bram36: float = 0.0
    uram: int = 0

    def __add__(self, other: ResourceCount) -> ResourceCount:
        return ResourceCount(self.dsp + other.dsp, self.lut + other.lut, self.ff + other.ff,
                             self.bram36 + other.bram36, self.uram + other.uram)

    def times(self, k: int) -> ResourceCount:
        """``k`` copies."""
        return ResourceCount(self.dsp * k, self.lut * k, self.ff * k, self.bram36 * k, self.uram * k)

    def to_json(self) -> dict:
        """Plain JSON data."""
        return asdict(self)

    @classmethod
    def of_pe(cls, pe: PeResources) -> ResourceCount:
        """One PE's totals (LUT sites include LUT-RAM/SRL cells)."""
        return cls(pe.dsp, pe.lut + pe.lutram, pe.ff, pe.bram36, pe.uram)


@dataclass(frozen=True)
class ArrayResources:
    """The PE array's resources, per component."""

    design: PeDesign  # one synthesized PE
    pe: PeResources  # what Yosys mapped it to
    pe_count: int  # PEs in the array (rows * cols / pack)
    pes: ResourceCount  # pe_count synthesized PEs
    interconnect: ResourceCount  # forwarding registers and result drain (analytic, see module doc)

    @property
    def total(self) -> ResourceCount:
        """PEs plus interconnect."""
        return self.pes + self.interconnect

    @property
    def dsp_products(self) -> int:
        """DSPs serving weight products, array-wide."""
        return self.pe.dsp_products * self.pe_count

    @property
    def dsp_scale(self) -> int:
        """DSPs serving group-scale multiplies, array-wide."""
        return self.pe.dsp_scale * self.pe_count

    def to_json(self) -> dict:
        """Plain JSON data with the per-component breakdown."""
        return {"pe_design": asdict(self.design), "pe": self.pe.to_json(), "pe_count": self.pe_count,
                "pes": self.pes.to_json(), "interconnect": self.interconnect.to_json(),
                "total": self.total.to_json(), "dsp_products": self.dsp_products, "dsp_scale": self.dsp_scale}


def pe_design_for(cfg: PeArrayConfig, act_bits: int, *, ternary_only: bool = False, pack: int = 1,
                  acc_bits: int = 32, scale_bits: int = 16, family: str = "xcup") -> PeDesign:
    """The nm_pe build a PE-array config stands for.

    ``ternary_only`` builds the multiply-free PE (WMODE 1), which runs ternary weights
    only; otherwise the PE is the INT4 multiplier PE, which also runs ternary weights
    (codes -1/0/+1 through the multiplier) when ``cfg.ternary`` is set.
    """
    if not ternary_only and cfg.native_weight_bits != RTL_WEIGHT_BITS:
        raise ConfigError(f"accelerator.pe_array.native_weight_bits={cfg.native_weight_bits} has no RTL "
                          f"(rtl/nm_pe.v multiplies {RTL_WEIGHT_BITS}-bit weights); set it to {RTL_WEIGHT_BITS}")
    if cfg.rows % pack:
        raise ConfigError(f"accelerator.pe_array.rows={cfg.rows} is not a multiple of pack={pack} "
                          f"(a packed PE computes {pack} token rows); use an even number of rows or pack 1")
    return PeDesign(n=cfg.n, m=cfg.m, lanes=cfg.lanes, ternary=ternary_only, act_bits=act_bits, acc_bits=acc_bits,
                    scale_bits=scale_bits, pack=pack, family=family)


def pe_array_resources(cfg: PeArrayConfig, act_bits: int, **design_options) -> ArrayResources:
    """Resources of ``cfg``'s array: synthesized PEs times their number, plus interconnect.

    ``design_options`` go to ``pe_design_for`` (ternary_only, pack, acc_bits, scale_bits, family).
    """
    design = pe_design_for(cfg, act_bits, **design_options)
    return array_of(design, cfg.rows, cfg.cols)


def array_of(design: PeDesign, rows: int, cols: int) -> ArrayResources:
    """Resources of rows x cols token-row PEs built as ``design`` (rows divisible by design.pack)."""
    pe = pe_resources(design)
    count = rows // design.pack * cols
    return ArrayResources(design, pe, count, ResourceCount.of_pe(pe).times(count),
                          interconnect_per_pe(design).times(count))


def interconnect_per_pe(design: PeDesign) -> ResourceCount:
    """Forwarding registers and result-drain logic one PE adds to the array (module doc)."""
    code_bits = 2 if design.ternary else RTL_WEIGHT_BITS
    index_bits = design.m.bit_length() - 1
    activation_ff = design.pack * design.lanes * design.m * design.act_bits
    weight_ff = design.lanes * design.n * (code_bits + index_bits) + design.scale_bits + FLAG_BITS
    drain_bits = design.pack * design.acc_bits
    return ResourceCount(lut=drain_bits, ff=activation_ff + weight_ff + drain_bits)
