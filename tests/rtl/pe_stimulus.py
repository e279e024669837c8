"""Seeded random N:M tiles for the PE cross-check, their bus packing, and a dense golden.

Nothing here uses tlmsim/models/pe_core.py's arithmetic: weights are generated as signed
values and encoded to codes by this module's own tables, and the golden unpacks them
into a dense matrix and takes plain dot products in Python integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlmsim.models.pe_core import PeParams

TERNARY_CODE = {0: 0b00, 1: 0b01, -1: 0b11}
TERNARY_UNUSED_CODE = 0b10  # decodes to 0; the stimulus uses it for some zero weights
EXTREME_FRACTION = 0.125  # tiles built only from range limits, to provoke wrap-around


@dataclass(frozen=True)
class Tiles:
    """T tiles of one shape, as signed values and as the raw fields the RTL reads."""

    acts: np.ndarray  # [T, B, lanes, m] signed activations, zero past k_inputs
    weights: np.ndarray  # [T, B, lanes, n] signed kept-weight values
    codes: np.ndarray  # [T, B, lanes, n] raw weight codes
    indices: np.ndarray  # [T, B, lanes, n] distinct ascending positions in [0, m)
    scales: np.ndarray  # [T, G] signed group scales
    k_inputs: np.ndarray  # [T] dense inputs per tile; the rest of the last beat is padding

    @property
    def group_beats(self) -> int:
        """Beats per quantization group."""
        return self.acts.shape[1] // self.scales.shape[1]


def random_tiles(p: PeParams, rng: np.random.Generator, tiles: int, groups: int, group_beats: int) -> Tiles:
    """Random tiles of `groups` groups of `group_beats` beats; some use only extreme values."""
    beats = groups * group_beats
    shape = (tiles, beats, p.lanes)
    extreme = rng.random(tiles) < EXTREME_FRACTION
    acts = _signed(rng, shape + (p.m,), p.act_bits, extreme)
    weights = _weights(p, rng, shape + (p.n,), extreme)
    scales = _signed(rng, (tiles, groups), p.scale_bits, extreme)
    indices = np.sort(np.argsort(rng.random(shape + (p.m,)), axis=-1)[..., : p.n], axis=-1)
    per_beat = p.m * p.lanes
    k_inputs = rng.integers((beats - 1) * per_beat + 1, beats * per_beat + 1, size=tiles)
    flat_pos = np.arange(beats * per_beat).reshape(beats, p.lanes, p.m)
    acts = np.where(flat_pos[None] < k_inputs[:, None, None, None], acts, 0)
    return Tiles(acts, weights, _encode(p, rng, weights), indices, scales, k_inputs)


def another_row(p: PeParams, rng: np.random.Generator, t: Tiles) -> Tiles:
    """The same tiles (weights, indices, scales, K) for a second token row: new activations."""
    extreme = rng.random(t.acts.shape[0]) < EXTREME_FRACTION
    acts = _signed(rng, t.acts.shape, p.act_bits, extreme)
    beats = t.acts.shape[1]
    flat_pos = np.arange(beats * p.m * p.lanes).reshape(beats, p.lanes, p.m)
    acts = np.where(flat_pos[None] < t.k_inputs[:, None, None, None], acts, 0)
    return Tiles(acts, t.weights, t.codes, t.indices, t.scales, t.k_inputs)


def _signed(rng, shape, bits: int, extreme: np.ndarray) -> np.ndarray:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    uniform = rng.integers(low, high + 1, size=shape)
    limits = np.where(rng.random(shape) < 0.5, low, high)
    return np.where(_per_tile(extreme, len(shape)), limits, uniform)


def _weights(p: PeParams, rng, shape, extreme: np.ndarray) -> np.ndarray:
    low, high = (-1, 1) if p.ternary else (-8, 7)
    uniform = rng.integers(low, high + 1, size=shape)
    limits = np.where(rng.random(shape) < 0.5, low, high)
    return np.where(_per_tile(extreme, len(shape)), limits, uniform)


def _per_tile(flags: np.ndarray, ndim: int) -> np.ndarray:
    return flags.reshape((-1,) + (1,) * (ndim - 1))


def _encode(p: PeParams, rng, weights: np.ndarray) -> np.ndarray:
    if not p.ternary:
        return np.where(weights < 0, weights + 16, weights)
    codes = np.vectorize(TERNARY_CODE.get)(weights)
    use_unused = (weights == 0) & (rng.random(weights.shape) < 0.5)
    return np.where(use_unused, TERNARY_UNUSED_CODE, codes)


def dense_golden(p: PeParams, t: Tiles) -> list[int]:
    """Expected results: scatter weights to a dense matrix, dot per group, scale, wrap."""
    dense_w = np.zeros(t.acts.shape, dtype=np.int64)
    np.put_along_axis(dense_w, t.indices, t.weights, axis=-1)
    tiles, groups = t.scales.shape
    k_all = t.acts[0].size
    pos = np.arange(k_all)
    in_range = pos[None, :] < t.k_inputs[:, None]
    products = t.acts.reshape(tiles, k_all) * dense_w.reshape(tiles, k_all) * in_range
    group_dots = products.reshape(tiles, groups, -1).sum(axis=2)
    exact = (group_dots.astype(object) * t.scales.astype(object)).sum(axis=1)
    return [to_signed(int(x), p.acc_bits) for x in exact]


def exact_results(t: Tiles) -> list[int]:
    """Unwrapped integer results (to see whether a run exercises wrap-around)."""
    picked = np.take_along_axis(t.acts, t.indices, axis=-1)
    beat_dots = (picked * t.weights).sum(axis=(2, 3))  # [T, B]
    group_dots = beat_dots.reshape(t.scales.shape + (-1,)).sum(axis=2)
    return [int(x) for x in (group_dots.astype(object) * t.scales.astype(object)).sum(axis=1)]


def to_signed(value: int, bits: int) -> int:
    """Two's complement reading of the low `bits` bits of value."""
    half = 1 << (bits - 1)
    return ((value + half) % (1 << bits)) - half


def pack_fields(values: np.ndarray, width: int) -> int:
    """Concatenate values (element 0 in the least significant bits) into one bus integer."""
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (i * width) for i, v in enumerate(values.ravel()))


def pack_beats(p: PeParams, t: Tiles, tile: int, rng: np.random.Generator,
               more_rows: tuple[Tiles, ...] = ()) -> list[list[int]]:
    """Bus words of one tile: [act, code, idx, scale, group_last, tile_last] per beat.

    ``more_rows`` are further token rows (a PACK > 1 PE): their activations follow row 0's
    on the in_act bus; weights, indices and scales are row 0's (shared).
    """
    beats = t.acts.shape[1]
    row_bits = p.lanes * p.m * p.act_bits
    words = []
    for b in range(beats):
        group_last = (b + 1) % t.group_beats == 0
        # off group ends the scale input is ignored: drive noise there
        noise = rng.integers(0, 1 << p.scale_bits)
        scale = t.scales[tile, b // t.group_beats] if group_last else noise
        words.append(
            [
                sum(pack_fields(row.acts[tile, b], p.act_bits) << (r * row_bits)
                    for r, row in enumerate((t, *more_rows))),
                pack_fields(t.codes[tile, b], p.code_bits),
                pack_fields(t.indices[tile, b], p.index_bits),
                int(scale) & ((1 << p.scale_bits) - 1),
                int(group_last),
                int(b == beats - 1),
            ]
        )
    return words
