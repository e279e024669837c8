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
