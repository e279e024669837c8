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
    # One token row and 8 outputs run on a 1 x 8 sub-array of the 4 x 8 array: no row skew.
    assert pe.sub_array(fmt, (tile,)) == (1, 8)
    drain = pe.fill_cycles(pe.pe_params(fmt), (1, 8)) + 4  # PE pipeline + column skew + decoder latency
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


def test_a_narrow_bank_read_port_paces_the_tile_and_is_accounted_as_such(ctx, wire_pe):
    """Compute 8 cycles, decode 4, bank read port 20 cycles: the tile takes 20 cycles; the
    array waits 12 for the port, the decoder 16 for the weight buffer."""
    env = ctx.env
    pe = PeArray(ctx, "pe", PeArrayConfig(rows=1, cols=1, n=2, m=4, lanes=2), 250, decoder_latency_cycles=0)
    decoder = WeightDecoder(ctx, "decoder", DecoderConfig(weights_per_cycle=8, latency_cycles=0), 250)
    issuer = wire_pe(env, pe, decoder, read_ps=20 * 4000)
    tile = Tile(1, 1, 64, 1, 0, 0, stored_weights=32)  # 64 inputs / 8 per beat = 8 beats; 32 / 8 = 4 cycles
    fmt = parse_format("int4-2:4")
    issuer.send(PeCommand("w", fmt, (tile,), Operands.WEIGHTS, (0, 0)))
    env.run()
    drain = pe.fill_cycles(pe.pe_params(fmt))
    assert issuer.done == [((0, 0), (20 + drain) * 4000)]
    assert pe.stats.time_ps["test"] == {"busy": 8 * 4000, "stall:waiting for buffer port": 12 * 4000}
    assert decoder.stats.time_ps["test"] == {"busy": 4 * 4000, "stall:waiting for weight buffer": 16 * 4000}


def test_a_small_op_runs_on_the_sub_array_that_finishes_it_soonest(ctx):
    """128 outputs of 64 inputs on a 1 x 128 array (2:4, 2 lanes: 8 beats per pass): the whole
    array takes 8 beats + 127 cycles of skew; 64 columns take 2 passes (16 beats) + 63, which
    is what a 64-column array does; 32 columns: 4 passes (32) + 31 = 63 is the best of all."""
    cfg = PeArrayConfig(rows=1, cols=128, n=2, m=4, lanes=2)
    pe = PeArray(ctx, "pe", cfg, 250, decoder_latency_cycles=0)
    fmt = parse_format("int4-2:4")
    tile = Tile(1, 1, 64, 128, 0, 0, 128 * 32)
    latency = pe.fill_cycles(pe.pe_params(fmt), (1, 1))  # the PE pipeline alone
    op_cycles = {c: pe.tile_cycles(fmt, tile, (1, c)) + pe.fill_cycles(pe.pe_params(fmt), (1, c)) - latency
                 for c in range(1, 129)}
    assert (op_cycles[128], op_cycles[64]) == (8 + 127, 16 + 63)
    best = min(op_cycles.values())
    assert best == op_cycles[32] == 32 + 31
    assert pe.sub_array(fmt, (tile,)) == (1, max(c for c, v in op_cycles.items() if v == best))
    whole = PeArray(ctx, "pe2", cfg.model_copy(update={"map_to_sub_array": False}), 250, decoder_latency_cycles=0)
    assert whole.sub_array(fmt, (tile,)) == (1, 128)


def test_the_sub_array_choice_counts_what_the_operand_path_can_deliver(ctx):
    """The same 1 x 128 array and tile, but its operand path needs 100 cycles a tile (a narrow
    bank port): a sub-array that computes the tile in fewer cycles gains nothing, so the
    fewest columns that keep up (11: 12 passes x 8 beats = 96) win on skew: 100 + 10 cycles,
    against 100 + 31 on the 32 columns that compute fastest (4 passes, 32 cycles)."""
    cfg = PeArrayConfig(rows=1, cols=128, n=2, m=4, lanes=2)
    fmt = parse_format("int4-2:4")
    tile = Tile(1, 1, 64, 128, 0, 0, 128 * 32)
    supply_cycles = 100
    plain = PeArray(ctx, "pe", cfg, 250, decoder_latency_cycles=0)
    fed = PeArray(ctx, "pe2", cfg, 250, decoder_latency_cycles=0,
                  supply_ps={Operands.WEIGHTS: lambda t: supply_cycles * 4000})  # 4 ns a cycle at 250 MHz
    # Hand count per c columns: a tile takes max(passes x 8 beats, 100) cycles, then c - 1 of skew.
    per_c = {c: max(-(-128 // c) * 8, supply_cycles) + c - 1 for c in range(1, 129)}
    best = min(per_c.values())
    assert best == per_c[11] == 100 + 10  # 12 passes x 8 = 96 <= 100 first at c = 11
    assert fed.sub_array(fmt, (tile,)) == (1, 11)
    assert plain.sub_array(fmt, (tile,)) == (1, 32)  # without the supply floor: compute alone
