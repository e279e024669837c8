"""N:M pruning: exact N per group, the right weights kept, Wanda vs magnitude."""

import numpy as np
import pytest
import torch

from tlmsim.workloads.pruning import activation_norms, nm_mask, prune_mask, wanda_scores

PATTERNS = [(1, 4), (2, 4), (3, 4), (1, 8), (2, 8), (4, 8), (8, 16), (1, 2)]


@pytest.mark.parametrize("n,m", PATTERNS)
def test_mask_keeps_exactly_n_per_group_of_m(n, m):
    weight = torch.randn(24, 4 * m, generator=torch.Generator().manual_seed(n * 100 + m))
    mask = prune_mask(weight, n, m).numpy()
    assert mask.reshape(24, -1, m).sum(-1).tolist() == [[n] * 4] * 24


@pytest.mark.parametrize("n,m", PATTERNS)
def test_magnitude_keeps_the_largest_weights_of_each_group(n, m):
    weight = torch.randn(16, 3 * m, generator=torch.Generator().manual_seed(m))
    mask = prune_mask(weight, n, m).numpy().reshape(-1, m)
    groups = weight.abs().numpy().reshape(-1, m)
    smallest_kept = np.where(mask, groups, np.inf).min(axis=1)
    largest_pruned = np.where(mask, -np.inf, groups).max(axis=1)
    assert (smallest_kept >= largest_pruned).all()


def test_wanda_and_magnitude_choose_differently_when_activation_norms_differ():
    weight = torch.tensor([[1.0, 0.5, 0.4, 0.3]])
    act_norm = torch.tensor([0.01, 1.0, 1.0, 1.0])  # channel 0 is nearly silent
    # |W|: 1.0 0.5 0.4 0.3 -> keep {0, 1};  |W|*||X||: 0.01 0.5 0.4 0.3 -> keep {1, 2}
    assert prune_mask(weight, 2, 4).tolist() == [[True, True, False, False]]
    assert prune_mask(weight, 2, 4, "wanda", act_norm).tolist() == [[False, True, True, False]]


def test_wanda_with_equal_norms_is_magnitude():
    weight = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    same = torch.full((32,), 3.0)
    assert torch.equal(prune_mask(weight, 2, 4, "wanda", same), prune_mask(weight, 2, 4))


def test_activation_norms_are_l2_over_all_tokens():
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(2))
    expected = np.sqrt((x.numpy().reshape(-1, 6) ** 2).sum(axis=0))
    np.testing.assert_allclose(activation_norms(x).numpy(), expected, rtol=1e-6)


def test_wanda_scores_scale_columns():
    weight = torch.tensor([[-2.0, 3.0], [1.0, -1.0]])
    assert wanda_scores(weight, torch.tensor([0.5, 2.0])).tolist() == [[1.0, 6.0], [0.5, 2.0]]


@pytest.mark.parametrize(
    "shape,n,m,match",
    [((4, 10), 2, 4, "multiple of M=4"), ((4, 8), 4, 4, "0 < N < M"), ((8,), 1, 2, "2-D")],
)
def test_bad_pruning_inputs_are_rejected(shape, n, m, match):
    with pytest.raises(ValueError, match=match):
        nm_mask(torch.ones(shape), n, m)


def test_wanda_without_norms_is_rejected():
    with pytest.raises(ValueError, match="needs act_norm"):
        prune_mask(torch.ones(2, 4), 2, 4, "wanda")
