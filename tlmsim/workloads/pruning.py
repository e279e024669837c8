"""N:M structured pruning of linear weights along the input dimension.

A weight W[out, in] is cut into groups of M consecutive inputs per row; in each group
the N weights with the highest score are kept. The boolean mask is the truth about
which weights are stored: a kept weight may later quantize to 0 and is still "kept".

Scores:

* ``magnitude``: |W|;
* ``wanda``: |W| * ||X_j||_2, where X_j is input channel j of calibration activations
  (Sun et al., 2023, "A Simple and Effective Pruning Approach for LLMs").

Written in torch (top-k per group + scatter) rather than taken from a library: torchao's
WeightNormSparsifier does magnitude N:M only and its Wanda sparsifier only M/2:M, and
llmcompressor pins an older transformers; top-k gives exactly N per group by
construction, for any 0 < N < M, without Python loops over weights.
"""

from __future__ import annotations

from typing import Literal

import torch

Criterion = Literal["magnitude", "wanda"]


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask keeping the N highest scores in every group of M inputs per row."""
    _check_nm(scores, n, m)
    out_features, in_features = scores.shape
    groups = scores.reshape(out_features, in_features // m, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(out_features, in_features)


def _check_nm(weight: torch.Tensor, n: int, m: int) -> None:
    if weight.dim() != 2:
        raise ValueError(f"N:M pruning needs a 2-D weight [out, in], got shape {tuple(weight.shape)}")
    if not 0 < n < m:
        raise ValueError(f"N:M sparsity needs 0 < N < M, got {n}:{m}")
    if weight.shape[1] % m:
        raise ValueError(f"in_features={weight.shape[1]} is not a multiple of M={m}")


def activation_norms(inputs: torch.Tensor) -> torch.Tensor:
    """L2 norm of each input channel over all tokens of activations [..., in]."""
    return inputs.reshape(-1, inputs.shape[-1]).float().norm(dim=0)


def wanda_scores(weight: torch.Tensor, act_norm: torch.Tensor) -> torch.Tensor:
    """Wanda importance |W| * ||X||_2, broadcast over output rows."""
    if act_norm.shape != (weight.shape[1],):
        raise ValueError(f"act_norm has shape {tuple(act_norm.shape)}, expected ({weight.shape[1]},)")
    return weight.abs().float() * act_norm.float()[None, :]


def prune_mask(
    weight: torch.Tensor, n: int, m: int, criterion: Criterion = "magnitude", act_norm: torch.Tensor | None = None
) -> torch.Tensor:
    """N:M keep-mask of a weight [out, in] by magnitude or Wanda (needs act_norm)."""
    if criterion == "magnitude":
        return nm_mask(weight.abs().float(), n, m)
    if criterion == "wanda":
        if act_norm is None:
            raise ValueError("criterion='wanda' needs act_norm (per-input-channel L2 norms of calibration activations)")
        return nm_mask(wanda_scores(weight, act_norm), n, m)
    raise ValueError(f"unknown pruning criterion {criterion!r}; use 'magnitude' or 'wanda'")
