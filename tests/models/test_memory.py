"""Memory target: hand-computed latencies, interleaving and FCFS channel sharing."""

import pytest

from tlmsim.config import MemoryConfig
from tlmsim.engine.payload import Command, Transaction
from tlmsim.models.memory import Memory


def _memory(ctx, **kw):
    cfg = dict(channels=1, bandwidth_gbps=10.0, latency_ns=100, burst_bytes=64, interleave_bytes=4096, capacity_gib=1)
    cfg.update(kw)
    return Memory(ctx, "mem", MemoryConfig(**cfg))


def _read(ctx, mem, addr, nbytes, log, tag):
    def proc():
        txn = Transaction(Command.READ, addr, nbytes, "t", tag, ctx.env.now)
        done = yield from mem.target.handler(txn)
        log.append((tag, done))
    return ctx.env.process(proc())


def test_single_channel_read_takes_latency_plus_size_over_bandwidth(ctx):
    mem = _memory(ctx)
    log = []
    _read(ctx, mem, 0, 6400, log, "a")
    ctx.env.run()
    # 6400 B at 10 GB/s = 640 ns, plus 100 ns latency.
    assert log == [("a", 740_000)]


def test_requests_round_up_to_whole_bursts(ctx):
    mem = _memory(ctx)
    log = []
    _read(ctx, mem, 0, 65, log, "a")  # two 64-byte bursts = 12.8 ns
    ctx.env.run()
    assert log == [("a", 100_000 + 12_800)]


def test_second_request_waits_for_the_channel_but_not_for_latency(ctx):
    mem = _memory(ctx)
    log = []
    _read(ctx, mem, 0, 6400, log, "a")
    _read(ctx, mem, 8192, 6400, log, "b")
    ctx.env.run()
    # b's data follows a's on the channel (pipelined): 640 + 640 ns + latency.
    assert log == [("a", 740_000), ("b", 1_380_000)]


def test_interleaved_read_uses_all_channels_in_parallel(ctx):
    mem = _memory(ctx, channels=4, bandwidth_gbps=40.0)
    log = []
    _read(ctx, mem, 0, 4 * 4096, log, "a")
    ctx.env.run()
    # each channel moves 4096 B at 10 GB/s = 409.6 ns
    assert log == [("a", 100_000 + 409_600)]


@pytest.mark.parametrize("addr,nbytes", [(0, 1), (100, 5000), (4095, 2), (12345, 100_000), (0, 4096 * 7)])
def test_split_accounts_for_every_byte_and_respects_interleave(ctx, addr, nbytes):
    mem = _memory(ctx, channels=4)
    shares = dict(mem.split(addr, nbytes))
    assert sum(shares.values()) == nbytes
    expected = {}
    for unit in range(addr // 4096, (addr + nbytes - 1) // 4096 + 1):
        lo, hi = max(addr, unit * 4096), min(addr + nbytes, (unit + 1) * 4096)
        expected[unit % 4] = expected.get(unit % 4, 0) + hi - lo
    assert shares == {ch: b for ch, b in expected.items() if b}


def test_access_beyond_capacity_is_an_error(ctx):
    mem = _memory(ctx, capacity_gib=1)
    log = []
    _read(ctx, mem, 2**30 - 10, 64, log, "a")
    with pytest.raises(ValueError, match="beyond capacity"):
        ctx.env.run()


# On-chip banks: URAM is 4K x 72 bit (36 KiB) per block, BRAM36 512 x 72 bit (4.5 KiB), one
# write and one read port each (AMD UG573).


def test_bank_width_follows_the_blocks_its_capacity_needs():
    from tlmsim.config import BufferConfig

    buf = BufferConfig(banks=2, bank_kib=1024, memory="uram")
    assert buf.blocks_per_bank == 29  # ceil(1024 / 36)
    assert buf.bank_width_bits == 29 * 72
    assert buf.footprint_kib == 2 * 29 * 36
    wide = BufferConfig(banks=2, bank_kib=1024, memory="uram", width_bits=14720)
    assert wide.blocks_per_bank == 205  # ceil(14720 / 72): width, not capacity, decides
    assert BufferConfig(bank_kib=9, memory="bram").blocks_per_bank == 2


def test_bank_ports_bound_fill_and_drain_time(ctx):
    from tlmsim.config import BufferConfig
    from tlmsim.models.buffer import BankedBuffer

    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1024), clock_mhz=250)
    assert buf.port_bytes_per_cycle() == 261  # 29 x 72 bit / 8
    assert buf.port_gbps() == 261 * 0.25  # 65.25 GB/s: far below the 460 GB/s HBM peak
    # 1 MiB through a 261 B port: ceil(1048576 / 261) = 4018 cycles of 4 ns
    assert buf.fill_ps(2**20) == 4018 * 4000 == buf.drain_ps(2**20)


def test_wide_banks_count_whole_blocks_against_the_fpga(flagship_raw):
    from tlmsim.config import validate_config
    from tlmsim.engine.errors import ConfigError

    acc = flagship_raw["accelerator"]
    for name in ("weight_buffer", "kv_buffer"):
        acc[name] = {"banks": 2, "bank_kib": 1024, "memory": "uram"}  # 29 URAMs each
    acc["weight_buffer"]["width_bits"] = 14720  # 205 URAMs per bank, 410 for the ping-pong pair
    validate_config(flagship_raw)  # 410 + 58 (kv) + 8 MiB activations = 696 of 960 URAMs
    acc["kv_buffer"]["width_bits"] = 14720  # another 410: 820 x 36 KiB + 8192 KiB > 34560 KiB
    with pytest.raises(ConfigError, match="on-chip buffers need 37712 KiB of URAM"):
        validate_config(flagship_raw)


# ---------------------------------------------------------------- arbitration (QoS) and striped streams


def _issue(ctx, mem, addr, nbytes, log, tag, qos, at=0):
    """Issue a read of AXI QoS ``qos`` at ``at`` ps; log (tag, completion)."""
    def proc():
        yield ctx.env.timeout(at)
        txn = Transaction(Command.READ, addr, nbytes, "t", tag, ctx.env.now, qos)
        done = yield from mem.target.handler(txn)
        log.append((tag, done))
    return ctx.env.process(proc())


def test_a_higher_qos_read_cuts_ahead_of_queued_prefetch_which_ends_later_by_as_much(ctx):
    mem = _memory(ctx)  # one ideal channel at 10 GB/s, 100 ns latency
    log = []
    _issue(ctx, mem, 0, 64_000, log, "prefetch", qos=0)  # 6.4 us of channel time from 0
    _issue(ctx, mem, 1 << 20, 640, log, "kv", qos=1, at=1_000_000)  # 64 ns, issued at 1 us
    ctx.env.run()
    # kv: served at once, 1 us + 64 ns + 100 ns; prefetch: 6.4 us + 64 ns + 100 ns.
    assert sorted(log) == [("kv", 1_164_000), ("prefetch", 6_564_000)]


def test_in_fifo_arbitration_the_critical_read_waits_behind_the_prefetch(ctx):
    mem = _memory(ctx, arbitration="fifo")
    log = []
    _issue(ctx, mem, 0, 64_000, log, "prefetch", qos=0)
    _issue(ctx, mem, 1 << 20, 640, log, "kv", qos=1, at=1_000_000)
    ctx.env.run()
    assert sorted(log) == [("kv", 6_564_000), ("prefetch", 6_500_000)]


def test_a_cut_in_costs_the_overtaken_stream_its_row_reopening(ctx):
    from tlmsim.models.dram_config import DramTimingConfig

    mem = _memory(ctx, dram=DramTimingConfig(preset="hbm2_u280", refresh="windowed", t_refi_ns=10**6,
                                             t_rfc_ns=1))
    t = mem.timing
    log = []
    _issue(ctx, mem, 0, 64_000, log, "prefetch", qos=0)
    ctx.env.run()
    alone = log[0][1]
    ctx2 = _fresh_ctx()
    mem2 = _memory(ctx2, dram=mem.cfg.dram)
    log2 = []
    _issue(ctx2, mem2, 0, 64_000, log2, "prefetch", qos=0)
    _issue(ctx2, mem2, 1 << 20, 64, log2, "kv", qos=1, at=1_000_000)
    ctx2.env.run()
    done = dict(log2)
    # kv: one burst after a row miss (tRP + tRCD: another stream's row is open), at 1 us.
    assert done["kv"] == 1_000_000 + t.rp + t.rcd + t.col_ps + mem.latency_ps
    # the prefetch resumes after it and re-opens its own row: later by the kv's channel time + tRP + tRCD.
    assert done["prefetch"] == alone + (t.rp + t.rcd + t.col_ps) + (t.rp + t.rcd)


def test_one_channel_of_a_bulk_stream_runs_at_most_the_skew_ahead_of_its_slowest(ctx):
    # Two channels, 4 KiB interleave, 10 GB/s each. A reads 3 units: ch0 gets 2 (819.2 ns),
    # ch1 gets 1 (409.6 ns). B then reads 2 units, one per channel: ch1 may start B no more than
    # the skew (1 KiB = 102.4 ns) before ch0 is free, i.e. at 716.8 ns; ch0 at 819.2 ns.
    mem = _memory(ctx, channels=2, bandwidth_gbps=20.0, stream_skew_kib=1)
    log = []
    _issue(ctx, mem, 0, 3 * 4096, log, "a", qos=0)
    _issue(ctx, mem, 4 * 4096, 2 * 4096, log, "b", qos=0)
    ctx.env.run()
    assert dict(log)["b"] == 100_000 + 819_200 + 409_600
    assert mem.dram.free == [819_200 + 409_600, 716_800 + 409_600]
    log.clear()
    ctx2 = _fresh_ctx()
    independent = _memory(ctx2, channels=2, bandwidth_gbps=20.0, stream_skew_kib=None)
    _issue(ctx2, independent, 0, 3 * 4096, log, "a", qos=0)
    _issue(ctx2, independent, 4 * 4096, 2 * 4096, log, "b", qos=0)
    ctx2.env.run()
    assert independent.dram.free == [819_200 + 409_600, 409_600 + 409_600]  # ch1 runs on at once


def test_a_cut_in_holds_its_channel_and_the_others_only_beyond_the_stream_skew(ctx):
    # Two ideal channels of 10 GB/s, 4 KiB interleave, skew 1 KiB (102.4 ns). The prefetch
    # puts 8 units on each channel (3276.8 ns). A 4 KiB KV read on channel 0 at 1 us holds it
    # 409.6 ns; channel 1 runs on for the skew and then waits: 409.6 - 102.4 = 307.2 ns.
    mem = _memory(ctx, channels=2, bandwidth_gbps=20.0, stream_skew_kib=1)
    log = []
    _issue(ctx, mem, 0, 16 * 4096, log, "prefetch", qos=0)
    _issue(ctx, mem, 1 << 20, 4096, log, "kv", qos=1, at=1_000_000)
    ctx.env.run()
    assert mem.dram.free == [3_276_800 + 409_600, 3_276_800 + 307_200]
    assert dict(log) == {"kv": 1_000_000 + 409_600 + 100_000, "prefetch": 3_686_400 + 100_000}
    # A read shorter than the skew holds only its own channel.
    ctx2 = _fresh_ctx()
    mem2 = _memory(ctx2, channels=2, bandwidth_gbps=20.0, stream_skew_kib=1)
    _issue(ctx2, mem2, 0, 16 * 4096, [], "prefetch", qos=0)
    _issue(ctx2, mem2, 1 << 20, 640, [], "kv", qos=1, at=1_000_000)
    ctx2.env.run()
    assert mem2.dram.free == [3_276_800 + 64_000, 3_276_800]


def _fresh_ctx():
    import simpy

    from tlmsim.engine.component import SimContext
    from tlmsim.engine.trace import Tracer

    return SimContext(simpy.Environment(), Tracer(), phase="test")
