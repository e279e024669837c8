"""Symbolic sizes of a layer graph, in new tokens ``t`` and KV length ``kv``.

The graph extractor (``graph.py``) traces a model with ``TRACE_TOKENS`` new tokens
after ``TRACE_PAST`` cached ones, so a traced dimension equal to ``TRACE_TOKENS`` is
``t`` and one equal to ``TRACE_KV`` is ``kv``. Everything that reads a graph at run
time (the cache, the phases) needs only this module, which imports neither torch nor
transformers: a run whose graph comes from the cache never loads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRACE_TOKENS = 7
TRACE_PAST = 10
TRACE_KV = TRACE_TOKENS + TRACE_PAST


@dataclass(frozen=True)
class Sym:
    """A size ``coef * t**t_pow * kv**kv_pow`` in new tokens ``t`` and KV length ``kv``."""

    coef: int
    t_pow: int = 0
    kv_pow: int = 0

    def at(self, tokens: int, kv: int) -> int:
        """Evaluate for a phase with ``tokens`` new tokens and KV length ``kv``."""
        return self.coef * tokens**self.t_pow * kv**self.kv_pow

    def __mul__(self, other: Sym) -> Sym:
        return Sym(self.coef * other.coef, self.t_pow + other.t_pow, self.kv_pow + other.kv_pow)


def sym_dim(size: int) -> Sym:
    """Classify one traced dimension as t, kv or a constant."""
    if size == TRACE_TOKENS:
        return Sym(1, t_pow=1)
    if size == TRACE_KV:
        return Sym(1, kv_pow=1)
    return Sym(size)


def sym_numel(shape: tuple[int, ...]) -> Sym:
    """Symbolic element count of a traced shape."""
    out = Sym(1)
    for size in shape:
        out = out * sym_dim(size)
    return out


def add_sym(a: Sym | tuple, b: Sym) -> tuple:
    """Sum of symbolic sizes, kept as a tuple of terms."""
    terms = a if isinstance(a, tuple) else (a,)
    return terms + (b,)


def eval_size(size: Sym | tuple, tokens: int, kv: int) -> int:
    """Evaluate a symbolic size or a sum of them."""
    terms = size if isinstance(size, tuple) else (size,)
    return sum(term.at(tokens, kv) for term in terms)


def layer_index(module_name: str) -> int | None:
    """Decoder-layer index parsed from a module path like 'model.layers.3.mlp'."""
    match = re.search(r"\.(?:layers|h|blocks)\.(\d+)(?:\.|$)", module_name)
    return int(match.group(1)) if match else None
