"""Integer time inside the engine: picoseconds. Conversions happen only here."""

from __future__ import annotations

import math

PS_PER_NS = 1_000
PS_PER_S = 1_000_000_000_000


def ns_to_ps(ns: float) -> int:
    """Nanoseconds to integer picoseconds."""
    return round(ns * PS_PER_NS)


def ps_to_s(ps: int) -> float:
    """Picoseconds to seconds (for reporting only)."""
    return ps / PS_PER_S


def cycles_to_ps(cycles: int, clock_mhz: float) -> int:
    """Duration of ``cycles`` clock cycles, rounded up to a whole picosecond."""
    return _ceil(cycles * 1e6 / clock_mhz)


def transfer_ps(nbytes: int, bandwidth_gbps: float) -> int:
    """Time to move ``nbytes`` at ``bandwidth_gbps`` (GB/s = bytes/ns), rounded up."""
    return _ceil(nbytes * PS_PER_NS / bandwidth_gbps)


def _ceil(ps: float) -> int:
    # Tolerate float noise (4000.0000001 ps is 4000 ps), then round up.
    return math.ceil(ps - 1e-6)
