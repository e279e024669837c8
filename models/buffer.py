"""Banked on-chip buffer (URAM/BRAM) with ping-pong semantics and real back-pressure.

A producer first ``reserve()``s a free bank (it stalls while all banks hold data not
yet consumed), then ``fill()``s it with a tile whose data arrives when its event
fires. The consumer ``take()``s tiles in fill order, waiting for data if needed, and
``release()``s the bank when done with it.
"""

from __future__ import annotations

import simpy

from tlmsim.component import Component, SimContext
from tlmsim.config import BufferConfig


class BankedBuffer(Component):
    """``banks`` banks of ``bank_bytes``; 2 banks make a ping-pong buffer."""

    def __init__(self, ctx: SimContext, name: str, cfg: BufferConfig):
        super().__init__(ctx, name)
        self.cfg = cfg
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

    def occupied_banks(self) -> int:
        """Banks reserved or holding data."""
        return self.cfg.banks - self.free_banks.level

    def _trace_occupancy(self) -> None:
        self.ctx.tracer.counter(f"{self.name} banks in use", self.env.now, self.occupied_banks())
