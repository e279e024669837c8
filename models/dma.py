"""DMA engine: walks a descriptor chain, reading tiles from memory into a buffer.

Like a real descriptor-based DMA it runs ahead of the compute as far as the target
buffer allows: it reserves a bank (stalling while the buffer is full), issues the read
and moves on, so several reads can be in flight and memory latency is hidden. A
descriptor may wait for an event first (e.g. a KV read waits for the KV append).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import simpy

from tlmsim.component import Component, SimContext
from tlmsim.ports import InitiatorPort
from tlmsim.transaction import Command, Transaction


@dataclass(frozen=True)
class Descriptor:
    """Read ``nbytes`` at ``addr`` of ``memory`` into the next bank; deliver ``payload``."""

    memory: str
    addr: int
    nbytes: int
    label: str
    payload: Any
    wait_for: simpy.Event | None = None
    on_issue: Any = None  # callable(now_ps) told when the read is issued


class Dma(Component):
    """One DMA channel feeding one banked buffer."""

    def __init__(self, ctx: SimContext, name: str, memories: Iterable[str], buffer, descriptors: Iterable[Descriptor]):
        super().__init__(ctx, name)
        self.ports = {mem: InitiatorPort(name, Transaction) for mem in memories}
        self.buffer = buffer
        self.descriptors = descriptors
        self.in_flight = 0
        self.busy_since = 0
        self.idle_since = 0
        self.process = self.env.process(self.run())

    def run(self):
        """Issue every descriptor in order, respecting buffer space and dependencies."""
        for desc in self.descriptors:
            if desc.wait_for is not None and not desc.wait_for.processed:
                yield from self.wait(desc.wait_for, "waiting for dependency", desc.label)
            yield from self._reserve_bank(desc.label)
            if desc.on_issue is not None:
                desc.on_issue(self.env.now)
            self.buffer.fill(self._read(desc), desc.nbytes)

    def _reserve_bank(self, label: str):
        # Waiting while reads are still in flight is not a stall: the DMA is busy then.
        start = self.env.now
        yield self.buffer.reserve()
        if self.in_flight == 0:
            self.record("stall:buffer full", max(start, self.idle_since), self.env.now, label)

    def _read(self, desc: Descriptor) -> simpy.Event:
        """Issue the read; the returned event fires with the payload when the data is in."""
        self._begin()
        txn = Transaction(Command.READ, desc.addr, desc.nbytes, self.name, desc.label, self.env.now)
        self.stats.add_count(self.ctx.phase, "bytes", desc.nbytes)
        arrived = self.ports[desc.memory].request(txn, value=desc.payload)
        arrived.callbacks.append(self._end)
        return arrived

    def _begin(self) -> None:
        if self.in_flight == 0:
            self.busy_since = self.env.now
        self.in_flight += 1

    def _end(self, _event=None) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle_since = self.env.now
            self.record("busy", self.busy_since, self.env.now, "reads in flight")
