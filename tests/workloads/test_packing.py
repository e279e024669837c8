"""Packing: bit-exact round trips, byte counts equal to formats.packed_nbytes, bit order."""

import dataclasses
import itertools
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tlmsim.workloads.compressed_model import compress_weight
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.packing import (
    PackedWeight,
    decode_indices,
    encode_indices,
    pack,
    pack_bits,
    pack_quantized,
    storage_table,
    unpack,
    unpack_bits,
    unpack_mask,
)

SPECS = ["fp16", "int4", "int8", "ternary"] + [
    f"{base}-{pattern}"
    for base in ("int4", "ternary", "fp16")
    for pattern in ("1:4", "2:4", "3:4", "1:8", "2:8", "4:8", "8:16")
]


def _formats():
    """Every spec x symmetric/asymmetric (INT) x group 64/128 (INT) x both index encodings (N:M)."""
    for spec in SPECS:
        for symmetric, group, encoding in itertools.product((True, False), (64, 128), ("per_weight", "combinatorial")):
            fmt = parse_format(spec, group)
            if ((fmt.encoding != "int" and (not symmetric or group == 128))
                    or (not fmt.sparse and encoding != "per_weight")):
                continue
            yield dataclasses.replace(fmt, symmetric=symmetric, index_encoding=encoding)


FORMATS = list(_formats())


def _random_weight(fmt, out=12, inp=352, seed=0):
    # 352 inputs: a multiple of 16, and kept-per-row counts that leave partial scale groups
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed)) * 0.05


@pytest.mark.parametrize(
    "fmt", FORMATS,
    ids=lambda f: f"{f.name}-{'sym' if f.symmetric else 'asym'}-g{f.group_size}-{f.index_encoding}")
def test_unpack_of_pack_equals_the_pruned_quantized_weight_and_sizes_match(fmt):
    weight = _random_weight(fmt)
    qw = compress_weight(weight, fmt)
    packed = pack_quantized(qw)
    assert packed.nbytes == fmt.packed_nbytes(*weight.shape)
    assert packed.nbytes == sum(a.size for a in (packed.values, packed.indices, packed.scales, packed.zeros))
    assert all(a.dtype == np.uint8 for a in (packed.values, packed.indices, packed.scales, packed.zeros))
    np.testing.assert_array_equal(unpack(packed, fmt, weight.shape).astype(np.float32), qw.dequantize().numpy())
    np.testing.assert_array_equal(unpack_mask(packed, fmt, weight.shape), qw.mask.numpy())
    if fmt.sparse:
        assert (qw.mask.numpy().reshape(-1, fmt.m).sum(1) == fmt.n).all()


@pytest.mark.parametrize("symmetric", [True, False])
def test_integer_unpack_gives_codes_minus_zero_points(symmetric):
    fmt = dataclasses.replace(parse_format("int4-2:4", 64), symmetric=symmetric)
    qw = compress_weight(_random_weight(fmt, seed=1), fmt)
    integers = unpack(pack_quantized(qw), fmt, qw.shape, dequantize=False)
    kept = qw.kept_codes().numpy().astype(np.int64)
    if not symmetric:
        kept = kept - np.repeat(qw.zeros.numpy().reshape(12, -1), 64, axis=1)[:, : kept.shape[1]]
    np.testing.assert_array_equal(integers[qw.mask.numpy()].reshape(12, -1), kept)
    assert (integers[~qw.mask.numpy()] == 0).all()


def test_int4_codes_share_a_byte_low_nibble_first():
    assert pack_bits(np.array([1, 2, 15]), 4).tolist() == [0x21, 0x0F]


def test_ternary_codes_are_twos_complement_two_bits_lsb_first():
    fmt = parse_format("ternary")
    codes = np.array([[-1, 0, 1, 1]])
    packed = pack(codes, None, np.array([1.0], dtype=np.float16), fmt)
    assert packed.values.tolist() == [0b01_01_00_11]
    assert packed.scales.tolist() == list(np.array([1.0], dtype=np.float16).view(np.uint8))


def test_per_weight_indices_are_positions_inside_the_group():
    mask = np.array([[True, False, False, True, False, True, True, False]])
    assert encode_indices(mask, parse_format("int4-2:4")).tolist() == [0, 3, 1, 2]


def test_combinatorial_indices_are_colex_ranks():
    fmt = dataclasses.replace(parse_format("int4-2:4"), index_encoding="combinatorial")
    # colex order of 2-subsets of {0..3}: {0,1} {0,2} {1,2} {0,3} {1,3} {2,3}
    order = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    mask = np.zeros((len(order), 4), dtype=bool)
    for row, kept in enumerate(order):
        mask[row, list(kept)] = True
    assert encode_indices(mask, fmt).tolist() == list(range(6))
    np.testing.assert_array_equal(decode_indices(np.arange(6), fmt, (6, 4)), mask)


@pytest.mark.parametrize("m,n", [(4, 2), (8, 3), (16, 8), (6, 2)])
def test_combinatorial_encoding_is_a_bijection(m, n):
    fmt = dataclasses.replace(parse_format(f"int4-{n}:{m}"), index_encoding="combinatorial")
    combos = list(itertools.combinations(range(m), n))
    mask = np.zeros((len(combos), m), dtype=bool)
    for row, kept in enumerate(combos):
        mask[row, list(kept)] = True
    ranks = encode_indices(mask, fmt)
    assert sorted(ranks.tolist()) == list(range(len(combos)))
    np.testing.assert_array_equal(decode_indices(ranks, fmt, mask.shape), mask)


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 20), data=st.data())
def test_bit_streams_round_trip_for_any_width(width, data):
    codes = np.array(data.draw(st.lists(st.integers(0, 2**width - 1), max_size=40)), dtype=np.uint64)
    stream = pack_bits(codes, width)
    assert stream.size == (codes.size * width + 7) // 8
    np.testing.assert_array_equal(unpack_bits(stream, width, codes.size).astype(np.uint64), codes)


def test_bit_stream_of_three_bit_codes_by_hand():
    # codes 5 (101), 3 (011), 7 (111): stream bits LSB first 1,0,1, 1,1,0, 1,1,1 -> 0b11011101, 0b1
    assert pack_bits(np.array([5, 3, 7]), 3).tolist() == [0b11011101, 0b1]


def test_truncated_stream_is_rejected():
    fmt = parse_format("int4", 64)
    packed = pack_quantized(compress_weight(_random_weight(fmt), fmt))
    short = PackedWeight(packed.values[:-1], packed.indices, packed.scales, packed.zeros)
    with pytest.raises(ValueError, match="bytes, expected"):
        unpack(short, fmt, (12, 352))


def test_out_of_range_codes_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        pack(np.array([[8, 0]]), None, np.array([1.0]), parse_format("int4", None))


def test_storage_table_reports_formula_sizes_from_real_arrays():
    formats = [parse_format("fp16"), parse_format("int4-2:4", 128)]
    table = storage_table(formats, shapes=((64, 256),))
    fp16_row, sparse_row = table.splitlines()[2:]
    assert "| 2.0000 |" in fp16_row
    assert f"| {parse_format('int4-2:4').packed_nbytes(64, 256) / (64 * 256):.4f} |" in sparse_row


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["int4-2:4", "int4"])
def test_llama7b_down_proj_packs_and_unpacks_in_seconds(spec):
    fmt = parse_format(spec, 128)
    weight = torch.randn(4096, 11008, generator=torch.Generator().manual_seed(0))
    qw = compress_weight(weight, fmt)
    start = time.perf_counter()
    packed = pack_quantized(qw)
    dense = unpack(packed, fmt, weight.shape)
    elapsed = time.perf_counter() - start
    assert packed.nbytes == fmt.packed_nbytes(4096, 11008)
    np.testing.assert_array_equal(dense, qw.dequantize().numpy())
    assert elapsed < 10  # ~1-2 s each way on an idle 2-core machine; generous for shared CI
