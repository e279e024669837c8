"""Base of every config section and the named physical ranges its fields use.

Each component's config model lives next to the component (models/*.py); the
application composes them (tlmsim/config.py). Ranges are keyword arguments of
``Field``; docs/configs.md lists them all ("Input rules and ranges").
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tlmsim.engine.errors import ConfigError
from tlmsim.engine.yamlio import load_yaml_file, short_repr

# Named physical ranges (keyword arguments of Field). Positive quantities exclude a tiny
# floor rather than 0 alone: above it every derived duration stays finite.
TIME_NS = dict(ge=0, le=1e6)  # a latency or DRAM timing: at most 1 ms
BANDWIDTH_GBPS = dict(gt=0.001, le=100_000)  # above 1 MB/s, at most 100 TB/s
CLOCK_MHZ = dict(gt=0.001, le=2000)  # above 1 kHz, at most 2 GHz (FPGA fabric)
ON_CHIP_KIB = dict(gt=0.001, le=2**20)  # on-chip memory: at most 1 GiB
PORTS = dict(ge=1, le=1024)  # memory channels, switch ports
CYCLES = dict(ge=0, le=10**6)  # a fixed pipeline latency
TOKENS = 2**20  # prompt and generated tokens: at most 1,048,576 each
BITS = Literal[4, 8, 16]  # activation and KV-cache widths the workload model sizes (int4, int8, fp16)


class Strict(BaseModel):
    """Base of every YAML-backed model: unknown keys are rejected, floats must be finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Section(Strict):
    """Base of every config section: additionally, no type coercion (``true`` is not 1)."""

    model_config = ConfigDict(strict=True)


def list_to_tuple(value):
    """[first, count] from YAML as the tuple the field holds."""
    return tuple(value) if isinstance(value, list) else value


Model = TypeVar("Model", bound=BaseModel)


def load_model_file(path: Path, model: type[Model], what: str, see: str) -> Model:
    """``model`` read from the YAML file ``path`` (a study, space or designs file), or one
    ConfigError line naming the file, the first bad field and where the fields are described."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found; see {see}")
    raw = load_yaml_file(path)  # the config loader's rules: no aliases, duplicate keys, binary
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {field}: {first['msg']} (got {short_repr(first.get('input'))}); "
                          f"see {see} for the fields") from None
