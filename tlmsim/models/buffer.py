"""Banked on-chip buffer (URAM/BRAM) with ping-pong semantics and real back-pressure.

Two directed ports, one per side. The producer (a DMA) sends ``RESERVE`` on
``write_port`` to take a free tile slot (it stalls while all slots hold data not yet
consumed), then ``WRITE`` to hand it a tile whose data arrives when the memory's
response fires. The consumer (the PE array) sends ``READ`` on ``read_port`` to take the
tiles in fill order, waiting for data if needed, and ``RELEASE`` to free the slot when
done with it.

Each bank is a row of URAM/BRAM blocks side by side, so it moves
``cfg.bank_width_bits`` per clock on its write port and as much on its read port:
``fill_ps`` / ``drain_ps`` give the time a tile needs at that rate. A tile is in no
sooner than its bank's write port has written it, and the PE array (or decoder) cannot
stream it out faster than the read port delivers it (``TileData.read_ps``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import simpy
from pydantic import Field

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.configbase import ON_CHIP_KIB, Section
from tlmsim.engine.payload import Response
from tlmsim.engine.ports import TargetPort
from tlmsim.engine.protocol import Frame
from tlmsim.engine.timebase import cycles_to_ps
from tlmsim.engine.units import ceil_div

# One physical block per kind: (KiB, data bits per port per cycle). XCU280 UltraRAM is
# 4K x 72 bit (288 Kb); a BRAM36 in simple dual-port mode is 512 x 72 bit (36 Kb). Both
# have one write and one read port per cycle (AMD UG573, "UltraScale Architecture Memory
# Resources"; DS963 for the counts).
ON_CHIP_BLOCKS = {"uram": (36.0, 72), "bram": (4.5, 72)}


class BufferConfig(Section):
    """A banked on-chip buffer (ping-pong with 2 banks), each bank a row of URAM/BRAM blocks.

    A bank reads (and, on its other port, writes) ``bank_width_bits`` per cycle: the
    blocks side by side. ``width_bits`` widens a bank beyond what its capacity needs
    (more blocks, each partly used) so it can keep up with a fast producer. The
    controller cuts operands into tiles of at most ``tile_kib`` (at most, and by default, a bank);
    a bank holds ``bank_kib // tile_kib`` of them, and successive tiles go to successive
    banks so that their writes and reads use different ports.
    """

    banks: int = Field(2, ge=1, le=64)
    bank_kib: float = Field(**ON_CHIP_KIB)
    memory: Literal["uram", "bram"] = "uram"
    width_bits: int | None = Field(None, ge=1, le=65536,
                                   description="bank data width; None = blocks that hold bank_kib")
    tile_kib: float | None = Field(None, **ON_CHIP_KIB, description="largest tile (at most a bank); None = one bank")
    stream_tiles: bool = Field(False, description="the consumer may start a tile while it is still arriving (a "
                               "bank's read port works while its write port fills it): it finishes no sooner than "
                               "the tile is in; false = a tile is read only once all of it is in")

    @property
    def bank_bytes(self) -> int:
        """Bytes per bank."""
        return int(self.bank_kib * 1024)

    @property
    def tile_bytes(self) -> int:
        """Largest tile the controller cuts for this buffer (a tile sits in one bank)."""
        return int(min(self.tile_kib or self.bank_kib, self.bank_kib) * 1024)

    @property
    def tiles_per_bank(self) -> int:
        """Tiles one bank holds at once."""
        return self.bank_bytes // self.tile_bytes

    @property
    def blocks_per_bank(self) -> int:
        """Physical blocks of one bank: enough for its capacity and for its width."""
        block_kib, block_bits = ON_CHIP_BLOCKS[self.memory]
        for_capacity = ceil_div(self.bank_kib, block_kib)  # kib may be fractional
        for_width = ceil_div(self.width_bits or 0, block_bits)
        return int(max(for_capacity, for_width))

    @property
    def bank_width_bits(self) -> int:
        """Bits a bank moves per cycle and port."""
        return self.blocks_per_bank * ON_CHIP_BLOCKS[self.memory][1]

    @property
    def footprint_kib(self) -> float:
        """On-chip memory the buffer occupies (whole blocks)."""
        return self.banks * self.blocks_per_bank * ON_CHIP_BLOCKS[self.memory][0]


class ActivationBufferConfig(Section):
    """On-chip activations: a layer's input and output rows must fit a token chunk."""

    capacity_kib: float = Field(**ON_CHIP_KIB)
    memory: Literal["uram", "bram"] = "uram"


class BankCommand(Enum):
    """What a producer or consumer asks of a banked buffer."""

    RESERVE = "reserve"  # producer, blocking: take a free bank
    WRITE = "write"  # producer: the reserved bank receives a tile (data in when ``arrival`` fires)
    READ = "read"  # consumer, blocking: the next tile, once its data is in
    RELEASE = "release"  # consumer: the bank of the tile just used is free again


@dataclass(frozen=True)
class BankAccess:
    """One request to a banked buffer."""

    command: BankCommand
    label: str
    nbytes: int = 0
    arrival: simpy.Event | None = None  # WRITE: the memory's response event for the tile


@dataclass(frozen=True)
class TileData:
    """The answer to a READ: the tile is in its bank, or, with ``stream_tiles``, arriving
    (``complete`` fires once all of it is in); streaming it out takes ``read_ps``."""

    nbytes: int
    read_ps: int
    complete: simpy.Event | None = None


@dataclass(frozen=True)
class Filled:
    """A tile handed to a slot: its data arrives when ``arrival`` fires (the memory's
    ``Response``); the bank's write port takes it from ``handed_ps`` on."""

    arrival: simpy.Event
    handed_ps: int
    nbytes: int
    bank: int


class BankedBuffer(Component):
    """``banks`` banks of ``tiles_per_bank`` tile slots; 2 banks of one tile: ping-pong.

    One producer and one consumer (a DMA and the PE array). A tile is in once the memory
    has delivered it and the bank's write port has written it (``fill_ps`` after the
    port was free); streaming it out through the read port takes ``drain_ps``. Waiting
    costs a SimPy event only when it really waits.
    """

    role = "buffer"
    REUSE_STATE = ("free", "filled", "_producer", "_consumer", "taking", "write_free", "next_bank", "reading")
    WIRING = ("cfg", "clock_mhz", "bank_bytes", "tile_bytes", "write_port", "read_port")

    def __init__(self, ctx: SimContext, name: str, cfg: BufferConfig, clock_mhz: float | None = None):
        super().__init__(ctx, name)
        self.cfg = cfg
        self.clock_mhz = clock_mhz  # the fabric clock of the bank ports; None = ports not modelled
        self.bank_bytes, self.tile_bytes = cfg.bank_bytes, cfg.tile_bytes
        self.free = cfg.banks * cfg.tiles_per_bank  # tile slots neither reserved nor holding data
        self.filled: deque[Filled] = deque()  # tiles handed to a slot, in order
        self._producer: simpy.Event | None = None  # fires when a slot is released
        self._consumer: simpy.Event | None = None  # fires when a tile is filled
        self.taking: Filled | None = None  # the tile the consumer waits for
        self.write_free = [0] * cfg.banks  # when each bank's write port has written its last tile taken
        self.next_bank = 0  # the bank the next tile goes to
        self.reading: tuple[int, int, str] | None = None  # (start, ps, label) of the tile streaming out
        self.write_port = TargetPort(name, BankAccess, self._serve_producer, self._notify_producer)
        self.read_port = TargetPort(name, BankAccess, self._serve_consumer, self._notify_consumer)

    def _serve_producer(self, access: BankAccess):
        _expect(access, BankCommand.RESERVE, self.name)
        yield from self.reserve()

    def _notify_producer(self, access: BankAccess) -> None:
        _expect(access, BankCommand.WRITE, self.name)
        self.fill(access.arrival, access.nbytes)

    def _serve_consumer(self, access: BankAccess):
        _expect(access, BankCommand.READ, self.name)
        data = yield from self.take()
        self.reading = (self.env.now, data.read_ps, access.label)
        return data

    def _notify_consumer(self, access: BankAccess) -> None:
        _expect(access, BankCommand.RELEASE, self.name)
        if self.reading is not None:  # the read port streamed the tile out: the buffer's busy time
            start, read_ps, label = self.reading
            self.record("busy", start, start + read_ps, label)
            self.reading = None
        self.release()

    def reserve(self):
        """Generator: wait until a tile slot is free, then hold it for the producer."""
        while not self.free:
            self._producer = self.env.event()
            yield self._producer
        self.free -= 1

    def fill(self, arrival: simpy.Event, nbytes: int) -> None:
        """Hand the reserved slot a tile whose data the memory delivers when ``arrival`` fires;
        the bank's write port writes it as it comes, no faster than its width allows."""
        if nbytes > self.tile_bytes:
            raise ValueError(f"{self.name}: tile of {nbytes} B exceeds a tile slot of {self.tile_bytes} B")
        bank, self.next_bank = self.next_bank, (self.next_bank + 1) % self.cfg.banks
        self.filled.append(Filled(arrival, self.env.now, nbytes, bank))
        self._trace_occupancy()
        if self._consumer is not None:
            waiting, self._consumer = self._consumer, None
            waiting.succeed()

    def take(self):
        """Generator: wait for the next tile in order to be in its bank (with ``stream_tiles``:
        to be handed over); returns its ``TileData``."""
        while not self.filled:
            self._consumer = self.env.event()
            yield self._consumer
        tile = self.taking = self.filled.popleft()
        if self.cfg.stream_tiles:
            return TileData(tile.nbytes, self.drain_ps(tile.nbytes), self._complete(tile))
        yield tile.arrival
        # Tiles are taken in the order they were filled, so the bank's previous tile is written:
        # its write port took this one no sooner than it was handed over and the port was free.
        nbytes, bank = tile.nbytes, tile.bank
        port_done = max(tile.handed_ps, self.write_free[bank]) + self.fill_ps(nbytes)
        written = self.write_free[bank] = max(port_done, _response(tile.arrival).done_ps)
        if written > self.env.now:  # the write port is slower than the memory
            yield self.env.timeout(written - self.env.now)
        self.taking = None
        return TileData(nbytes, self.drain_ps(nbytes))

    def _complete(self, tile: Filled) -> simpy.Event:
        """An event that fires once ``tile`` is in: its data arrived and its write port wrote it."""
        complete = self.env.event()

        def arrived(_event=None) -> None:
            port_done = max(tile.handed_ps, self.write_free[tile.bank]) + self.fill_ps(tile.nbytes)
            written = self.write_free[tile.bank] = max(port_done, _response(tile.arrival).done_ps)
            self.taking = None
            if written > self.env.now:
                self.env.timeout(written - self.env.now).callbacks.append(lambda _e: complete.succeed())
            else:
                complete.succeed()

        if tile.arrival.processed:
            arrived()
        else:
            tile.arrival.callbacks.append(arrived)
        return complete

    def release(self) -> None:
        """Free the slot of the tile the consumer finished."""
        self.free += 1
        self._trace_occupancy()
        if self._producer is not None:
            waiting, self._producer = self._producer, None
            waiting.succeed()

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
        return cycles_to_ps(ceil_div(nbytes, self.port_bytes_per_cycle()), self.clock_mhz)

    def drain_ps(self, nbytes: int) -> int:
        """Shortest time to read ``nbytes`` out of one bank (the read port is as wide)."""
        return self.fill_ps(nbytes)

    def occupied_slots(self) -> int:
        """Tile slots reserved or holding data."""
        return self.cfg.banks * self.cfg.tiles_per_bank - self.free

    def boundary_state(self, frame: Frame) -> tuple:
        """Free slots, waiting producer and consumer, when the data of each filled tile and of
        the tile being taken is in (relative to the boundary), and how long each bank's write
        port is still busy, starting from the bank the next tile goes to (banks are alike)."""
        banks = self.cfg.banks
        return (self.free, self._producer is not None, self._consumer is not None,
                tuple(self._tile_state(tile, frame) for tile in self.filled),
                None if self.taking is None else self._tile_state(self.taking, frame),
                None if self.reading is None else (frame.time(self.reading[0]), self.reading[1],
                                                   frame.name(self.reading[2])),
                tuple(max(0, self.write_free[(self.next_bank + i) % banks] - frame.now) for i in range(banks)))

    def _tile_state(self, tile: Filled, frame: Frame) -> tuple:
        """A handed-over tile relative to the boundary: whether its data is in and when (times
        before the boundary as 0: they no longer matter), when its write port could be done at
        the earliest, its size and its bank counted from the next one to fill."""
        now = frame.now
        arrived = tile.arrival.processed
        data = max(_response(tile.arrival).done_ps - now, 0) if arrived else None
        port = max(tile.handed_ps + self.fill_ps(tile.nbytes) - now, 0)
        return arrived, data, port, tile.nbytes, (tile.bank - self.next_bank) % self.cfg.banks

    def _trace_occupancy(self) -> None:
        if self.ctx.tracer.enabled:
            self.ctx.tracer.counter(f"{self.name} tiles held", self.env.now, self.occupied_slots())


def _response(arrival: simpy.Event) -> Response:
    """The memory's response a tile's arrival carries (once it has fired)."""
    response = arrival.value
    if not isinstance(response, Response):
        raise TypeError(f"a buffer tile's arrival carries {type(response).__name__}, not a memory Response")
    return response




def _expect(access: BankAccess, command: BankCommand, name: str) -> None:
    if access.command is not command:
        raise ValueError(f"{name}: {access.command.value} sent to the port that takes {command.value}")
