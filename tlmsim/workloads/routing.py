"""Mixture-of-experts routing: which experts' weights a step streams, and their matmul shape.

Routing assumption (stated, not measured): every token picks its ``k`` experts out of
``E`` uniformly at random, independently of the other tokens. An expert is then missed
by one token with probability ``1 - k/E``, so the expected number of distinct experts a
step of ``N`` tokens (all sequences of the batch) needs, per layer, is

    d(N) = E * (1 - (1 - k/E) ** N)

(d(1) = k: batch-1 decode streams exactly the top-k experts; d grows towards E as N
grows). Real routers are not uniform (Mixtral's routing is measured in Jiang et al.
2024, "Mixtral of Experts", Sec. 5); uniform routing maximises the expected number of
distinct experts for a given ``N`` and so is the pessimistic case for weight traffic.

A step streams ``d(N)`` experts' weights (the expected bytes), and its ``N * k`` token-
expert pairs are spread evenly over the ``ceil(d)`` experts, whose matrices are stacked
along the outputs: ``ceil(N k / ceil(d))`` rows against ``ceil(d) * out_features`` outputs.
All ``E`` experts are placed in memory (capacity counts every expert).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tlmsim.engine.units import ceil_div


def expected_distinct_experts(experts: int, top_k: int, tokens: int) -> float:
    """Expected number of distinct experts ``tokens`` tokens use under uniform top-k routing."""
    if not 0 < top_k <= experts:
        raise ValueError(f"top-k {top_k} must be in 1..{experts} (the number of experts)")
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


@dataclass(frozen=True)
class RoutedMatmul:
    """The part of an expert bank one step uses: its matmul shape and streamed bytes."""

    rows: int  # token-expert pairs per streamed expert (rounded up)
    n: int  # outputs: the streamed experts' matrices stacked
    operand_bytes: int  # expected bytes of the distinct experts' weights
    experts: float  # expected distinct experts


def routed_matmul(experts: int, top_k: int, out_features: int, bank_bytes: int, tokens: int) -> RoutedMatmul:
    """Shape and bytes of an expert bank of ``experts`` matrices (``bank_bytes`` in all) for ``tokens``."""
    distinct = expected_distinct_experts(experts, top_k, tokens)
    streamed = min(experts, math.ceil(distinct - 1e-9))
    rows = ceil_div(tokens * top_k, streamed)
    return RoutedMatmul(rows, streamed * out_features, round(distinct * bank_bytes / experts), distinct)
