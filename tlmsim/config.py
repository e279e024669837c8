"""Typed configuration: YAML in, validated pydantic models out.

Units are part of every field name (``bandwidth_gbps`` is GB/s, i.e. 10^9 bytes/s;
``bank_kib`` is KiB; ``clock_mhz`` is MHz). Unknown fields are errors. Every user
mistake becomes a ``ConfigError`` whose one-line message names the field and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tlmsim.errors import ConfigError

Positive = Field(gt=0)


class Strict(BaseModel):
    """Base of every config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


AddressMapping = Literal["row_column_bank", "row_bank_column", "bank_row_column"]


class DramTimingConfig(Strict):
    """DRAM organisation and command timing of one channel (times in ns).

    ``preset`` names a file in ``models/presets/`` (e.g. ``hbm2_u280``, ``ddr4_2400``)
    whose values fill every field not given here; the file cites each value's source.
    """

    preset: str | None = Field(None, description="preset file in models/presets/; explicit fields override it")
    bank_groups: int = Field(gt=0)
    banks: int = Field(gt=0, description="banks per channel (all bank groups)")
    row_bytes: int = Field(gt=0, description="row (page) size per channel")
    address_mapping: AddressMapping = Field(
        "row_column_bank", description="order of the local-address fields, most significant first")
    t_rcd_ns: float = Field(ge=0, description="ACTIVATE to READ/WRITE")
    t_rp_ns: float = Field(ge=0, description="PRECHARGE period")
    t_ras_ns: float = Field(ge=0, description="ACTIVATE to PRECHARGE")
    t_cl_ns: float = Field(ge=0, description="READ to first data (part of latency_ns; documented)")
    t_ccd_s_ns: float = Field(ge=0, description="column to column, different bank group")
    t_ccd_l_ns: float = Field(ge=0, description="column to column, same bank group")
    t_rrd_s_ns: float = Field(ge=0, description="ACTIVATE to ACTIVATE, different bank group")
    t_faw_ns: float = Field(ge=0, description="window of four ACTIVATEs")
    t_refi_ns: float = Field(ge=0, description="refresh interval; 0 disables refresh")
    t_rfc_ns: float = Field(ge=0, description="refresh cycle time (channel blocked)")
    refresh: Literal["postponed", "windowed"] = Field(
        "postponed", description="postponed: the controller defers refreshes while busy (at most "
        "refresh_postpone_max) and catches up in idle time; windowed: fixed blocked windows [m tREFI - tRFC, m tREFI)")
    refresh_postpone_max: int = Field(8, ge=0, description="refreshes the controller may postpone (JEDEC: 8)")
    t_wtr_ns: float = Field(ge=0, description="write-to-read bus turnaround (tCWL + burst + tWTR)")
    t_rtw_ns: float = Field(ge=0, description="read-to-write bus turnaround")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data):
        if isinstance(data, dict) and data.get("preset"):
            return {**_dram_preset(data["preset"]), **data}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.banks % self.bank_groups:
            raise ValueError(f"banks={self.banks} must be a multiple of bank_groups={self.bank_groups}")
        if self.t_refi_ns and self.t_rfc_ns >= self.t_refi_ns:
            raise ValueError(f"t_rfc_ns={self.t_rfc_ns} must be < t_refi_ns={self.t_refi_ns}")
        return self

    @property
    def t_rc_ns(self) -> float:
        """ACTIVATE to ACTIVATE in the same bank."""
        return self.t_ras_ns + self.t_rp_ns


def _dram_preset(name: str) -> dict:
    """Fields of a DRAM timing preset (models/presets/<name>.yaml)."""
    from importlib import resources

    folder = resources.files("tlmsim.models") / "presets"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
        raise ValueError(f"unknown DRAM timing preset '{name}'; use one of {known}")
    return yaml.safe_load(path.read_text())


class HbmSwitchConfig(Strict):
    """The U280 HBM AXI switch: 32 ports in mini-switches of 4 ports x 4 pseudo-channels.

    A port reaching a pseudo-channel of another mini-switch crosses lateral links,
    which are shared and limit throughput (AMD PG276, "Lateral AXI Switch Access
    Throughput Loss"); each crossing adds latency.
    """

    ports_per_switch: int = Field(4, gt=0, description="AXI ports (and pseudo-channels) per mini-switch")
    ports_used: int = Field(gt=0, description="AXI ports the accelerator drives, spread evenly over the switch")
    port_gbps: float = Field(gt=0, description="peak of one AXI port (256 bit x AXI clock)")
    lateral_fraction: float = Field(0.5, gt=0, le=1, description="throughput of a lateral path / local")
    lateral_latency_ns: float = Field(ge=0, description="extra latency per mini-switch crossed")


class MemoryConfig(Strict):
    """An off-chip memory (all channels of one kind): peak numbers from the data sheet,
    optional DRAM command timing, HBM switch and how addresses spread over channels."""

    kind: Literal["hbm2", "ddr4", "generic"] = "generic"
    channels: int = Field(gt=0, description="independent channels (HBM pseudo-channels)")
    bandwidth_gbps: float = Field(gt=0, description="total peak bandwidth, GB/s")
    latency_ns: float = Field(ge=0, description="idle read latency (page hit)")
    burst_bytes: int = Field(64, gt=0, description="smallest transfer; requests round up to it")
    interleave_bytes: int = Field(4096, gt=0, description="address interleave across channels")
    capacity_gib: float = Field(gt=0)
    dram: DramTimingConfig | None = Field(None, description="command timing; None = ideal pipe at peak")
    switch: HbmSwitchConfig | None = Field(None, description="HBM AXI switch; None = every port local")
    placement_channels: Literal["spread", "one", "range"] = Field(
        "spread", description="spread: interleave over all channels; one: each channel holds a contiguous "
                              "capacity/channels slice, so a tensor sits in one channel; range: interleave "
                              "over channel_range")
    channel_range: tuple[int, int] | None = Field(None, description="(first channel, count) for 'range'")

    @property
    def capacity_bytes(self) -> int:
        """Capacity in bytes."""
        return int(self.capacity_gib * 2**30)

    @model_validator(mode="after")
    def _channels_consistent(self):
        if self.placement_channels == "range":
            if self.channel_range is None:
                raise ValueError("placement_channels 'range' needs channel_range: [first, count]")
            first, count = self.channel_range
            if first < 0 or count <= 0 or first + count > self.channels:
                raise ValueError(f"channel_range {list(self.channel_range)} must lie within the "
                                 f"{self.channels} channels")
        if self.dram is not None and self.dram.row_bytes % self.burst_bytes:
            raise ValueError(f"dram.row_bytes={self.dram.row_bytes} must be a multiple of burst_bytes")
        if self.switch is not None and self.channels % self.switch.ports_per_switch:
            raise ValueError(f"channels={self.channels} must be a multiple of switch.ports_per_switch")
        if self.switch is not None and self.switch.ports_used > self.channels:
            raise ValueError(f"switch.ports_used={self.switch.ports_used} exceeds the {self.channels} ports")
        return self


# One physical block per kind: (KiB, data bits per port per cycle). XCU280 UltraRAM is
# 4K x 72 bit (288 Kb); a BRAM36 in simple dual-port mode is 512 x 72 bit (36 Kb). Both
# have one write and one read port per cycle (AMD UG573, "UltraScale Architecture Memory
# Resources"; DS963 for the counts).
ON_CHIP_BLOCKS = {"uram": (36.0, 72), "bram": (4.5, 72)}


class BufferConfig(Strict):
    """A banked on-chip buffer (ping-pong with 2 banks), each bank a row of URAM/BRAM blocks.

    A bank reads (and, on its other port, writes) ``bank_width_bits`` per cycle: the
    blocks side by side. ``width_bits`` widens a bank beyond what its capacity needs
    (more blocks, each partly used) so it can keep up with a fast producer.
    """

    banks: int = Field(2, ge=1)
    bank_kib: float = Field(gt=0)
    memory: Literal["uram", "bram"] = "uram"
    width_bits: int | None = Field(None, gt=0, description="bank data width; None = blocks that hold bank_kib")

    @property
    def bank_bytes(self) -> int:
        """Bytes per bank."""
        return int(self.bank_kib * 1024)

    @property
    def blocks_per_bank(self) -> int:
        """Physical blocks of one bank: enough for its capacity and for its width."""
        block_kib, block_bits = ON_CHIP_BLOCKS[self.memory]
        for_capacity = -(-self.bank_kib // block_kib)
        for_width = -(-(self.width_bits or 0) // block_bits)
        return int(max(for_capacity, for_width))

    @property
    def bank_width_bits(self) -> int:
        """Bits a bank moves per cycle and port."""
        return self.blocks_per_bank * ON_CHIP_BLOCKS[self.memory][1]

    @property
    def footprint_kib(self) -> float:
        """On-chip memory the buffer occupies (whole blocks)."""
        return self.banks * self.blocks_per_bank * ON_CHIP_BLOCKS[self.memory][0]


class ActivationBufferConfig(Strict):
    """On-chip activations: a layer's input and output rows must fit a token chunk."""

    capacity_kib: float = Field(gt=0)
    memory: Literal["uram", "bram"] = "uram"


class DecoderConfig(Strict):
    """Weight decoder: N:M index expansion and INT4/ternary dequantization."""

    weights_per_cycle: int = Field(gt=0, description="stored weights decoded per cycle")
    latency_cycles: int = Field(4, ge=0)


class PeArrayConfig(Strict):
    """Array of rows x cols N:M PEs (the RTL in rtl/ is one PE with these n, m, lanes)."""

    rows: int = Field(gt=0, description="token rows computed in parallel")
    cols: int = Field(gt=0, description="output columns computed in parallel")
    n: int = Field(gt=0, description="kept weights per group the PE mux handles")
    m: int = Field(gt=1, description="group size of the N:M pattern")
    lanes: int = Field(gt=0, description="N:M groups per PE per cycle")
    native_weight_bits: int = Field(4, gt=0, description="multiplier weight width; wider weights take more beats")
    ternary: bool = Field(True, description="multiplication-free mode for ternary weights")

    @model_validator(mode="after")
    def _n_below_m(self):
        if self.n >= self.m:
            raise ValueError(f"n={self.n} must be < m={self.m} (N:M keeps N of every M weights)")
        if self.m & (self.m - 1):
            raise ValueError(f"m={self.m} must be a power of two (indices are log2(m) bits)")
        return self


class VectorUnitConfig(Strict):
    """SIMD unit for norms, softmax, activations, RoPE and residual adds."""

    lanes: int = Field(gt=0, description="elements per cycle")
    latency_cycles: int = Field(16, ge=0)
    cycles_per_element: dict[str, float] = Field(
        default_factory=lambda: {"rmsnorm": 2, "layernorm": 3, "softmax": 3, "activation": 2,
                                 "elementwise": 1, "rope_table": 2},
        description="issue cycles per element and lane for each vector op")


class FpgaConfig(Strict):
    """Device totals used to check that on-chip buffers fit (AMD DS963 for the U280)."""

    uram_kib: float = Field(gt=0)
    bram_kib: float = Field(gt=0)


class AcceleratorConfig(Strict):
    """The accelerator on the FPGA fabric."""

    clock_mhz: float = Field(gt=0)
    fpga: FpgaConfig
    weight_buffer: BufferConfig
    kv_buffer: BufferConfig
    activation_buffer: ActivationBufferConfig
    decoder: DecoderConfig
    pe_array: PeArrayConfig
    vector_unit: VectorUnitConfig


class PlacementConfig(Strict):
    """Which memories hold each tensor class, tried in order until one has room."""

    weights: list[str] = Field(min_length=1)
    kv_cache: list[str] = Field(min_length=1)
    embeddings: list[str] = Field(min_length=1)


class WorkloadConfig(Strict):
    """The model, its compression, and the inference job."""

    model: str = Field(description="shipped config name (e.g. 'llama-7b') or a model directory")
    weight_format: str = Field(description="decoder-layer linears: fp16, int8, int4, ternary, optionally -N:M")
    lm_head_format: str = "fp16"
    group_size: int = Field(128, gt=0, description="kept weights per INT scale")
    batch: int = Field(1, gt=0)
    prefill_tokens: int = Field(gt=0)
    decode_tokens: int = Field(ge=0)
    activation_bits: int = Field(8, gt=0)
    kv_bits: int = Field(16, gt=0)

    @field_validator("weight_format", "lm_head_format")
    @classmethod
    def _known_format(cls, spec: str) -> str:
        from tlmsim.workloads.formats import parse_format

        parse_format(spec)  # raises ValueError with the fix
        return spec


class TraceConfig(Strict):
    """How much of the run goes into trace.json and the timeline."""

    prefill: bool = True
    decode_steps: int = Field(1, ge=0, description="first decode steps to trace")


class SimulationConfig(Strict):
    """How the simulator itself runs (not what it models)."""

    reuse_identical_layers: bool = Field(
        True, description="skip decoder layers once the whole system state repeats exactly from one layer "
        "boundary to the next (models/steady_state.py); results are identical either way")


class Config(Strict):
    """A whole simulation: memories, accelerator, placement, workload."""

    name: str
    seed: int = 0
    memory: dict[str, MemoryConfig] = Field(min_length=1)
    accelerator: AcceleratorConfig
    placement: PlacementConfig
    workload: WorkloadConfig
    trace: TraceConfig = TraceConfig()
    simulation: SimulationConfig = SimulationConfig()

    @model_validator(mode="after")
    def _cross_checks(self):
        for field in ("weights", "kv_cache", "embeddings"):
            for mem in getattr(self.placement, field):
                if mem not in self.memory:
                    raise ValueError(f"placement.{field} names memory '{mem}', which is not defined; "
                                     f"use one of {sorted(self.memory)}")
        _check_format_fits_pe(self.workload.weight_format, self.workload.group_size, self.accelerator.pe_array)
        _check_on_chip_budget(self.accelerator)
        return self


def _check_format_fits_pe(spec: str, group_size: int, pe: PeArrayConfig) -> None:
    from tlmsim.workloads.formats import parse_format

    fmt = parse_format(spec, group_size)
    if fmt.sparse and (fmt.n, fmt.m) != (pe.n, pe.m):
        raise ValueError(f"workload.weight_format {spec} is {fmt.n}:{fmt.m} sparse but the PE array "
                         f"is built for {pe.n}:{pe.m}; set accelerator.pe_array.n/m to {fmt.n}/{fmt.m}")
    if fmt.encoding == "ternary" and not pe.ternary:
        raise ValueError("workload.weight_format is ternary but accelerator.pe_array.ternary is false")


def _check_on_chip_budget(acc: AcceleratorConfig) -> None:
    used = {"uram": 0.0, "bram": 0.0}
    for buf in (acc.weight_buffer, acc.kv_buffer):
        used[buf.memory] += buf.footprint_kib  # whole blocks: a wide bank uses more than its capacity
    used[acc.activation_buffer.memory] += acc.activation_buffer.capacity_kib
    for kind, total in (("uram", acc.fpga.uram_kib), ("bram", acc.fpga.bram_kib)):
        if used[kind] > total:
            raise ValueError(f"on-chip buffers need {used[kind]:.0f} KiB of {kind.upper()} but the FPGA "
                             f"has {total:.0f} KiB (accelerator.fpga.{kind}_kib); shrink the buffers")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override (``a.b.c=value``) and validate a YAML config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass the path of a YAML file such as configs/u280_llama7b.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (name, memory, accelerator, ...)")
    for item in overrides or []:
        apply_override(raw, item)
    return validate_config(raw, source=str(path))


def validate_config(raw: dict, source: str = "config") -> Config:
    """Validate a config dict, turning pydantic errors into one ConfigError."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def apply_override(raw: dict, item: str) -> None:
    """Set ``section.field=value`` in a raw config dict (value parsed as YAML)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' must look like section.field=value")
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        if node.get(part) is None and depth == 0 and part in Config.model_fields:
            node[part] = {}  # a section left to its defaults in the file
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section of the config")
        node = node[part]
    # YAML 1.1 reads "1:2" as a base-60 integer (62); an N:M pattern must stay text.
    node[parts[-1]] = text if re.fullmatch(r"\d+(:\d+)+", text.strip()) else yaml.safe_load(text)


def _describe(err: ValidationError, source: str) -> str:
    """The first problem in one line (plus how many more there are)."""
    lines = _problems(err, source)
    more = f" (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
    return lines[0] + more


def _problems(err: ValidationError, source: str) -> list[str]:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown field '{field}'; remove it or fix its spelling")
        elif e["type"] == "missing":
            lines.append(f"{source}: missing field '{field}'; add it")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {field}: {msg}" + ("" if "; " in msg else f" (got {e.get('input')!r})"))
    return lines
