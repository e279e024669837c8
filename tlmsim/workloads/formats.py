"""Weight storage formats and their exact packed sizes.

A format says how one weight matrix W[out, in] is stored in DRAM, i.e. what the
accelerator's weight decoder reads. The packed layout (see ``tlmsim/workloads/packing.py``)
is three contiguous row-major bit streams, each padded only at its end to a byte:

* values:  the kept weights, ``value_bits`` each (fp16, int8, int4, or 2-bit ternary);
* indices: for N:M formats, the position of each kept weight inside its group of M
  inputs, ``ceil(log2(M))`` bits per kept weight (the layout the PE's mux consumes
  directly, as in NVIDIA's 2:4 metadata), or ``ceil(log2(C(M, N)))`` bits per group
  with ``index_encoding="combinatorial"`` (smaller, needs a decode table);
* scales:  one ``scale_bits`` scale (and for asymmetric INT, a ``value_bits`` zero
  point) per group of ``group_size`` *kept* weights along the input dimension, or one
  per tensor when ``group_size`` is None.

``packed_nbytes`` is the formula; tests check it equals the length of real packed
arrays for every format, so the simulator can size 7B layers without packing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["values", "int", "ternary"]


@dataclass(frozen=True)
class WeightFormat:
    """How a weight matrix is stored: element encoding, N:M sparsity, quant groups."""

    name: str
    encoding: Encoding  # "values" = floating point as-is, "int" = group-quantized, "ternary"
    value_bits: int  # bits per stored (kept) weight
    n: int | None = None  # kept weights per group of m inputs; None = dense
    m: int | None = None
    group_size: int | None = None  # kept weights per scale; None = one scale per tensor
    scale_bits: int = 16
    symmetric: bool = True
    index_encoding: Literal["per_weight", "combinatorial"] = "per_weight"

    def __post_init__(self) -> None:
        if (self.n is None) != (self.m is None):
            raise ValueError("n and m must be given together (N:M sparsity)")
        if self.n is not None and not 0 < self.n < self.m:
            raise ValueError(f"N:M sparsity needs 0 < N < M, got {self.n}:{self.m}")
        if self.group_size is not None and self.group_size <= 0:
            raise ValueError("group_size must be > 0")

    @property
    def sparse(self) -> bool:
        """True for N:M formats."""
        return self.n is not None

    @property
    def density(self) -> float:
        """Fraction of weights kept (N/M, or 1 for dense)."""
        return self.n / self.m if self.sparse else 1.0

    def kept_weights(self, out_features: int, in_features: int) -> int:
        """Number of stored weights of an [out, in] matrix."""
        if not self.sparse:
            return out_features * in_features
        if in_features % self.m:
            raise ValueError(f"in_features={in_features} is not a multiple of M={self.m}")
        return out_features * (in_features // self.m) * self.n

    def index_bits(self, out_features: int, in_features: int) -> int:
        """Bits of N:M position metadata for an [out, in] matrix."""
        if not self.sparse:
            return 0
        groups = out_features * (in_features // self.m)
        if self.index_encoding == "combinatorial":
            return groups * max(1, math.ceil(math.log2(math.comb(self.m, self.n))))
        return groups * self.n * max(1, math.ceil(math.log2(self.m)))

    def scale_count(self, out_features: int, in_features: int) -> int:
        """Number of scales (per row groups of kept weights, or one per tensor)."""
        if self.encoding == "values":
            return 0
        if self.group_size is None:
            return 1
        kept_per_row = self.kept_weights(out_features, in_features) // out_features
        return out_features * math.ceil(kept_per_row / self.group_size)

    def packed_nbytes(self, out_features: int, in_features: int) -> int:
        """Exact bytes of the packed layout: values + indices + scales (+ zero points)."""
        kept = self.kept_weights(out_features, in_features)
        scales = self.scale_count(out_features, in_features)
        value_bytes = _bytes(kept * self.value_bits)
        index_bytes = _bytes(self.index_bits(out_features, in_features))
        scale_bytes = _bytes(scales * self.scale_bits)
        zero_bytes = 0 if self.symmetric else _bytes(scales * self.value_bits)
        return value_bytes + index_bytes + scale_bytes + zero_bytes


def _bytes(bits: int) -> int:
    return (bits + 7) // 8


def parse_format(spec: str, group_size: int | None = 128) -> WeightFormat:
    """Build a format from a short spec: 'fp16', 'int8', 'int4', 'ternary', optionally
    followed by an N:M pattern, e.g. 'int4-2:4', 'ternary-2:4', 'int4-1:8'."""
    base, _, pattern = spec.partition("-")
    n = m = None
    if pattern:
        try:
            n_text, m_text = pattern.split(":")
            n, m = int(n_text), int(m_text)
        except ValueError:
            raise ValueError(f"bad N:M pattern {pattern!r} in format {spec!r}; use e.g. 'int4-2:4'") from None
    if base == "fp16":
        return WeightFormat(spec, "values", 16, n, m, None, scale_bits=0)
    if base in ("int8", "int4"):
        return WeightFormat(spec, "int", int(base[3:]), n, m, group_size)
    if base == "ternary":
        # BitNet b1.58: one absmean scale per tensor, values in {-1, 0, +1} as 2 bits.
        return WeightFormat(spec, "ternary", 2, n, m, None)
    raise ValueError(f"unknown weight format {spec!r}; use fp16, int8, int4 or ternary, e.g. 'int4-2:4'")


# The formats of the storage table (docs/compression.md, result.json "storage_bytes_per_weight").
STORAGE_FORMATS = ("fp16", "int4", "int4-2:4", "int4-1:4", "int4-2:8", "ternary", "ternary-2:4")
