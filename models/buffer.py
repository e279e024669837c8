"""Banked on-chip buffer (URAM/BRAM) with ping-pong semantics and real back-pressure.

A producer first ``reserve()``s a free bank (it stalls while all banks hold data not
yet consumed), then ``fill()``s it with a tile whose data arrives when its event
fires. The consumer ``take()``s tiles in fill order, waiting for data if needed, and
``release()``s the bank when done with it.

Each bank is a row of URAM/BRAM blocks side by side, so it moves
``cfg.bank_width_bits`` per clock on its write port and as much on its read port:
``fill_ps`` / ``drain_ps`` give the time a tile needs at that rate, the bound a DMA
filling the bank or a PE array reading it cannot beat.
"""

from __future__ import annotations

import simpy

from tlmsim.component import Component, SimContext
from tlmsim.config import BufferConfig
from tlmsim.timebase import cycles_to_ps


class BankedBuffer(Component):
    """``banks`` banks of ``bank_bytes``; 2 banks make a ping-pong buffer."""

    def __init__(self, ctx: SimContext, name: str, cfg: BufferConfig, clock_mhz: float | None = None):
        super().__init__(ctx, name)
        self.cfg = cfg
        self.clock_mhz = clock_mhz  # the fabric clock of the bank ports; None = ports not modelled
        self.bank_bytes = cfg.bank_bytes
        self.free_banks = simpy.Container(self.env, capacity=cfg.banks, init=cfg.banks)
        self.filled = simpy.Store(self.env)  # events of tiles in fill order

    def reserve(self):
        """Event that fires when a bank is free for the producer."""
        return self.free_banks.get(1)

    def fill(self, data_ready: simpy.Event, nbytes: int) -> None:
        """Hand the reserved bank a tile whose data is complete when ``data_ready`` fires."""
        if nbytes > self.bank_bytes:
            raise ValueError(f"{self.name}: tile of {nbytes} B exceeds a bank of {self.bank_bytes} B")
        self.filled.put(data_ready)
        self._trace_occupancy()

    def take(self):
        """Generator: wait for the next tile in order and return its payload."""
        data_ready = yield self.filled.get()
        return (yield data_ready)

    def release(self) -> None:
        """Free the bank of the tile the consumer finished."""
        self.free_banks.put(1)
        self._trace_occupancy()

    def port_bytes_per_cycle(self) -> int:
        """Bytes one bank port moves per clock (the blocks of a bank side by side)."""
        return self.cfg.bank_width_bits // 8

    def port_gbps(self) -> float:
        """Peak GB/s of one bank port at the fabric clock."""
        return self.port_bytes_per_cycle() * self.clock_mhz / 1000 if self.clock_mhz else float("inf")

    def fill_ps(self, nbytes: int) -> int:
        """Shortest time to write ``nbytes`` into one bank through its write port."""
        if not self.clock_mhz:
            return 0
        return cycles_to_ps(-(-nbytes // self.port_bytes_per_cycle()), self.clock_mhz)

    def drain_ps(self, nbytes: int) -> int:
        """Shortest time to read ``nbytes`` out of one bank (the read port is as wide)."""
        return self.fill_ps(nbytes)

    def occupied_banks(self) -> int:
        """Banks reserved or holding data."""
        return self.cfg.banks - self.free_banks.level

    def state(self, now: int) -> tuple:
        """Free banks, waiting producers and consumers, and when each filled tile's data is in
        (relative to ``now``)."""
        return (self.free_banks.level, len(self.free_banks.get_queue), len(self.filled.get_queue),
                tuple(_due(event, now) for event in self.filled.items))

    def _trace_occupancy(self) -> None:
        self.ctx.tracer.counter(f"{self.name} banks in use", self.env.now, self.occupied_banks())


def _due(event: simpy.Event, now: int):
    """Time until a tile's data is in, relative to ``now`` ("in" once it is)."""
    if event.processed:
        return "in"
    return getattr(event, "due_ps", now - 1) - now  # due_ps: set by Memory.request
