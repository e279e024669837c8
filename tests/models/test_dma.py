"""DMA: prefetches into free banks and stalls only when the buffer is full."""

from tlmsim.config import BufferConfig, MemoryConfig
from tlmsim.engine.ports import connect
from tlmsim.models.buffer import BankedBuffer
from tlmsim.models.dma import Descriptor, Dma
from tlmsim.models.memory import Memory


def test_dma_runs_ahead_by_the_number_of_banks(ctx):
    env = ctx.env
    mem = Memory(ctx, "mem", MemoryConfig(channels=1, bandwidth_gbps=1.0, latency_ns=0, burst_bytes=1,
                                          interleave_bytes=4096, capacity_gib=1))
    buf = BankedBuffer(ctx, "buf", BufferConfig(banks=2, bank_kib=1))
    issued = []
    descs = [Descriptor("mem", i * 1000, 1000, f"t{i}", on_issue=lambda now, i=i: issued.append((i, now)))
             for i in range(4)]
    dma = Dma(ctx, "dma", ["mem"], descs)
    connect(dma.ports["mem"], mem.target)
    connect(dma.buffer_port, buf.write_port)
    consumed = []

    def consumer():
        for _ in range(4):
            data = yield from buf.take()
            yield env.timeout(5_000_000)  # 5 us of compute per tile
            consumed.append((data.nbytes, env.now))
            buf.release()

    env.process(consumer())
    env.run()
    # 1000 B at 1 GB/s = 1 us per tile. Tiles 0 and 1 are issued at once (2 banks);
    # tile 2 only when tile 0's bank is released (1 us + 5 us), tile 3 after tile 1's.
    assert issued == [(0, 0), (1, 0), (2, 6_000_000), (3, 11_000_000)]
    assert consumed == [(1000, 6_000_000), (1000, 11_000_000), (1000, 16_000_000), (1000, 21_000_000)]
    assert dma.stats.time_ps["test"]["stall:buffer full"] == (6_000_000 - 2_000_000) + (11_000_000 - 7_000_000)
