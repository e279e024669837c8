"""Coupled axes: one choice that changes several config fields together.

``format`` is the weight format with the PE array rebuilt for it, as a designer would: the
array keeps its multipliers per PE (n x lanes) and takes the format's N:M shape (2:4 -> 16
lanes of 2, 1:4 -> 32 lanes of 1, ...); dense formats run on the array as it is. Studies,
sweeps (``--set format=[int4,int4-2:4]``) and the explorer use the same rule.
"""

from __future__ import annotations

from tlmsim.engine.errors import ConfigError
from tlmsim.workloads.formats import parse_format

COUPLED_FORMAT = "format"  # the point field that means "weight format, PE array rebuilt for it"


def format_overrides(n: int, lanes: int, spec: str) -> list[str]:
    """Overrides that set weight format ``spec`` on an array of ``n`` x ``lanes`` multipliers per PE."""
    fmt = parse_format(spec)
    multipliers = n * lanes
    out = [f"workload.weight_format={spec}"]
    if fmt.sparse:
        if multipliers % fmt.n:
            raise ConfigError(f"{spec}: {multipliers} multipliers per PE cannot be split into groups of {fmt.n}")
        out += [f"accelerator.pe_array.n={fmt.n}", f"accelerator.pe_array.m={fmt.m}",
                f"accelerator.pe_array.lanes={multipliers // fmt.n}"]
    return out
