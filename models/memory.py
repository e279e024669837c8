"""Off-chip memory (DDR4 DIMMs or HBM2 pseudo-channels) as a TLM target.

A request's bytes are split over the channels by the address interleave. Each channel
serves its share first-come first-served at its peak bandwidth (``bandwidth_gbps /
channels``), in whole bursts; the request completes ``latency_ns`` after its last
channel finished. The channel schedule is kept as "free at" times so one request
costs O(channels) arithmetic and a single SimPy timeout, instead of one event per
burst: the same answer as serving bursts one by one in FCFS order.

DRAM command timing (row misses, refresh, turnaround) is not modelled here yet: the
bandwidth is the data-sheet peak, so results are an upper bound on memory speed.
"""

from __future__ import annotations

import functools

from tlmsim.component import Component, SimContext
from tlmsim.config import MemoryConfig
from tlmsim.ports import TargetPort
from tlmsim.timebase import ns_to_ps, transfer_ps
from tlmsim.transaction import Transaction


class Memory(Component):
    """All channels of one memory, reachable through one target port."""

    def __init__(self, ctx: SimContext, name: str, cfg: MemoryConfig):
        super().__init__(ctx, name)
        self.cfg = cfg
        self.channel_gbps = cfg.bandwidth_gbps / cfg.channels
        self.latency_ps = ns_to_ps(cfg.latency_ns)
        self.channel_free_ps = [0] * cfg.channels
        self.target = TargetPort(name, Transaction, self.transport, self.request)

    def transport(self, txn: Transaction):
        """Blocking transport: serve ``txn``; returns its completion time in ps."""
        done = yield self.request(txn)
        return done

    def request(self, txn: Transaction, value=None):
        """Non-blocking transport: reserve the channels now; the returned event fires at
        completion with ``value`` (default: the completion time). One event per request."""
        if txn.addr + txn.nbytes > self.cfg.capacity_bytes:
            raise ValueError(f"{self.name}: access [{txn.addr}, {txn.addr + txn.nbytes}) beyond capacity")
        start = self.env.now
        done = self.schedule(txn)
        self.stats.add_count(self.ctx.phase, f"{txn.command.value}_bytes", txn.nbytes)
        self.ctx.tracer.slice(self.name, "busy", txn.label, start, done,
                              bytes=txn.nbytes, command=txn.command.value, stream=txn.stream)
        return self.env.timeout(done - start, value=done if value is None else value)

    def schedule(self, txn: Transaction) -> int:
        """Reserve channel time for ``txn`` and return when its data is complete."""
        now, free = self.env.now, self.channel_free_ps
        last = now
        busy = 0
        for channel, nbytes in self.split(txn.addr, txn.nbytes):
            begin = free[channel] if free[channel] > now else now
            end = begin + self.channel_ps(nbytes)
            free[channel] = end
            busy += end - begin
            last = end if end > last else last
        self.stats.add_time(self.ctx.phase, "busy", busy)
        return last + self.latency_ps

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (few distinct sizes; lives as long as the model)
    def channel_ps(self, nbytes: int) -> int:
        """Time one channel needs for ``nbytes``, in whole bursts."""
        bursts = -(-nbytes // self.cfg.burst_bytes)
        return transfer_ps(bursts * self.cfg.burst_bytes, self.channel_gbps)

    def split(self, addr: int, nbytes: int) -> list[tuple[int, int]]:
        """Bytes of [addr, addr+nbytes) per channel under round-robin interleaving."""
        gran, channels = self.cfg.interleave_bytes, self.cfg.channels
        first_unit, last_unit = addr // gran, (addr + nbytes - 1) // gran
        units = last_unit - first_unit + 1
        shares = [0] * channels
        full_rounds, extra = divmod(units, channels)
        for i in range(channels):
            shares[(first_unit + i) % channels] = full_rounds * gran + (gran if i < extra else 0)
        # The first and last units may be partial.
        shares[first_unit % channels] -= addr - first_unit * gran
        shares[last_unit % channels] -= (last_unit + 1) * gran - (addr + nbytes)
        return [(ch, b) for ch, b in enumerate(shares) if b > 0]

    def busy_fraction(self, phase: str, duration_ps: int) -> float:
        """Average channel utilisation over ``duration_ps`` of ``phase``."""
        busy = self.stats.time_ps[phase]["busy"]
        return busy / (duration_ps * self.cfg.channels) if duration_ps else 0.0
