"""Banked buffer: slots and back-pressure, and bank ports as wide as their URAM/BRAM blocks.

Port times are worked by hand at 250 MHz (4000 ps per cycle): a bank of k blocks side by
side moves k x 72 bit = 9k bytes per cycle on its write port and as much on its read port
(AMD UG573: a URAM288 or a BRAM36 in simple dual-port mode has 72-bit ports).
"""

import pytest

from tlmsim.config import BufferConfig
from tlmsim.engine.payload import Command, Response, Transaction
from tlmsim.models.buffer import BankedBuffer

CYCLE = 4000  # ps at 250 MHz


def _arrival(env, label: str, at_ps: int, nbytes: int = 1):
    """A memory's answer for a tile: fires at ``at_ps`` with its Response (as Memory.request)."""
    txn = Transaction(Command.READ, 0, max(nbytes, 1), "dma", label, env.now)
    return env.timeout(at_ps - env.now, value=Response(txn, at_ps))


def test_full_buffer_stalls_the_writer_until_a_slot_is_released(ctx):
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    log = []

    def producer():
        for i in range(3):
            yield from buf.reserve()
            log.append((f"reserved {i}", env.now))
            buf.fill(_arrival(env, f"t{i}", env.now), 1024)

    def consumer():
        yield env.timeout(50)
        yield from buf.take()
        log.append(("took t0", env.now))
        yield env.timeout(30)
        buf.release()

    env.process(producer())
    env.process(consumer())
    env.run()
    assert log == [("reserved 0", 0), ("reserved 1", 0), ("took t0", 50), ("reserved 2", 80)]


def test_consumer_takes_tiles_in_fill_order_whenever_they_arrive(ctx):
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    got = []

    def consumer():
        for _ in range(2):
            data = yield from buf.take()
            got.append((data.nbytes, env.now))
            buf.release()

    def producer():
        for nbytes, at in ((10, 10), (20, 5)):  # the second tile arrives first, is consumed second
            yield from buf.reserve()
            buf.fill(_arrival(env, "t", at), nbytes)

    env.process(consumer())
    env.process(producer())
    env.run()
    assert got == [(10, 10), (20, 10)]


def test_a_tile_larger_than_a_slot_is_rejected(ctx):
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    with pytest.raises(ValueError, match="exceeds a tile slot"):
        buf.fill(_arrival(ctx.env, "t", 0), 1025)


def test_a_bank_of_k_urams_moves_9k_bytes_per_cycle():
    four = BufferConfig(banks=2, bank_kib=4 * 36)  # capacity needs exactly 4 URAMs
    assert (four.blocks_per_bank, four.bank_width_bits) == (4, 288)
    wide = BufferConfig(banks=2, bank_kib=4 * 36, width_bits=720)  # 10 URAMs for the width
    assert (wide.blocks_per_bank, wide.bank_width_bits, wide.footprint_kib) == (10, 720, 2 * 10 * 36)
    bram = BufferConfig(banks=2, bank_kib=9, memory="bram")  # 2 BRAM36 of 4.5 KiB
    assert (bram.blocks_per_bank, bram.bank_width_bits) == (2, 144)


def test_a_tile_is_in_once_the_write_port_has_written_it(ctx):
    """4 URAMs: 36 B per cycle. 36,000 B take 1000 cycles = 4 us to write, even when the
    memory delivers them at once; reading them out takes as long."""
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=4 * 36), clock_mhz=250)
    got = []

    def run():
        yield from buf.reserve()
        buf.fill(_arrival(env, "t", 0), 36_000)
        data = yield from buf.take()
        got.append((env.now, data.read_ps))

    env.process(run())
    env.run()
    assert got == [(1000 * CYCLE, 1000 * CYCLE)]


def test_a_slow_memory_sets_the_pace_when_the_port_is_faster(ctx):
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=4 * 36), clock_mhz=250)
    got = []

    def run():
        yield from buf.reserve()
        buf.fill(_arrival(env, "t", 10_000 * CYCLE), 36_000)  # the port would need 1000 cycles
        yield from buf.take()
        got.append(env.now)

    env.process(run())
    env.run()
    assert got == [10_000 * CYCLE]


def test_successive_tiles_use_the_ports_of_successive_banks(ctx):
    """Two banks of two 18,000 B slots (36 B per cycle each): tiles 0 and 1 are written in
    parallel (500 cycles), tiles 2 and 3 after them in the same banks (1000 cycles)."""
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=4 * 36, tile_kib=2 * 36), clock_mhz=250)
    assert buf.cfg.tiles_per_bank == 2 and buf.free == 4
    times = []

    def producer():
        for i in range(4):
            yield from buf.reserve()
            buf.fill(_arrival(env, f"t{i}", 0), 18_000)

    def consumer():
        for _ in range(4):
            yield from buf.take()
            times.append(env.now)
            buf.release()

    env.process(producer())
    env.process(consumer())
    env.run()
    assert times == [500 * CYCLE, 500 * CYCLE, 1000 * CYCLE, 1000 * CYCLE]


def test_a_tile_is_at_most_a_bank():
    assert BufferConfig(banks=2, bank_kib=64, tile_kib=128).tile_bytes == 64 * 1024
    assert BufferConfig(banks=2, bank_kib=64, tile_kib=16).tiles_per_bank == 4
    assert BufferConfig(banks=2, bank_kib=64).tiles_per_bank == 1


def test_a_streamed_tile_is_handed_over_at_once_and_complete_when_it_is_in(ctx):
    """stream_tiles: the consumer gets the tile as soon as it is handed to its slot (time 0)
    and may read it while it arrives; it is complete when the memory's data is in (10 us) or,
    if later, when the write port has written it (36,000 B at 36 B per cycle: 4 us)."""
    env = ctx.env
    cfg = BufferConfig(banks=2, bank_kib=4 * 36, stream_tiles=True)
    buf = BankedBuffer(ctx, "buf", cfg, clock_mhz=250)
    got = []

    def run():
        yield from buf.reserve()
        buf.fill(_arrival(env, "t", 10_000_000), 36_000)
        data = yield from buf.take()
        got.append(("handed", env.now, data.read_ps))
        yield data.complete
        got.append(("complete", env.now))
        buf.release()
        yield from buf.reserve()
        buf.fill(_arrival(env, "u", env.now), 36_000)  # data at once: the port's 4 us bound it
        data = yield from buf.take()
        yield data.complete
        got.append(("port-bound", env.now))

    env.process(run())
    env.run()
    assert got == [("handed", 0, 1000 * CYCLE), ("complete", 10_000_000), ("port-bound", 10_000_000 + 1000 * CYCLE)]
