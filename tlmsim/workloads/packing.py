"""Bit-exact packing of quantized weights into the layout of ``formats.WeightFormat``.

Three independent byte arrays, each one contiguous row-major bit stream padded with
zero bits only at its end (so ``PackedWeight.nbytes == fmt.packed_nbytes(out, in)``):

* ``values``: one ``value_bits`` code per kept weight, rows in order, kept weights in
  input order. INT symmetric and ternary codes are two's complement (ternary: +1 = 01,
  0 = 00, -1 = 11); INT asymmetric codes are unsigned; fp16 values are IEEE bit patterns.
* ``indices``: N:M metadata. ``per_weight``: each kept weight's position 0..M-1 inside
  its group, ``max(1, ceil(log2 M))`` bits. ``combinatorial``: one number per group,
  the colex rank sum_i C(p_i, i + 1) of its sorted kept positions p_0 < ... < p_{N-1},
  ``max(1, ceil(log2 C(M, N)))`` bits.
* ``scales``: fp16 bit patterns (16 bits each), then ``zeros``: unsigned ``value_bits``
  zero points (asymmetric INT only), both row-major over (row, group of kept weights).

Bit order is little-endian throughout: element k of a stream of w-bit elements holds
stream bits [k*w, (k+1)*w), least significant bit first, and stream bit b is bit b % 8
of byte b // 8. So two INT4 codes share a byte, the first in the low nibble.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from tlmsim.engine.units import ceil_div
from tlmsim.workloads.formats import STORAGE_FORMATS, WeightFormat, parse_format
from tlmsim.workloads.quantization import QuantizedWeight

SCALE_BITS = 16  # scales are stored as fp16


@dataclass(frozen=True)
class PackedWeight:
    """The packed byte streams of one weight matrix (uint8 arrays, possibly empty)."""

    values: np.ndarray
    indices: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray

    @property
    def nbytes(self) -> int:
        """Total packed bytes: values + indices + scales + zero points."""
        return sum(int(a.size) for a in (self.values, self.indices, self.scales, self.zeros))


# ---- bit streams -------------------------------------------------------------------


def pack_bits(codes: np.ndarray, width: int) -> np.ndarray:
    """Pack unsigned integer codes (each < 2**width) into a little-endian bit stream."""
    codes = np.asarray(codes).reshape(-1)
    if width in (1, 2, 4, 8):
        return _pack_sub_byte(codes.astype(np.uint8), width)
    if width in (16, 32, 64):
        return codes.astype(f"<u{width // 8}").view(np.uint8)
    codes = codes.astype(np.uint64)
    bits = (codes[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little")


def _pack_sub_byte(codes: np.ndarray, width: int) -> np.ndarray:
    """Fast path: 8 // width codes per byte, first code in the low bits."""
    per_byte = 8 // width
    padded = np.zeros(ceil_div(codes.size, per_byte) * per_byte, dtype=np.uint8)
    padded[: codes.size] = codes
    lanes = padded.reshape(-1, per_byte)
    out = lanes[:, 0].copy()
    for lane in range(1, per_byte):  # loops over bit lanes, not over weights
        out |= lanes[:, lane] << np.uint8(lane * width)
    return out


def unpack_bits(data: np.ndarray, width: int, count: int) -> np.ndarray:
    """Read `count` unsigned `width`-bit codes from a little-endian bit stream (uint8 for
    widths up to 8, uint16/32/64 for those widths, else uint64)."""
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size != _nbytes(count * width):
        raise ValueError(f"bit stream has {data.size} bytes, expected {_nbytes(count * width)} "
                         f"for {count} x {width} bits")
    if width in (1, 2, 4, 8):
        lanes = [(data >> np.uint8(k * width)) & np.uint8(2**width - 1) for k in range(8 // width)]
        return np.stack(lanes, axis=1).reshape(-1)[:count]
    if width in (16, 32, 64):
        return data.view(f"<u{width // 8}")
    bits = np.unpackbits(data, bitorder="little")[: count * width].reshape(count, width)
    return bits.astype(np.uint64) @ (np.uint64(1) << np.arange(width, dtype=np.uint64))


def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


def _to_signed(codes: np.ndarray, width: int) -> np.ndarray:
    """Two's complement `width`-bit codes to signed integers (int8 for widths up to 8)."""
    if width <= 8:
        shift = np.int8(8 - width)  # move the sign bit to bit 7, then shift back arithmetically
        return (codes.astype(np.int8) << shift) >> shift
    codes = codes.astype(np.int64)
    return np.where(codes >= 2 ** (width - 1), codes - 2**width, codes)


# ---- N:M indices ---------------------------------------------------------------------


def index_width(fmt: WeightFormat) -> int:
    """Bits per index element: per kept weight, or per group (combinatorial)."""
    if fmt.index_encoding == "combinatorial":
        return max(1, math.ceil(math.log2(math.comb(fmt.m, fmt.n))))
    return max(1, math.ceil(math.log2(fmt.m)))


def _colex_table(m: int, n: int) -> np.ndarray:
    """table[p, i] = C(p, i + 1): the colex rank contribution of position p as i-th kept."""
    if m > 62:
        raise ValueError(f"combinatorial index encoding supports M <= 62, got M={m}")
    return np.array([[math.comb(p, i + 1) for i in range(n)] for p in range(m)], dtype=np.int64)


def encode_indices(mask: np.ndarray, fmt: WeightFormat) -> np.ndarray:
    """Index codes of an N:M mask [out, in]: positions per kept weight, or colex ranks per group."""
    return _encode_flat(np.flatnonzero(mask), fmt)


def _encode_flat(flat: np.ndarray, fmt: WeightFormat) -> np.ndarray:
    """Index codes from the ascending flat positions of the kept weights."""
    # Groups start at multiples of M in the flat order, so flat % M is the in-group position;
    # & (M - 1) is the same for power-of-two M and several times faster than int64 %.
    power_of_two = fmt.m & (fmt.m - 1) == 0
    positions = flat & (fmt.m - 1) if power_of_two else flat % fmt.m
    if fmt.index_encoding == "per_weight":
        return positions
    table = _colex_table(fmt.m, fmt.n)
    return table[positions.reshape(-1, fmt.n), np.arange(fmt.n)].sum(axis=1)


def decode_indices(codes: np.ndarray, fmt: WeightFormat, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask [out, in] from index codes (inverse of encode_indices)."""
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[_decode_flat(codes, fmt)] = True
    return mask.reshape(shape)


def _decode_flat(codes: np.ndarray, fmt: WeightFormat) -> np.ndarray:
    """Ascending flat positions of the kept weights from index codes."""
    if fmt.index_encoding == "per_weight":
        positions = codes.astype(np.int64).reshape(-1, fmt.n)
    else:
        positions = _unrank(codes.astype(np.int64), fmt.m, fmt.n)
    if positions.size and (positions.max() >= fmt.m or (np.diff(positions, axis=1) <= 0).any()):
        raise ValueError(f"index stream is not N:M={fmt.n}:{fmt.m} positions in ascending order: corrupt indices")
    return (np.arange(positions.shape[0])[:, None] * fmt.m + positions).reshape(-1)


def _unrank(ranks: np.ndarray, m: int, n: int) -> np.ndarray:
    """Colex unranking, vectorized over groups: the largest p with C(p, i+1) <= rank, i = n-1..0."""
    table = _colex_table(m, n)
    positions = np.empty((ranks.size, n), dtype=np.int64)
    for i in range(n - 1, -1, -1):  # loops over the N kept slots, not over weights
        positions[:, i] = np.searchsorted(table[:, i], ranks, side="right") - 1
        ranks = ranks - table[positions[:, i], i]
    return positions


# ---- pack / unpack --------------------------------------------------------------------


def pack(
    q_values: np.ndarray,
    mask: np.ndarray | None,
    scales: np.ndarray,
    fmt: WeightFormat,
    zeros: np.ndarray | None = None,
) -> PackedWeight:
    """Pack dense codes [out, in] (kept positions per `mask`), fp16 scales and zero points."""
    q_values = np.asarray(q_values)
    mask = np.ones(q_values.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    _check_pack_inputs(q_values, mask, scales, fmt, zeros)
    flat = np.flatnonzero(mask) if fmt.sparse else None
    kept = q_values.reshape(-1) if flat is None else np.take(q_values.reshape(-1), flat)
    values = pack_bits(_value_codes(kept, fmt), fmt.value_bits)
    indices = _empty() if flat is None else pack_bits(_encode_flat(flat, fmt), index_width(fmt))
    scale_bytes = pack_bits(np.asarray(scales, dtype=np.float16).view(np.uint16), SCALE_BITS)
    zero_bytes = _empty() if zeros is None else pack_bits(np.asarray(zeros), fmt.value_bits)
    return PackedWeight(values, indices, scale_bytes if fmt.encoding != "values" else _empty(), zero_bytes)


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.uint8)


def _value_codes(kept: np.ndarray, fmt: WeightFormat) -> np.ndarray:
    """Codes as unsigned bit patterns of value_bits bits (two's complement if signed)."""
    if fmt.encoding == "values":
        return np.asarray(kept, dtype=np.float16).view(np.uint16)
    low, high = _code_range(fmt)
    if kept.size and (kept.min() < low or kept.max() > high):
        raise ValueError(f"codes outside [{low}, {high}] for format {fmt.name!r}")
    return kept & (2**fmt.value_bits - 1)  # two's complement bit pattern of negative codes


def _code_range(fmt: WeightFormat) -> tuple[int, int]:
    if fmt.encoding == "ternary":
        return -1, 1
    if fmt.symmetric:
        return -(2 ** (fmt.value_bits - 1)), 2 ** (fmt.value_bits - 1) - 1
    return 0, 2**fmt.value_bits - 1


def _check_pack_inputs(q_values, mask, scales, fmt: WeightFormat, zeros) -> None:
    """Reject inputs that would not give exactly fmt.packed_nbytes bytes."""
    if q_values.ndim != 2 or mask.shape != q_values.shape:
        raise ValueError(f"pack needs codes and mask of one 2-D shape, got {q_values.shape} and {mask.shape}")
    out_features, in_features = q_values.shape
    if int(mask.sum()) != fmt.kept_weights(out_features, in_features):
        raise ValueError(f"mask keeps {int(mask.sum())} weights, format {fmt.name!r} stores "
                         f"{fmt.kept_weights(out_features, in_features)}")
    if fmt.encoding != "values" and fmt.scale_bits != SCALE_BITS:
        raise ValueError(f"only fp16 scales are packed (scale_bits=16), format {fmt.name!r} has {fmt.scale_bits}")
    expected = fmt.scale_count(out_features, in_features)
    if fmt.encoding != "values" and np.asarray(scales).size != expected:
        raise ValueError(f"got {np.asarray(scales).size} scales, format {fmt.name!r} needs {expected}")
    if (zeros is None) != (fmt.symmetric or fmt.encoding == "values"):
        raise ValueError(f"zero points must be given exactly for asymmetric formats ({fmt.name!r})")


def pack_quantized(qw: QuantizedWeight) -> PackedWeight:
    """Pack a QuantizedWeight from quantization.quantize."""
    zeros = None if qw.zeros is None else qw.zeros.numpy()
    return pack(qw.codes.numpy(), qw.mask.numpy(), qw.scales.numpy(), qw.fmt, zeros)


def unpack(packed: PackedWeight, fmt: WeightFormat, shape: tuple[int, int], dequantize: bool = True) -> np.ndarray:
    """Dense [out, in] matrix from packed bytes: float32 dequantized weights, or with
    dequantize=False the integers (q - zero point) (fp16 values for fp16 formats)."""
    out_features, in_features = shape
    kept_count = fmt.kept_weights(out_features, in_features)
    kept = _kept_values(unpack_bits(packed.values, fmt.value_bits, kept_count), fmt)
    if fmt.encoding != "values":
        kept = _apply_groups(kept.reshape(out_features, -1), packed, fmt, shape, dequantize)
    if not fmt.sparse:
        return kept.reshape(shape)
    dense = np.zeros(out_features * in_features, dtype=kept.dtype)
    dense[_unpack_flat(packed, fmt, shape)] = kept.reshape(-1)
    return dense.reshape(shape)


def _kept_values(codes: np.ndarray, fmt: WeightFormat) -> np.ndarray:
    if fmt.encoding == "values":
        return codes.astype(np.uint16).view(np.float16)
    if fmt.symmetric:
        return _to_signed(codes, fmt.value_bits)
    return codes.astype(np.int32)


def unpack_mask(packed: PackedWeight, fmt: WeightFormat, shape: tuple[int, int]) -> np.ndarray:
    """The keep-mask [out, in] stored in the packed indices (all True for dense formats)."""
    if not fmt.sparse:
        return np.ones(shape, dtype=bool)
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[_unpack_flat(packed, fmt, shape)] = True
    return mask.reshape(shape)


def _unpack_flat(packed: PackedWeight, fmt: WeightFormat, shape: tuple[int, int]) -> np.ndarray:
    groups = shape[0] * (shape[1] // fmt.m)
    count = groups if fmt.index_encoding == "combinatorial" else groups * fmt.n
    return _decode_flat(unpack_bits(packed.indices, index_width(fmt), count), fmt)


def _apply_groups(kept: np.ndarray, packed: PackedWeight, fmt: WeightFormat, shape, dequantize: bool) -> np.ndarray:
    """Subtract zero points and (if dequantize) multiply by scales, per group of kept weights."""
    count = fmt.scale_count(*shape)
    if fmt.encoding == "int" and not fmt.symmetric:
        zeros = unpack_bits(packed.zeros, fmt.value_bits, count).astype(np.int32)
        kept = kept - _expand_groups(zeros, fmt.group_size, kept.shape)
    if not dequantize:
        return kept
    scales = unpack_bits(packed.scales, SCALE_BITS, count).astype(np.uint16).view(np.float16)
    return kept.astype(np.float32) * _expand_groups(scales.astype(np.float32), fmt.group_size, kept.shape)


def _expand_groups(per_group: np.ndarray, group_size: int | None, kept_shape: tuple[int, int]) -> np.ndarray:
    """Per-group values [count] broadcast to every kept weight [out, K]."""
    if group_size is None:
        return per_group.reshape(1, 1)
    rows, k = kept_shape
    return np.repeat(per_group.reshape(rows, -1), group_size, axis=1)[:, :k]


# ---- storage table ----------------------------------------------------------------------

LLAMA7B_SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008))  # q/k/v/o, gate/up, down  [out, in]


def storage_formats(specs=STORAGE_FORMATS, group_size: int = 128) -> list[WeightFormat]:
    """The table's formats: each spec, plus a combinatorial-index variant of each N:M one."""
    formats = []
    for spec in specs:
        fmt = parse_format(spec, group_size)
        formats.append(fmt)
        if fmt.sparse:
            formats.append(dataclasses.replace(fmt, name=f"{spec} (comb. idx)", index_encoding="combinatorial"))
    return formats


def storage_table(formats: list[WeightFormat] | None = None, shapes=LLAMA7B_SHAPES, seed: int = 0) -> str:
    """Markdown table of bytes per weight (values + indices + scales + zero points) measured
    on real packed arrays of random weights, one layer per shape."""
    generator = torch.Generator().manual_seed(seed)
    weights = {shape: torch.randn(shape, generator=generator) for shape in shapes}
    header = "| format | " + " | ".join(f"{o}x{i} B/weight" for o, i in shapes) + " | bits/weight | vs fp16 |"
    lines = [header, "|---" * (len(shapes) + 3) + "|"]
    for fmt in formats or storage_formats():
        spec = fmt.name
        per_shape = [_measured_bytes(weights[s], fmt) / (s[0] * s[1]) for s in shapes]
        mean = sum(b * s[0] * s[1] for b, s in zip(per_shape, shapes)) / sum(s[0] * s[1] for s in shapes)
        cells = " | ".join(f"{b:.4f}" for b in per_shape)
        lines.append(f"| {spec} | {cells} | {8 * mean:.3f} | {mean / 2:.3f} |")
    return "\n".join(lines)


def _measured_bytes(weight, fmt: WeightFormat) -> int:
    """Real packed size of one compressed weight, checked against the format's formula."""
    from tlmsim.workloads.compressed_model import compress_weight  # here: it imports this module

    packed = pack_quantized(compress_weight(weight, fmt))
    if packed.nbytes != fmt.packed_nbytes(*weight.shape):
        raise AssertionError(f"{fmt.name}: packed {packed.nbytes} B, formula says {fmt.packed_nbytes(*weight.shape)} B")
    return packed.nbytes


if __name__ == "__main__":
    print(storage_table())
