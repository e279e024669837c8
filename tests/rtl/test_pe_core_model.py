"""tlmsim/models/pe_core.py on its own: validation, timing formulas and hand-worked arithmetic.

Pure Python (no Verilator), so not marked `rtl`; the RTL cross-check is test_nm_pe.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tlmsim.models.pe_core import (
    PeParams,
    beats_for,
    decode_weights,
    dot_cycles,
    encode_weights,
    initiation_interval,
    latency_cycles,
    pe_dot,
    wrap,
)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 2, "m": 6, "lanes": 1}, "power of two"),
        ({"n": 0, "m": 4, "lanes": 1}, "0 < n <= m"),
        ({"n": 5, "m": 4, "lanes": 1}, "0 < n <= m"),
        ({"n": 2, "m": 4, "lanes": 0}, "lanes"),
        ({"n": 2, "m": 4, "lanes": 1, "acc_bits": 65}, "acc_bits"),
        ({"n": 2, "m": 4, "lanes": 1, "scale_bits": 1}, "scale_bits"),
    ],
)
def test_params_reject_impossible_designs(fields, message):
    with pytest.raises(ValueError, match=message):
        PeParams(**fields)


def test_dot_cycles_is_one_beat_per_cycle_plus_pipeline_fill():
    p = PeParams(n=2, m=4, lanes=4)  # 16 inputs per beat
    assert (latency_cycles(p), initiation_interval(p)) == (3, 1)
    assert [beats_for(p, k) for k in (1, 16, 17, 128)] == [1, 1, 2, 8]
    assert [dot_cycles(p, k) for k in (1, 16, 17, 128)] == [3, 3, 4, 10]


def test_beats_for_rejects_empty_dot_products():
    with pytest.raises(ValueError, match="k_inputs"):
        beats_for(PeParams(n=1, m=4, lanes=1), 0)


def test_int4_and_ternary_codes_decode_to_hand_tables():
    int4 = decode_weights(PeParams(n=1, m=4, lanes=1), np.arange(16))
    assert int4.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1]
    ternary = decode_weights(PeParams(n=1, m=4, lanes=1, ternary=True), np.arange(4))
    assert ternary.tolist() == [0, 1, 0, -1]  # 0b10 is unused and reads as 0


def test_encode_rejects_values_the_pe_cannot_hold():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        encode_weights(PeParams(n=1, m=4, lanes=1, ternary=True), np.array([2]))
    p = PeParams(n=1, m=4, lanes=1)
    assert decode_weights(p, encode_weights(p, np.arange(-8, 8))).tolist() == list(range(-8, 8))


def test_wrap_reads_low_bits_as_twos_complement():
    assert wrap(np.array([127, 128, 255, 256, -129]), 8).tolist() == [127, -128, -1, 0, 127]
    assert wrap(np.array([-1]), 64).tolist() == [-1]


def test_pe_dot_matches_a_hand_worked_tile():
    # 2:4, one lane, two beats, one group per beat: results worked out by hand below
    p = PeParams(n=2, m=4, lanes=1)
    acts = np.array([[[[10, -3, 7, 2]], [[-128, 5, 1, 4]]]])  # [T=1, B=2, lanes=1, m=4]
    weights = np.array([[[[3, -2]], [[-8, 7]]]])
    indices = np.array([[[[0, 2]], [[0, 3]]]])
    scales = np.array([[5, -2]])
    # beat 0: 3*10 + -2*7 = 16 -> *5 = 80; beat 1: -8*-128 + 7*4 = 1052 -> *-2 = -2104
    codes = encode_weights(p, weights)
    assert pe_dot(p, acts, codes, indices, scales).tolist() == [80 - 2104]
    # one group over both beats, unit scale: the plain sparse dot product
    assert pe_dot(p, acts, codes, indices, np.array([[1]])).tolist() == [16 + 1052]


def test_pe_dot_wraps_at_the_accumulator_width():
    p = PeParams(n=1, m=2, lanes=1, acc_bits=16)
    acts, codes, idx = np.full((1, 1, 1, 2), -128), np.full((1, 1, 1, 1), 8), np.zeros((1, 1, 1, 1), int)
    scales = np.array([[-32768]])  # exact result -2**25 wraps to 0 in 16 bits
    assert pe_dot(p, acts, codes, idx, scales).tolist() == [0]
    assert pe_dot(p, acts, codes, idx, np.array([[3]])).tolist() == [3072]


def test_dense_pe_without_indices_is_a_plain_dot_product():
    p = PeParams(n=4, m=4, lanes=2)
    rng = np.random.default_rng(7)
    acts = rng.integers(-128, 128, size=(50, 6, 2, 4))
    weights = rng.integers(-8, 8, size=(50, 6, 2, 4))
    expected = (acts * weights).reshape(50, -1).sum(axis=1) * 3
    got = pe_dot(p, acts, encode_weights(p, weights), None, np.full((50, 2), 3))
    assert got.tolist() == expected.tolist()


def test_pe_dot_rejects_mismatched_shapes():
    p = PeParams(n=2, m=4, lanes=1)
    acts = np.zeros((1, 3, 1, 4), int)
    fields = np.zeros((1, 3, 1, 2), int)
    with pytest.raises(ValueError, match="scales"):
        pe_dot(p, acts, fields, fields, np.zeros((1, 2), int))  # 2 groups do not divide 3 beats
    with pytest.raises(ValueError, match="indices"):
        pe_dot(p, acts, fields, fields + 4, np.zeros((1, 1), int))
    with pytest.raises(ValueError, match="required"):
        pe_dot(p, acts, fields, None, np.zeros((1, 1), int))
