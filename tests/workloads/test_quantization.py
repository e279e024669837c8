"""Group quantization of kept weights: scales, code ranges, error bounds, the mask as truth."""

import dataclasses

import numpy as np
import pytest
import torch

from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.pruning import prune_mask
from tlmsim.workloads.quantization import quantize


def _weight(out=16, inp=256, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed))


def _kept_np(weight, mask):
    return weight.numpy()[mask.numpy()].reshape(weight.shape[0], -1)


@pytest.mark.parametrize("spec,group",
                         [("int4", 64), ("int4-2:4", 64), ("int4-2:4", 128), ("int4-1:8", 64), ("int8-3:4", 128)])
def test_symmetric_scales_are_fp16_of_group_absmax_over_kept_weights(spec, group):
    fmt = parse_format(spec, group)
    weight = _weight()
    mask = prune_mask(weight, fmt.n, fmt.m) if fmt.sparse else torch.ones(weight.shape, dtype=torch.bool)
    qw = quantize(weight, fmt, mask if fmt.sparse else None)
    kept = _kept_np(weight, mask)
    pad = -kept.shape[1] % group
    groups = np.pad(np.abs(kept), ((0, 0), (0, pad))).reshape(-1, group)
    expected = (groups.max(axis=1) / (2 ** (fmt.value_bits - 1) - 1)).astype(np.float16)
    np.testing.assert_array_equal(qw.scales.numpy(), expected)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("spec", ["int4", "int4-2:4", "int4-2:8", "int8-1:4"])
def test_int_error_is_at_most_half_a_step_or_one_step_asymmetric(spec, symmetric):
    fmt = dataclasses.replace(parse_format(spec, 64), symmetric=symmetric)
    weight = _weight(seed=3)
    mask = prune_mask(weight, fmt.n, fmt.m) if fmt.sparse else None
    qw = quantize(weight, fmt, mask)
    step = qw.scales.float().repeat_interleave(64)[: qw.kept_codes().numel()].reshape(16, -1)
    error = (qw.dequantize() - weight)[qw.mask].reshape(16, -1).abs()
    # asymmetric: round(w/s) + round(-low/s) can overshoot qmax by one and be clamped
    bound = step / 2 if symmetric else step
    assert (error <= bound * (1 + 1e-3) + 1e-7).all()


@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_codes_stay_in_range(symmetric):
    fmt = dataclasses.replace(parse_format("int4-2:4", 64), symmetric=symmetric)
    weight = _weight(seed=4) * 10
    qw = quantize(weight, fmt, prune_mask(weight, 2, 4))
    low, high = (-8, 7) if symmetric else (0, 15)
    assert low <= int(qw.kept_codes().min()) and int(qw.kept_codes().max()) <= high
    if not symmetric:
        assert int(qw.zeros.min()) >= 0 and int(qw.zeros.max()) <= 15


def test_asymmetric_one_sided_group_keeps_zero_representable():
    weight = torch.linspace(1.0, 2.0, 64).reshape(1, 64)  # all positive
    qw = quantize(weight, dataclasses.replace(parse_format("int4", 64), symmetric=False))
    assert qw.zeros.tolist() == [0]
    assert float(qw.scales[0]) == pytest.approx(2.0 / 15, rel=1e-3)


@pytest.mark.parametrize("spec", ["ternary", "ternary-2:4", "ternary-1:4"])
def test_ternary_is_absmean_over_kept_weights_with_codes_in_minus_one_to_one(spec):
    fmt = parse_format(spec)
    weight = _weight(seed=5)
    mask = prune_mask(weight, fmt.n, fmt.m) if fmt.sparse else torch.ones(weight.shape, dtype=torch.bool)
    qw = quantize(weight, fmt, mask if fmt.sparse else None)
    gamma = np.float16(np.abs(_kept_np(weight, mask)).mean())
    assert qw.scales.numpy().tolist() == [gamma]
    assert set(qw.kept_codes().unique().tolist()) <= {-1, 0, 1}
    expected = np.clip(np.round(_kept_np(weight, mask) / np.float32(gamma)), -1, 1)
    np.testing.assert_array_equal(qw.kept_codes().numpy(), expected)


def test_mask_is_the_truth_a_kept_weight_may_dequantize_to_zero():
    weight = torch.tensor([[100.0, 0.01, 0.0, 0.0] * 16])  # 0.01 rounds to code 0 next to 100
    fmt = parse_format("int4-2:4", 64)
    mask = prune_mask(weight, 2, 4)
    qw = quantize(weight, fmt, mask)
    assert mask[0, 1] and qw.dequantize()[0, 1] == 0
    assert torch.equal(qw.mask, mask)
    assert int((qw.dequantize() != 0).sum()) < int(mask.sum())


@pytest.mark.parametrize("spec", ["int4-2:4", "ternary-2:4", "fp16-2:4", "int4-1:8"])
def test_dequantized_nonzeros_lie_inside_the_mask(spec):
    fmt = parse_format(spec, 128)
    weight = _weight(seed=6)
    mask = prune_mask(weight, fmt.n, fmt.m)
    dense = quantize(weight, fmt, mask).dequantize()
    assert not bool(((dense != 0) & ~mask).any())
    assert ((dense != 0).reshape(16, -1, fmt.m).sum(-1) <= fmt.n).all()


def test_mask_with_wrong_n_is_rejected():
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[:, :3] = True
    with pytest.raises(ValueError, match="exactly 2 per group"):
        quantize(torch.ones(4, 8), parse_format("int4-2:4"), mask)


def test_sparse_format_without_mask_is_rejected():
    with pytest.raises(ValueError, match="pass the pruning mask"):
        quantize(torch.ones(4, 8), parse_format("int4-2:4"))
