"""Weight decoder: ceil(stored weights / weights_per_cycle) cycles per tile, its fixed
latency paid once per op (in the PE array's drain), in lockstep with the PEs.

The PE array streams each weight tile through the decoder's port with its own compute
time; the decoder records its busy time and the back-pressure from the PEs. Times are worked by hand in picoseconds
(250 MHz: 4000 ps per cycle).
"""

from tlmsim.config import DecoderConfig, PeArrayConfig
from tlmsim.models.decoder import WeightDecoder
from tlmsim.models.pe_array import Operands, PeArray, PeCommand
from tlmsim.models.tiling import Tile
from tlmsim.workloads.formats import parse_format

CYCLE = 4000  # ps at 250 MHz
FMT = parse_format("int4-2:4")
# A 1 x 1 array of one 2:4 PE with 2 lanes: 8 inputs per beat, one beat per cycle. Its
# drain after an op's last beat is the PE pipeline beyond one beat: 3 stages - 1 = 2 cycles.
PE = PeArrayConfig(rows=1, cols=1, n=2, m=4, lanes=2)
PE_DRAIN = 2
# compute-bound: 64 inputs = 8 beats; its 32 kept weights decode in 4 cycles at 8 per cycle
LIGHT = Tile(1, 1, 64, 1, 0, 0, stored_weights=32)
# decoder-bound: the same 8 beats, but 100 stored weights take ceil(100 / 8) = 13 cycles
HEAVY = Tile(1, 1, 64, 1, 0, 0, stored_weights=100)


def _decoder(ctx, per_cycle=8, latency=4, clock=250):
    return WeightDecoder(ctx, "decoder", DecoderConfig(weights_per_cycle=per_cycle, latency_cycles=latency), clock)


def _run(ctx, commands, wire_pe):
    """Run (label, tiles, decoded) commands back to back; returns [(label, done ps)]."""
    env = ctx.env
    decoder = _decoder(ctx)
    pe = PeArray(ctx, "pe", PE, 250, decoder.cfg.latency_cycles)
    issuer = wire_pe(env, pe, decoder)
    issuer.send(*[PeCommand(label, FMT, tuple(tiles), Operands.WEIGHTS if decoded else Operands.KV, (0, label))
                  for label, tiles, decoded in commands])
    env.run()
    return [(work[1], t) for work, t in issuer.done], decoder, pe


def test_decode_cycles_round_up_to_whole_cycles(ctx):
    dec = _decoder(ctx, per_cycle=64)
    assert [dec.decode_cycles(w) for w in (0, 1, 63, 64, 65, 128, 10_240)] == [0, 1, 1, 1, 2, 2, 160]


def test_decode_time_is_cycles_at_the_clock_without_the_latency(ctx):
    dec = _decoder(ctx, per_cycle=64, latency=4)
    assert dec.decode_ps(10_240) == 160 * CYCLE  # 640 ns
    assert dec.decode_ps(65) == 2 * CYCLE
    assert dec.decode_ps(0) == 0
    # the fixed latency overlaps the stream: it is not part of a tile's decode time
    no_latency = _decoder(ctx, per_cycle=64, latency=0)
    assert dec.decode_ps(10_240) == no_latency.decode_ps(10_240)


def test_decode_time_rounds_up_to_a_whole_picosecond(ctx):
    dec = _decoder(ctx, per_cycle=64, clock=300)  # 3333.33 ps per cycle
    assert dec.decode_ps(64) == 3334
    assert dec.decode_ps(65) == 6667  # 2 cycles = 6666.67 ps
    assert dec.decode_ps(192) == 10_000  # 3 cycles = 10 ns exactly, no float-noise extra ps


def test_roofline_bound_is_the_throughput_time(ctx):
    dec = _decoder(ctx, per_cycle=4096)
    # the flagship's decoder: 4096 weights per cycle; a 4096 x 4096 2:4 layer keeps 8388608
    assert dec.ideal_ps(8_388_608) == 2048 * CYCLE


def test_a_decoder_bound_tile_stalls_the_pes_and_adds_the_latency_once(ctx, wire_pe):
    log, decoder, pe = _run(ctx, [("op", [HEAVY], True)], wire_pe)
    # 13 decode cycles (> 8 compute), then PE drain 2 + decoder latency 4
    assert log == [("op", (13 + PE_DRAIN + 4) * CYCLE)]
    assert decoder.stats.time_ps["test"]["busy"] == 13 * CYCLE
    assert "stall:back-pressure from PEs" not in decoder.stats.time_ps["test"]
    assert pe.stats.time_ps["test"]["busy"] == 8 * CYCLE
    assert pe.stats.time_ps["test"]["stall:waiting for decoder"] == 5 * CYCLE


def test_a_compute_bound_tile_back_pressures_the_decoder(ctx, wire_pe):
    log, decoder, pe = _run(ctx, [("op", [LIGHT], True)], wire_pe)
    assert log == [("op", (8 + PE_DRAIN + 4) * CYCLE)]
    assert decoder.stats.time_ps["test"]["busy"] == 4 * CYCLE
    assert decoder.stats.time_ps["test"]["stall:back-pressure from PEs"] == 4 * CYCLE
    assert "stall:waiting for decoder" not in pe.stats.time_ps["test"]


def test_tiles_of_one_op_decode_back_to_back_and_pay_the_latency_once(ctx, wire_pe):
    log, decoder, _ = _run(ctx, [("op", [LIGHT, HEAVY, LIGHT], True)], wire_pe)
    # each tile takes max(decode, compute): 8, 13, 8 cycles; then the drain once
    assert log == [("op", (8 + 13 + 8 + PE_DRAIN + 4) * CYCLE)]
    busy = [(s.start_ps, s.end_ps) for s in ctx.tracer.slices if s.track == "decoder" and s.state == "busy"]
    assert busy == [(0, 4 * CYCLE), (8 * CYCLE, 21 * CYCLE), (21 * CYCLE, 25 * CYCLE)]
    times = decoder.stats.time_ps["test"]
    assert times["busy"] == (4 + 13 + 4) * CYCLE
    assert times["stall:back-pressure from PEs"] == (4 + 4) * CYCLE


def test_the_next_op_streams_while_the_previous_one_drains(ctx, wire_pe):
    log, decoder, _ = _run(ctx, [("first", [LIGHT], True), ("second", [LIGHT], True)], wire_pe)
    # the second op's tile starts right after the first's last beat (cycle 8), not after its drain
    assert log == [("first", (8 + 6) * CYCLE), ("second", (16 + 6) * CYCLE)]
    busy = [(s.name, s.start_ps, s.end_ps) for s in ctx.tracer.slices if s.track == "decoder"
            and s.state == "busy"]
    assert busy == [("first", 0, 4 * CYCLE), ("second", 8 * CYCLE, 12 * CYCLE)]


def test_kv_tiles_bypass_the_decoder(ctx, wire_pe):
    log, decoder, _ = _run(ctx, [("attn", [HEAVY], False)], wire_pe)
    # only the 8 compute cycles and the PE drain: no decode time, no decoder latency
    assert log == [("attn", (8 + PE_DRAIN) * CYCLE)]
    assert not decoder.stats.time_ps["test"]
    assert not [s for s in ctx.tracer.slices if s.track == "decoder"]


def test_decoder_is_a_compute_component(ctx):
    assert _decoder(ctx).role == "compute"  # reports can name it a bottleneck
