"""Integer arithmetic shared by every layer (time conversions live in ``timebase``)."""

from __future__ import annotations


def ceil_div(a, b):
    """``ceil(a / b)``: exact for integers (no float rounding); floor-division based for floats."""
    return -(-a // b)
