"""Group quantization of the kept weights of a (pruned) linear weight.

Works on the kept weights only: for N:M formats, row r's kept weights, in input order,
form a row of K = in * N / M values, and ``group_size`` consecutive kept weights share
one scale (the last group of a row may be shorter). Pruned weights are never seen by
the quantizer, so they cannot stretch a group's range.

Encodings (the codes are what ``tlmsim/workloads/packing.py`` stores, ``value_bits`` each):

* ``int`` symmetric: code q in [-2^(b-1), 2^(b-1)-1] (two's complement), scale =
  max|w| / (2^(b-1)-1), weight = q * scale.
* ``int`` asymmetric: code q in [0, 2^b-1], zero point z in the same range, range
  [min(w, 0), max(w, 0)] (0 is kept representable, so z fits in b bits), weight =
  (q - z) * scale.
* ``ternary`` (BitNet b1.58): one absmean scale per tensor (or per group if the format
  sets ``group_size``), gamma = mean|w| over the kept weights, q = clip(round(w / gamma), -1, 1), weight = q * gamma.
* ``values``: the kept weights rounded to fp16 (no scales).

Scales are rounded to fp16 *before* the codes are computed, so dequantizing in float32
reproduces exactly what the packed bytes decode to. The mask is the truth about which
weights are kept: a kept weight whose code dequantizes to 0 is still kept (and still
costs its value and index bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tlmsim.engine.units import ceil_div
from tlmsim.workloads.formats import WeightFormat


@dataclass(frozen=True)
class QuantizedWeight:
    """A pruned, quantized weight [out, in]: codes on the dense grid plus their scales."""

    fmt: WeightFormat
    codes: torch.Tensor  # [out, in]; int32 codes at kept positions (fp16 for "values"), 0 where pruned
    mask: torch.Tensor  # [out, in] bool; True = kept (stored) weight
    scales: torch.Tensor  # float16 [scale_count], row-major (per row groups), or [1] per tensor
    zeros: torch.Tensor | None  # int32 [scale_count] zero points, asymmetric INT only

    @property
    def shape(self) -> tuple[int, int]:
        """(out_features, in_features)."""
        return tuple(self.mask.shape)

    def kept_codes(self) -> torch.Tensor:
        """Codes of the kept weights, [out, K] in input order."""
        return self.codes[self.mask].reshape(self.shape[0], -1)

    def dequantize(self) -> torch.Tensor:
        """Dense float32 weight: dequantized kept weights, exact zeros where pruned."""
        kept = self.kept_codes().float()
        if self.fmt.encoding != "values":
            size = self.fmt.group_size
            offset = 0.0 if self.zeros is None else expand_groups(self.zeros.float(), size, kept.shape)
            kept = (kept - offset) * expand_groups(self.scales.float(), size, kept.shape)
        return scatter_kept(kept, self.mask)


def kept_weights(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The kept weights of each row, [out, K] in input order (every row keeps K)."""
    if mask.shape[1] == int(mask[0].sum()) and bool(mask.all()):
        return weight  # dense: skip boolean indexing, the slow part on 7B-sized layers
    return weight[mask].reshape(weight.shape[0], -1)


def scatter_kept(kept: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place per-row kept values [out, K] back on the dense [out, in] grid (0 elsewhere)."""
    if kept.shape == mask.shape:
        return kept.clone()  # dense: every weight is kept
    dense = torch.zeros(mask.shape, dtype=kept.dtype)
    dense[mask] = kept.reshape(-1)
    return dense


def group_view(kept: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """Kept weights [out, K] as [groups, group_size] rows, zero-padded at each row's end."""
    if group_size is None:
        return kept.reshape(1, -1)
    rows, k = kept.shape
    per_row = ceil_div(k, group_size)
    padded = torch.nn.functional.pad(kept, (0, per_row * group_size - k))
    return padded.reshape(rows * per_row, group_size)


def group_counts(group_size: int | None, rows: int, k: int) -> torch.Tensor:
    """Number of real (unpadded) kept weights in each group, row-major."""
    if group_size is None:
        return torch.tensor([rows * k])
    per_row = ceil_div(k, group_size)
    counts = torch.full((per_row,), group_size)
    counts[-1] = k - (per_row - 1) * group_size  # a row's last group may be short
    return counts.repeat(rows)


def expand_groups(per_group: torch.Tensor, group_size: int | None, kept_shape: tuple[int, int]) -> torch.Tensor:
    """Per-group values [count] broadcast to every kept weight [out, K]."""
    if group_size is None:
        return per_group.reshape(1, 1)
    rows, k = kept_shape
    return per_group.reshape(rows, -1).repeat_interleave(group_size, dim=1)[:, :k]


def quantize(weight: torch.Tensor, fmt: WeightFormat, mask: torch.Tensor | None = None) -> QuantizedWeight:
    """Quantize the kept weights of `weight` [out, in] (all of them if mask is None)."""
    mask = _checked_mask(weight, fmt, mask)
    kept = kept_weights(weight.float(), mask)
    if fmt.encoding == "values":
        return QuantizedWeight(fmt, scatter_kept(kept.half(), mask), mask, torch.zeros(0, dtype=torch.float16), None)
    if fmt.encoding == "ternary":
        codes, scales, zeros = _ternary(kept, fmt)
    elif fmt.symmetric:
        codes, scales, zeros = _symmetric(kept, fmt)
    else:
        codes, scales, zeros = _asymmetric(kept, fmt)
    return QuantizedWeight(fmt, scatter_kept(codes, mask), mask, scales, zeros)


def _checked_mask(weight: torch.Tensor, fmt: WeightFormat, mask: torch.Tensor | None) -> torch.Tensor:
    """Validate (or build, for dense formats) the keep-mask: exactly N per group of M."""
    if weight.dim() != 2:
        raise ValueError(f"quantize needs a 2-D weight [out, in], got shape {tuple(weight.shape)}")
    if mask is None:
        if fmt.sparse:
            raise ValueError(f"format {fmt.name!r} is N:M sparse: pass the pruning mask (see pruning.prune_mask)")
        return torch.ones(weight.shape, dtype=torch.bool)
    if mask.shape != weight.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from weight shape {tuple(weight.shape)}")
    expected = fmt.n if fmt.sparse else 1
    per_group = mask.reshape(weight.shape[0], -1, fmt.m if fmt.sparse else 1).sum(-1)
    if not bool((per_group == expected).all()):
        raise ValueError(f"mask does not keep exactly {expected} per group for format {fmt.name!r}")
    return mask.bool()


def _fp16_scale(scale: torch.Tensor) -> torch.Tensor:
    """Round scales to the fp16 that is stored; clamp to fp16's range instead of inf."""
    return scale.clamp(max=torch.finfo(torch.float16).max).half()


def _divide(kept: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """kept / scale, with an all-zero group (scale 0) giving 0 rather than NaN."""
    return kept / torch.where(scale == 0, torch.ones_like(scale), scale)


def _symmetric(kept: torch.Tensor, fmt: WeightFormat):
    """Signed codes, fp16 scales = max|w| / qmax per group, no zero points."""
    qmax = 2 ** (fmt.value_bits - 1) - 1
    scales = _fp16_scale(group_view(kept.abs(), fmt.group_size).amax(dim=1) / qmax)
    # clamp: the fp16-rounded scale can be a hair below max|w|/qmax.
    step = expand_groups(scales.float(), fmt.group_size, kept.shape)
    codes = _divide(kept, step).round().clamp(-qmax - 1, qmax)
    return codes.int(), scales, None


def _asymmetric(kept: torch.Tensor, fmt: WeightFormat):
    """Unsigned codes with per-group zero points over the range [min(w,0), max(w,0)]."""
    qmax = 2**fmt.value_bits - 1
    groups = group_view(kept, fmt.group_size)  # zero padding cannot widen [min(w,0), max(w,0)]
    low, high = groups.amin(dim=1).clamp(max=0), groups.amax(dim=1).clamp(min=0)
    scales = _fp16_scale((high - low) / qmax)
    zeros = _divide(-low, scales.float()).round().clamp(0, qmax)
    step = expand_groups(scales.float(), fmt.group_size, kept.shape)
    codes = (_divide(kept, step).round() + expand_groups(zeros, fmt.group_size, kept.shape)).clamp(0, qmax)
    return codes.int(), scales, zeros.int()


def _ternary(kept: torch.Tensor, fmt: WeightFormat):
    """BitNet b1.58 absmean: fp16 scale gamma = mean|w| (per tensor unless grouped), codes in {-1, 0, +1}."""
    if not fmt.symmetric:
        raise ValueError(f"ternary format {fmt.name!r} must be symmetric (no zero points)")
    sums = group_view(kept.abs(), fmt.group_size).sum(dim=1)
    scales = _fp16_scale(sums / group_counts(fmt.group_size, *kept.shape))
    codes = _divide(kept, expand_groups(scales.float(), fmt.group_size, kept.shape)).round().clamp(-1, 1)
    return codes.int(), scales, None
