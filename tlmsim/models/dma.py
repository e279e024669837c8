"""DMA engine: walks a descriptor chain, reading tiles from memory into a buffer.

Like a real descriptor-based DMA it runs ahead of the compute as far as the target
buffer allows: it reserves a bank (stalling while the buffer is full), issues the read
and moves on, so several reads can be in flight and memory latency is hidden. A
descriptor may wait for an event first (e.g. a KV read waits for the KV append).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import simpy

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.payload import Command, Transaction
from tlmsim.engine.ports import InitiatorPort
from tlmsim.engine.protocol import Frame, RepeatUnit
from tlmsim.models.buffer import BankAccess, BankCommand


@dataclass(frozen=True)
class Descriptor:
    """Read ``nbytes`` at ``addr`` of ``memory`` into the next bank."""

    memory: str
    addr: int
    nbytes: int
    label: str
    wait_for: simpy.Event | None = None
    on_issue: Any = None  # callable(now_ps) told when the read is issued
    tile: int = 0  # index of the tile within its op
    step: int = 0  # the program step the read belongs to


class Dma(Component):
    """One DMA channel feeding one banked buffer (``buffer_port`` binds to its write port)."""

    role = "transfer"
    # ``descriptors`` is read in order: where the chain goes on from is ``current``.
    REUSE_STATE = ("descriptors", "current", "activity", "since", "in_flight", "busy_since", "idle_since")
    WIRING = ("ports", "buffer_port", "qos")

    def __init__(self, ctx: SimContext, name: str, memories: Iterable[str], descriptors: Iterable[Descriptor],
                 qos: int = 0):
        """``qos``: the AXI QoS of this DMA's reads (a memory arbitrating by QoS serves higher first)."""
        super().__init__(ctx, name)
        self.qos = qos
        self.ports = {mem: InitiatorPort(name, Transaction) for mem in memories}
        self.buffer_port = InitiatorPort(name, BankAccess)
        self.descriptors = descriptors
        self.current: Descriptor | None = None  # the descriptor being issued
        self.activity = "start"  # dependency | reserve | issue | done
        self.since = 0  # when the current activity began
        self.in_flight = 0
        self.busy_since = 0
        self.idle_since = 0
        self.process = self.start(self.run())

    def run(self):
        """Issue every descriptor in order, respecting buffer space and dependencies."""
        for desc in self.descriptors:
            self.current = desc
            if desc.wait_for is not None and not desc.wait_for.processed:
                self._begin_activity("dependency")
                yield desc.wait_for
                if self.in_flight == 0:  # waiting while reads are in flight is busy time, not a stall
                    self.record("stall:waiting for dependency", max(self.since, self.idle_since), self.env.now,
                                desc.label)
            yield from self._reserve_bank(desc.label)
            desc = self.current  # ``advance`` may have moved it past skipped tiles
            if desc.on_issue is not None:
                desc.on_issue(self.env.now)
            self.buffer_port.request(BankAccess(BankCommand.WRITE, desc.label, desc.nbytes, self._read(desc)))
        self.current = None
        self._begin_activity("done")

    def _begin_activity(self, activity: str) -> None:
        self.activity, self.since = activity, self.env.now

    def _reserve_bank(self, label: str):
        # Waiting while reads are still in flight is not a stall: the DMA is busy then.
        self._begin_activity("reserve")
        yield from self.buffer_port.transport(BankAccess(BankCommand.RESERVE, label))
        if self.in_flight == 0:
            self.record("stall:buffer full", max(self.since, self.idle_since), self.env.now, label)
        self._begin_activity("issue")

    def _read(self, desc: Descriptor) -> simpy.Event:
        """Issue the read; the returned event fires with the memory's response when the data is in."""
        self._begin()
        txn = Transaction(Command.READ, desc.addr, desc.nbytes, self.name, desc.label, self.env.now, self.qos)
        self.stats.add_count(self.ctx.phase, "bytes", desc.nbytes)
        arrived = self.ports[desc.memory].request(txn)
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

    def close_intervals(self) -> None:
        """Account the open busy / stall interval up to now and restart it (at a layer
        boundary, so no interval spans layers and the state repeats layer after layer)."""
        now = self.env.now
        label = self.current.label if self.current else ""
        if self.in_flight:
            self.record("busy", self.busy_since, now, "reads in flight")
            self.busy_since = now
        stall = {"dependency": "stall:waiting for dependency", "reserve": "stall:buffer full"}.get(self.activity)
        if stall is not None and not self.in_flight:
            self.record(stall, max(self.since, self.idle_since), now, label)
            self.since = now
        if not self.in_flight:
            self.idle_since = now

    def boundary_state(self, frame: Frame) -> tuple:
        """Activity and since when (where it records on completion), reads in flight, the
        descriptor being issued (relative work and address), and the open busy or idle time."""
        now = frame.now
        waiting = now - self.since if self.activity in ("dependency", "reserve") else 0  # else unused
        desc = self.current
        where = None if desc is None else (frame.name(desc.label, desc.step), frame.offset(desc.label, desc.addr))
        return (self.activity, waiting, self.in_flight, where,
                now - self.busy_since if self.in_flight else now - self.idle_since)

    def can_advance(self, unit: RepeatUnit) -> bool:
        """False if the descriptor being issued is one of the skipped units."""
        desc = self.current
        return not (desc is not None and self._holds(unit, desc) and unit.first <= desc.tile <= unit.last)

    def advance(self, unit: RepeatUnit) -> None:
        """The read about to be issued, of the unit just before the skipped ones, becomes the
        read of the last skipped unit (its address moves by the skipped strides; the program's
        chain leaves the skipped units out after it)."""
        desc = self.current
        if desc is not None and self._holds(unit, desc) and desc.tile == unit.first - 1:
            self.current = replace(desc, addr=desc.addr + unit.count * unit.stride_bytes, tile=unit.last)

    @staticmethod
    def _holds(unit: RepeatUnit, desc: Descriptor) -> bool:
        return unit.label is not None and desc.label == unit.label and desc.step == unit.step
