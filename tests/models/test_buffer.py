"""Banked buffer: a full buffer stalls its producer until the consumer releases a bank."""

from tlmsim.config import BufferConfig
from tlmsim.models.buffer import BankedBuffer


def test_full_buffer_stalls_the_writer_until_a_bank_is_released(ctx):
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    log = []

    def producer():
        for i in range(3):
            yield from buf.reserve()
            log.append((f"reserved {i}", env.now))
            ready = env.event()
            buf.fill(ready, 1024)
            ready.succeed(i)

    def consumer():
        yield env.timeout(50)
        tile = yield from buf.take()
        log.append((f"took {tile}", env.now))
        yield env.timeout(30)
        buf.release()

    env.process(producer())
    env.process(consumer())
    env.run()
    assert log == [("reserved 0", 0), ("reserved 1", 0), ("took 0", 50), ("reserved 2", 80)]


def test_consumer_waits_for_data_in_fill_order(ctx):
    env = ctx.env
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    first, second = env.event(), env.event()
    got = []

    def consumer():
        for _ in range(2):
            tile = yield from buf.take()
            got.append((tile, env.now))
            buf.release()

    def producer():
        for event in (first, second):
            yield from buf.reserve()
            buf.fill(event, 10)
        yield env.timeout(5)
        second.succeed("B")  # arrives first, but is consumed second
        yield env.timeout(5)
        first.succeed("A")

    env.process(consumer())
    env.process(producer())
    env.run()
    assert got == [("A", 10), ("B", 10)]


def test_tile_larger_than_a_bank_is_rejected(ctx):
    import pytest

    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    with pytest.raises(ValueError, match="exceeds a bank"):
        buf.fill(ctx.env.event(), 1025)
