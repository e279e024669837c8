"""Typed configuration: YAML in, validated pydantic models out.

Units are part of every field name (``bandwidth_gbps`` is GB/s, i.e. 10^9 bytes/s;
``bank_kib`` is KiB; ``clock_mhz`` is MHz). Unknown fields are errors. Every user
mistake becomes a ``ConfigError`` whose one-line message names the field and the fix.

Three mechanisms keep bad input out, each in one place:

* YAML is read by ``tlmsim.engine.yamlio`` (no aliases, no duplicate keys, size-capped), for
  files and ``--set`` values alike;
* every section derives from ``Section``: unknown keys are errors, numbers must be
  finite (``allow_inf_nan=False``) and no value is coerced (``strict=True``: ``true`` is
  not 1, ``"250"`` is not 250; an int is still a valid float);
* every number has a physical range, declared on its field (``Field(ge=, le=)``, mostly
  through the named ranges below) and listed in docs/configs.md ("Input rules and
  ranges"). The ranges
  are wide enough for any real device and tight enough that no derived time or size
  overflows (a 1e-300 MHz clock would make every cycle last 1e306 ps).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import annotated_types
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from tlmsim.engine.configbase import (  # noqa: F401  (re-exported: the ranges and bases of every section)
    BANDWIDTH_GBPS,
    BITS,
    CLOCK_MHZ,
    CYCLES,
    ON_CHIP_KIB,
    PORTS,
    TIME_NS,
    TOKENS,
    Section,
    Strict,
    list_to_tuple,
)
from tlmsim.engine.errors import ConfigError
from tlmsim.engine.yamlio import clip, load_yaml_file, load_yaml_text, short_repr

# Each component owns its config model; the application composes them into ``Config``.
from tlmsim.models.accelerator import AcceleratorConfig, FpgaConfig  # noqa: F401
from tlmsim.models.board import BoardConfig  # noqa: F401
from tlmsim.models.buffer import ON_CHIP_BLOCKS, ActivationBufferConfig, BufferConfig  # noqa: F401
from tlmsim.models.decoder import DecoderConfig  # noqa: F401
from tlmsim.models.dram import DramTimingConfig  # noqa: F401
from tlmsim.models.memory import HbmSwitchConfig, MemoryConfig  # noqa: F401
from tlmsim.models.pe_array import PeArrayConfig  # noqa: F401
from tlmsim.models.placement import PlacementConfig  # noqa: F401
from tlmsim.models.vector_unit import VectorUnitConfig  # noqa: F401


class WorkloadConfig(Section):
    """The model, its compression, and the inference job."""

    model: str = Field(max_length=4096, description="shipped config name (e.g. 'llama-7b') or a model directory")
    weight_format: str = Field(max_length=32, description="decoder-layer linears: fp16, int8, int4, ternary, "
                                                          "optionally -N:M")
    lm_head_format: str = Field("fp16", max_length=32)
    group_size: int = Field(128, ge=1, le=2**20, description="kept weights per INT scale")
    batch: int = Field(1, ge=1, le=4096)
    prefill_tokens: int = Field(ge=1, le=TOKENS)
    decode_tokens: int = Field(ge=0, le=TOKENS)
    activation_bits: BITS = 8
    kv_bits: BITS = 16

    @field_validator("weight_format", "lm_head_format")
    @classmethod
    def _known_format(cls, spec: str) -> str:
        from tlmsim.workloads.formats import parse_format

        parse_format(spec)  # raises ValueError with the fix
        return spec


class TraceConfig(Section):
    """How much of the run goes into trace.json and the timeline."""

    prefill: bool = True
    decode_steps: int = Field(1, ge=0, le=TOKENS, description="first decode steps to trace "
                                                              "(at most workload.decode_tokens)")


class SimulationConfig(Section):
    """How the simulator itself runs (not what it models)."""

    reuse_identical_layers: bool = Field(
        True, description="skip decoder layers once the whole system state repeats exactly from one layer "
        "boundary to the next (tlmsim/models/steady_state.py); results are identical either way")
    allow_over_budget: bool = Field(
        False, description="run a design that exceeds its board (resources, clock, memories) as a what-if; "
        "the result is marked (tlmsim run --allow-over-budget)")


class Config(Section):
    """A whole simulation: memories, accelerator, placement, workload."""

    name: str = Field(max_length=200)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    memory: dict[str, MemoryConfig] = Field(min_length=1, max_length=16)
    board: BoardConfig | None = Field(None, description="the board the design is checked against (a preset "
                                                        "name such as u280, or a mapping with preset: and overrides)")
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
                    raise _cross_error(f"placement.{field} names memory {short_repr(mem)}, which is not defined; "
                                       f"use one of {sorted(self.memory)}", f"placement.{field}", "memory")
        _check_format_fits_pe(self.workload.weight_format, self.workload.group_size, self.accelerator.pe_array)
        if self.accelerator.pe_array.pe == "ternary" and not self.workload.lm_head_format.startswith("ternary"):
            raise _cross_error(f"workload.lm_head_format={self.workload.lm_head_format} cannot run on "
                               "accelerator.pe_array.pe=ternary (ternary weights only); set lm_head_format: ternary",
                               "workload.lm_head_format", "accelerator.pe_array")
        _check_on_chip_budget(self.accelerator)
        steps, tokens = self.trace.decode_steps, self.workload.decode_tokens
        if steps > max(tokens, 1):  # the default (trace step 1) stays valid for a prefill-only run
            raise _cross_error(f"trace.decode_steps={steps} exceeds workload.decode_tokens={tokens}; "
                               f"trace at most {max(tokens, 1)} steps", "trace.decode_steps", "workload.decode_tokens")
        return self


def _cross_error(message: str, *fields: str) -> PydanticCustomError:
    """A check across sections failed; ``fields`` are the settings it involves (to blame a --set)."""
    return PydanticCustomError("cross_check", message, {"fields": fields})


def _check_format_fits_pe(spec: str, group_size: int, pe: PeArrayConfig) -> None:
    from tlmsim.workloads.formats import parse_format

    fmt = parse_format(spec, group_size)
    blame = ("workload.weight_format", "accelerator.pe_array")
    if fmt.sparse and (fmt.n, fmt.m) != (pe.n, pe.m):
        raise _cross_error(f"workload.weight_format {spec} is {fmt.n}:{fmt.m} sparse but the PE array "
                           f"is built for {pe.n}:{pe.m}; set accelerator.pe_array.n/m to {fmt.n}/{fmt.m}", *blame)
    if fmt.encoding == "ternary" and not pe.ternary:
        raise _cross_error("workload.weight_format is ternary but accelerator.pe_array.ternary is false; "
                           "set it to true", *blame)
    if fmt.encoding != "ternary" and pe.pe == "ternary":
        raise _cross_error(f"workload.weight_format {spec} is not ternary but accelerator.pe_array.pe is ternary "
                           "(multiply-free, ternary weights only); set pe: int4 or use a ternary format", *blame)


def _check_on_chip_budget(acc: AcceleratorConfig) -> None:
    used = {"uram": 0.0, "bram": 0.0}
    for buf in (acc.weight_buffer, acc.kv_buffer):
        used[buf.memory] += buf.footprint_kib  # whole blocks: a wide bank uses more than its capacity
    used[acc.activation_buffer.memory] += acc.activation_buffer.capacity_kib
    for kind, total in (("uram", acc.fpga.uram_kib), ("bram", acc.fpga.bram_kib)):
        if used[kind] > total:
            raise _cross_error(f"on-chip buffers need {used[kind]:.0f} KiB of {kind.upper()} but the FPGA "
                               f"has {total:.0f} KiB (accelerator.fpga.{kind}_kib); shrink the buffers", "accelerator")


# ---------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> Config:
    """Read, override (``a.b.c=value``) and validate a YAML config."""
    path = Path(path)
    source = clip(str(path), 120)
    if not path.exists():
        raise ConfigError(f"config file {source} not found; pass the path of a YAML file "
                          "such as configs/u280_llama7b.yaml")
    raw = load_yaml_file(path, source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (name, memory, accelerator, ...)")
    overrides = list(overrides or [])
    for item in overrides:
        apply_override(raw, item)
    return validate_config(raw, source=source, overrides=overrides)


def validate_config(raw: dict, source: str = "config", overrides: Sequence[str] = ()) -> Config:
    """Validate a config dict, turning pydantic errors into one ConfigError.

    ``overrides`` are the ``--set`` items already applied to ``raw``: a problem in a field
    one of them wrote is reported as that ``--set``'s, not the file's."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe(err, source, overrides)) from None


def apply_override(raw: dict, item: str) -> None:
    """Set ``section.field=value`` in a raw config dict; the value is YAML, read by tlmsim.engine.yamlio."""
    source = f"--set {clip(item)}"
    parts = _override_path(item)
    node = raw
    for depth, part in enumerate(parts[:-1]):
        if node.get(part) is None and depth == 0 and part in Config.model_fields:
            node[part] = {}  # a section left to its defaults in the file
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"{source}: {clip(part)!r} is not a section of the config; "
                              "check the field path, e.g. accelerator.clock_mhz")
        node = node[part]
    node[parts[-1]] = load_yaml_text(item.partition("=")[2], source)  # 2:4 stays text (see yamlio)


def _override_path(item: str) -> tuple[str, ...]:
    """The field path of a ``--set`` item (``a.b=1`` -> ('a', 'b'))."""
    key, sep, _ = item.partition("=")
    parts = tuple(p.strip() for p in key.split("."))
    if not sep or not all(parts):
        raise ConfigError(f"--set {clip(item)}: must look like section.field=value, "
                          "e.g. --set workload.decode_tokens=64")
    return parts


# ---------------------------------------------------------------- error messages


# What to do about a wrong type; strict mode refuses what lax mode would silently convert.
_TYPE_FIXES = {
    "int_type": "use a whole number without quotes (not true/false, not 4.0)",
    "float_type": "use a plain number without quotes or units",
    "bool_type": "use true or false",
    "string_type": "use text (quote it if it looks like a number or true/false)",
    "dict_type": "use a mapping of fields",
    "model_type": "use a mapping of fields",
    "list_type": "use a list, e.g. [hbm, ddr]",
    "finite_number": "use a finite number",
}
# Errors about a number: the message adds the field's allowed range.
_NUMBER_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
                  "int_type", "float_type"}
# Units of the number in a field, by the suffix of its name.
_UNITS = {"_mhz": "MHz", "_gbps": "GB/s", "_ns": "ns", "_kib": "KiB", "_gib": "GiB", "_bytes": "bytes",
          "_bits": "bits", "_cycles": "cycles"}
# A whole message stays short even if a validator echoes its input.
MAX_MESSAGE = 400


def _describe(err: ValidationError, source: str, overrides: Sequence[str] = ()) -> str:
    """The first problem in one line (plus how many more there are)."""
    lines = [_problem(e, source, overrides) for e in err.errors()]
    more = f" (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
    return clip(lines[0], MAX_MESSAGE) + more


def _problem(e: dict, source: str, overrides: Sequence[str]) -> str:
    """One pydantic error as ``source: field: what is wrong; the fix``."""
    loc = tuple(str(p) for p in e["loc"])
    blamed = e.get("ctx", {}).get("fields") if e["type"] == "cross_check" else None
    source = _blame(overrides, [tuple(f.split(".")) for f in blamed] if blamed else [loc]) or source
    field = ".".join(clip(p, 40) for p in loc) or "(top level)"
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown field '{field}'; remove it or fix its spelling"
    if e["type"] == "missing":
        return f"{source}: missing field '{field}'; add it"
    if e["type"] == "cross_check":
        return f"{source}: {e['msg']}"
    msg = e["msg"].removeprefix("Value error, ")
    if "; " in msg:  # our own validators already say what to do
        return f"{source}: {field}: {msg}"
    got = "" if isinstance(e.get("input"), dict) else f" (got {short_repr(e.get('input'))})"
    return f"{source}: {field}: {msg}{got}{_fix(e['type'], e['loc'])}"


def _fix(kind: str, loc: tuple) -> str:
    """``; <what to do>`` for a pydantic error type: the right type and the allowed range."""
    allowed = _range_at(loc) if kind in _NUMBER_ERRORS else None
    if kind in _TYPE_FIXES and kind != "finite_number":
        return f"; {_TYPE_FIXES[kind]}" + (f", in {allowed}" if allowed else "")
    if allowed:
        return f"; the allowed range is {allowed}"
    return f"; {_TYPE_FIXES[kind]}" if kind in _TYPE_FIXES else ""


def _blame(overrides: Sequence[str], fields: list[tuple[str, ...]]) -> str | None:
    """``--set ITEM`` of the last override that wrote into (or around) one of ``fields``."""
    for item in reversed(overrides):
        path = _override_path(item)
        for field in fields:
            if field and (field[:len(path)] == path or path[:len(field)] == field):
                return f"--set {clip(item)}"
    return None


# ---------------------------------------------------------------- ranges


def numeric_ranges(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every number of the config as (field path, allowed range), e.g. ('accelerator.clock_mhz',
    '(0.001, 2000] MHz'); ``*`` stands for any name (memories, vector ops). docs/configs.md lists them."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub, keyed = _submodel(info.annotation)
        if sub is not None:
            yield from numeric_ranges(sub, f"{path}.*." if keyed else f"{path}.")
            continue
        allowed = _range_text(name, info.annotation, info.metadata)
        if allowed:
            yield path + (".*" if typing.get_origin(info.annotation) is dict else ""), allowed


def _range_at(loc: tuple) -> str | None:
    """The allowed range of the field at a pydantic error location (None if not a number)."""
    model, keyed, info, name = Config, False, None, ""
    for part in loc:
        if keyed:  # a name inside a dict of sections (memory.<name>)
            keyed = False
            continue
        if model is None or part not in model.model_fields:
            break
        name, info = part, model.model_fields[part]
        model, keyed = _submodel(info.annotation)
    return _range_text(name, info.annotation, info.metadata) if info is not None and model is None else None


def _submodel(annotation) -> tuple[type[BaseModel] | None, bool]:
    """The config section inside a field's type (``X``, ``X | None``, ``dict[str, X]``) and
    whether a dict key comes first."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        sub, _ = _submodel(args[1])
        return sub, sub is not None
    for arg in args if origin in (typing.Union, types.UnionType) else ():
        sub, keyed = _submodel(arg)
        if sub is not None:
            return sub, keyed
    return None, False


def _range_text(name: str, annotation, metadata: list) -> str | None:
    """``[lo, hi] unit`` from a field's constraints (or those of its elements), or the
    allowed values of a Literal of numbers."""
    bounds = _bounds(metadata) or _bounds(_element_metadata(annotation))
    unit = next((u for suffix, u in _UNITS.items() if name.endswith(suffix)), "")
    if bounds:
        return f"{bounds} {unit}".strip()
    values = typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()
    if values and all(isinstance(v, int) for v in values):
        return "one of " + ", ".join(map(str, values)) + (f" {unit}" if unit else "")
    return None


def _bounds(metadata: list) -> str | None:
    """``(lo, hi]``-style text of annotated-types bounds, or None."""
    low = high = None
    for c in metadata:
        if isinstance(c, annotated_types.Gt):
            low = f"({_num(c.gt)}"
        elif isinstance(c, annotated_types.Ge):
            low = f"[{_num(c.ge)}"
        elif isinstance(c, annotated_types.Lt):
            high = f"{_num(c.lt)})"
        elif isinstance(c, annotated_types.Le):
            high = f"{_num(c.le)}]"
    return f"{low}, {high}" if low and high else None


def _element_metadata(annotation) -> list:
    """Constraints of the numbers inside a container type (dict values, tuple items, X | None)."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, FieldInfo) and arg.metadata:
            return arg.metadata
        found = _element_metadata(arg)
        if found:
            return found
    return []


def _num(x: float) -> str:
    """A bound as people write it: 2000, 0.001, 1e-06."""
    return str(int(x)) if x == int(x) else f"{x:g}"
