"""PE array timing: tile cycles from the PE's RTL parameters, worked by hand."""

from tlmsim.config import DecoderConfig, PeArrayConfig
from tlmsim.models.decoder import WeightDecoder
from tlmsim.models.pe_array import Operands, PeArray, PeCommand
from tlmsim.models.pe_core import PeParams, latency_cycles
from tlmsim.models.tiling import Tile
from tlmsim.workloads.formats import parse_format

CFG = PeArrayConfig(rows=4, cols=8, n=2, m=4, lanes=2)


def _array(ctx):
    return PeArray(ctx, "pe", CFG, 250, decoder_latency_cycles=4)


def test_sparse_tile_cycles_match_hand_count(ctx):
    pe = _array(ctx)
    tile = Tile(groups=1, rows=5, k=64, n=16, nbytes=0, offset=0, stored_weights=16 * 32)
    # passes = ceil(5/4) * ceil(16/8) = 4; beats/pass = 64 / (m*lanes = 8) = 8 -> 32 beats
    # cycles = (32 - 1) * II(1) + PE latency + skew (rows-1 + cols-1 = 10)
    # the array is busy for the 32 beats; results drain latency - 1 + skew (rows-1 + cols-1) later
    assert pe.tile_cycles(parse_format("int4-2:4"), tile) == 32
    assert pe.fill_cycles(PeParams(2, 4, 2)) == latency_cycles(PeParams(2, 4, 2)) - 1 + 10


def test_dense_weights_use_n_times_lanes_inputs_per_beat(ctx):
    pe = _array(ctx)
    tile = Tile(1, 4, 64, 8, 0, 0, 8 * 64)
    # one pass; 64 inputs / (n*lanes = 4) = 16 beats
    assert pe.tile_cycles(parse_format("int4"), tile) == 16


def test_fp16_weights_take_four_beats_per_group_on_int4_multipliers(ctx):
    pe = _array(ctx)
    tile = Tile(1, 4, 64, 8, 0, 0, 8 * 64)
    assert pe.tile_cycles(parse_format("fp16"), tile) == 16 * 4


def test_ternary_is_one_beat_per_group(ctx):
    pe = _array(ctx)
    tile = Tile(1, 4, 64, 8, 0, 0, 8 * 32)
    assert pe.tile_cycles(parse_format("ternary-2:4"), tile) == 8


def test_tile_takes_max_of_decode_and_compute(ctx, wire_pe):
    env = ctx.env
    pe = _array(ctx)
    decoder = WeightDecoder(ctx, "decoder", DecoderConfig(weights_per_cycle=64, latency_cycles=4), 250)
    issuer = wire_pe(env, pe, decoder)
    fmt = parse_format("int4-2:4")
    tile = Tile(1, 1, 64, 8, 0, 0, stored_weights=8 * 32 * 40)  # decoder-heavy: 10240 weights / 64 per cycle
    issuer.send(PeCommand("x", fmt, (tile,), Operands.WEIGHTS, (0, 0)))
    env.run()
    decode_cycles = 10240 // 64
    assert decode_cycles > pe.tile_cycles(fmt, tile)
    drain = pe.fill_cycles(pe.pe_params(fmt)) + 4  # PE pipeline + skew + decoder latency
    assert issuer.done == [((0, 0), (decode_cycles + drain) * 4000)]  # 250 MHz -> 4 ns per cycle


def test_one_pass_tile_on_a_1x1_array_takes_the_rtl_dot_cycles(ctx, wire_pe):
    from tlmsim.models.pe_core import dot_cycles

    env = ctx.env
    cfg = PeArrayConfig(rows=1, cols=1, n=2, m=4, lanes=2)
    pe = PeArray(ctx, "pe1", cfg, 250, decoder_latency_cycles=0)
    issuer = wire_pe(env, pe)
    fmt = parse_format("int4-2:4")
    issuer.send(PeCommand("x", fmt, (Tile(1, 1, 64, 1, 0, 0, 32),), Operands.KV, (0, 0)))
    env.run()
    assert issuer.done == [((0, 0), dot_cycles(PeParams(2, 4, 2), 64) * 4000)]


def test_an_array_built_for_1_of_4_still_runs_dense_operands(ctx):
    """Attention (fp16 KV) and lm_head are dense even on a 1:4 machine: n*lanes inputs per beat."""
    cfg = PeArrayConfig(rows=1, cols=1, n=1, m=4, lanes=32)
    pe = PeArray(ctx, "pe", cfg, 250, decoder_latency_cycles=4)
    assert pe.tile_cycles(parse_format("fp16"), Tile(1, 1, 64, 1, 0, 0, 64)) == 2 * 4
    assert pe.tile_cycles(parse_format("int4-1:4"), Tile(1, 1, 256, 1, 0, 0, 64)) == 2
