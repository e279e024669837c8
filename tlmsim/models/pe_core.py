"""The N:M sparse PE of rtl/nm_pe.v: parameters, timing and bit-exact arithmetic.

One PE computes one output's dot product over a slice of K inputs (output-stationary).
An input beat carries ``lanes`` N:M groups; per lane: M signed activations, N weight
codes and N indices (position of each kept weight inside its group of M). The RTL is a
3-stage pipeline with one beat accepted per cycle (docs/rtl.md):

  S1  index mux, multiply (INT4) or add/subtract/skip (ternary), adder tree -> beat sum
  S2  psum += beat sum; on ``group_last`` hand psum to S3 and clear it
  S3  acc += psum * scale, wrapping at ``acc_bits``; on ``tile_last`` emit acc, clear it

Because every register wraps modulo 2**acc_bits, the result equals the exact integer
``sum_g scale_g * sum_{k in g} w_k * a_k`` reduced to ``acc_bits`` two's complement.
Dense (n == m) is a simulator-only case: no indices, lane i uses activation i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tlmsim.engine.units import ceil_div

PIPELINE_STAGES = 3  # S1 products+tree, S2 group psum, S3 scaled accumulate + output register


@dataclass(frozen=True)
class PeParams:
    """Design parameters of one PE (the Verilog parameters of rtl/nm_pe.v)."""

    n: int  # kept weights per group of m inputs (n == m: dense, simulator only)
    m: int  # group size, a power of two
    lanes: int  # N:M groups consumed per beat
    ternary: bool = False  # False: INT4 weights and a multiplier; True: 2-bit ternary codes
    act_bits: int = 8  # signed activation width
    acc_bits: int = 32  # accumulator width; results wrap in two's complement
    scale_bits: int = 16  # signed integer group-scale width

    def __post_init__(self) -> None:
        if self.m < 2 or self.m & (self.m - 1):
            raise ValueError(f"PeParams.m must be a power of two >= 2, got {self.m}")
        if not 0 < self.n <= self.m:
            raise ValueError(f"PeParams needs 0 < n <= m, got {self.n}:{self.m}")
        if self.lanes < 1:
            raise ValueError(f"PeParams.lanes must be >= 1, got {self.lanes}")
        _check_bits("act_bits", self.act_bits, 2, 16)
        _check_bits("acc_bits", self.acc_bits, 8, 64)
        _check_bits("scale_bits", self.scale_bits, 2, 32)

    @property
    def dense(self) -> bool:
        """True when every weight is kept (n == m); the RTL only builds n < m."""
        return self.n == self.m

    @property
    def index_bits(self) -> int:
        """Bits per index: ceil(log2(m))."""
        return int(math.log2(self.m))

    @property
    def code_bits(self) -> int:
        """Bits per weight code: 2 for ternary, 4 for INT4."""
        return 2 if self.ternary else 4

    @property
    def inputs_per_beat(self) -> int:
        """Dense inputs (activations) consumed per beat: m * lanes."""
        return self.m * self.lanes


def _check_bits(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"PeParams.{name} must be in [{low}, {high}], got {value}")


def latency_cycles(p: PeParams) -> int:
    """Cycles from accepting the tile_last beat to out_valid (one per pipeline stage)."""
    return PIPELINE_STAGES


def initiation_interval(p: PeParams) -> int:
    """Cycles between accepted beats without back-pressure (fully pipelined)."""
    return 1


def beats_for(p: PeParams, k_inputs: int) -> int:
    """Beats needed for a dot product over k_inputs dense inputs: ceil(k / (m*lanes))."""
    if k_inputs < 1:
        raise ValueError(f"k_inputs must be >= 1, got {k_inputs}")
    return ceil_div(k_inputs, p.inputs_per_beat)


def dot_cycles(p: PeParams, k_inputs: int) -> int:
    """Cycles from the first accepted beat to out_valid for one dot product, no stalls."""
    return (beats_for(p, k_inputs) - 1) * initiation_interval(p) + latency_cycles(p)


def decode_weights(p: PeParams, codes: np.ndarray) -> np.ndarray:
    """Signed weight values of raw codes (INT4 two's complement or 2-bit ternary)."""
    codes = np.asarray(codes, dtype=np.int64)
    if p.ternary:  # 00 -> 0, 01 -> +1, 11 -> -1, 10 (unused) -> 0
        c = codes & 0b11
        return np.where(c == 0b01, 1, np.where(c == 0b11, -1, 0)).astype(np.int64)
    c = codes & 0xF
    return c - ((c & 0x8) << 1)


def encode_weights(p: PeParams, weights: np.ndarray) -> np.ndarray:
    """Raw codes of signed weight values; raises if a value is not representable."""
    w = np.asarray(weights, dtype=np.int64)
    low, high = (-1, 1) if p.ternary else (-8, 7)
    if w.size and (w.min() < low or w.max() > high):
        raise ValueError(f"weights must be in [{low}, {high}] for this PE")
    return w & (0b11 if p.ternary else 0xF)


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Reduce int64 values to `bits`-bit two's complement (what a bits-wide register holds)."""
    shift = np.uint64(64 - bits)
    raised = np.asarray(x, dtype=np.int64).astype(np.uint64) << shift
    return raised.view(np.int64) >> shift.astype(np.int64)


def pe_dot(
    p: PeParams,
    acts: np.ndarray,
    codes: np.ndarray,
    indices: np.ndarray | None,
    scales: np.ndarray,
) -> np.ndarray:
    """RTL-exact results (int64 [T]) of T tiles; shapes are documented in the body."""
    # acts [T, B, lanes, m] signed; codes, indices [T, B, lanes, n]; scales [T, G].
    # The B beats of a tile form G equal quantization groups (group_last every B/G beats);
    # the last beat is tile_last. indices=None means dense (n == m, identity mux).
    acts = np.asarray(acts, dtype=np.int64)
    scales = np.asarray(scales, dtype=np.int64)
    indices = _indices_or_identity(p, indices, acts.shape)
    _check_shapes(p, acts, codes, indices, scales)
    picked = np.take_along_axis(acts, indices, axis=-1)  # [T, B, lanes, n]
    beat_sums = (decode_weights(p, codes) * picked).sum(axis=(2, 3))  # [T, B], exact
    tiles, beats = beat_sums.shape
    groups = scales.shape[1]
    psums = beat_sums.reshape(tiles, groups, beats // groups).sum(axis=2)  # [T, G]
    # int64 products may wrap modulo 2**64; that is harmless modulo 2**acc_bits.
    return wrap((psums * scales).sum(axis=1), p.acc_bits)


def _indices_or_identity(p: PeParams, indices, acts_shape) -> np.ndarray:
    if indices is not None:
        return np.asarray(indices, dtype=np.int64)
    if not p.dense:
        raise ValueError("indices are required for N:M sparse PEs (n < m)")
    return np.broadcast_to(np.arange(p.m, dtype=np.int64), acts_shape)


def _check_shapes(p: PeParams, acts, codes, indices, scales) -> None:
    if acts.ndim != 4 or acts.shape[2:] != (p.lanes, p.m):
        raise ValueError(f"acts must be [T, B, {p.lanes}, {p.m}], got {acts.shape}")
    want = acts.shape[:3] + (p.n,)
    if np.shape(codes) != want or indices.shape != want:
        raise ValueError(f"codes and indices must be {list(want)}, got {np.shape(codes)}, {indices.shape}")
    if scales.ndim != 2 or scales.shape[0] != acts.shape[0] or acts.shape[1] % scales.shape[1]:
        raise ValueError(f"scales must be [T, G] with G dividing B={acts.shape[1]}, got {scales.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= p.m):
        raise ValueError(f"indices must be in [0, {p.m})")
