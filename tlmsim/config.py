"""Typed configuration: YAML in, validated pydantic models out.

Units are part of every field name (``bandwidth_gbps`` is GB/s, i.e. 10^9 bytes/s;
``bank_kib`` is KiB; ``clock_mhz`` is MHz). Unknown fields are errors. Every user
mistake becomes a ``ConfigError`` whose one-line message names the field and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tlmsim.errors import ConfigError

Positive = Field(gt=0)


class Strict(BaseModel):
    """Base of every config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryConfig(Strict):
    """An off-chip memory (all channels of one kind): peak numbers from the data sheet."""

    kind: Literal["hbm2", "ddr4", "generic"] = "generic"
    channels: int = Field(gt=0, description="independent channels (HBM pseudo-channels)")
    bandwidth_gbps: float = Field(gt=0, description="total peak bandwidth, GB/s")
    latency_ns: float = Field(ge=0, description="idle read latency")
    burst_bytes: int = Field(64, gt=0, description="smallest transfer; requests round up to it")
    interleave_bytes: int = Field(4096, gt=0, description="address interleave across channels")
    capacity_gib: float = Field(gt=0)

    @property
    def capacity_bytes(self) -> int:
        """Capacity in bytes."""
        return int(self.capacity_gib * 2**30)


class BufferConfig(Strict):
    """A banked on-chip buffer (ping-pong with 2 banks)."""

    banks: int = Field(2, ge=1)
    bank_kib: float = Field(gt=0)
    memory: Literal["uram", "bram"] = "uram"

    @property
    def bank_bytes(self) -> int:
        """Bytes per bank."""
        return int(self.bank_kib * 1024)


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


class Config(Strict):
    """A whole simulation: memories, accelerator, placement, workload."""

    name: str
    seed: int = 0
    memory: dict[str, MemoryConfig] = Field(min_length=1)
    accelerator: AcceleratorConfig
    placement: PlacementConfig
    workload: WorkloadConfig
    trace: TraceConfig = TraceConfig()

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
        used[buf.memory] += buf.banks * buf.bank_kib
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
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section of the config")
        node = node[part]
    node[parts[-1]] = yaml.safe_load(text)


def _describe(err: ValidationError, source: str) -> str:
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
    return "\n".join(lines)
