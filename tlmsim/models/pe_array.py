"""The N:M sparse PE array: rows x cols output-stationary PEs (rtl/nm_pe.v each).

Each PE computes one output over k inputs; an array pass covers ``rows`` tokens x
``cols`` outputs. Per beat a PE consumes ``lanes`` N:M groups (``m * lanes`` dense
inputs, ``n * lanes`` multiplies); dense weights use the same multipliers on
``n * lanes`` inputs per beat; weights wider than the multiplier take
``ceil(bits / native_weight_bits)`` beats. Passes and tiles stream back to back
through the pipelined array, so a tile occupies the array for ``passes * beats * II``
cycles and an op's results are complete a fill/drain time after its last beat:

    fill = latency(PE) - 1 + (rows - 1) + (cols - 1)   (PE pipeline + systolic skew)

The drain overlaps the next op's first beats. II and the PE latency come from
``pe_core`` — the same parameters the RTL is built with, checked cycle-exactly by
tests/rtl (one 1-pass tile on a 1x1 array takes exactly ``dot_cycles``). Weight
tiles stream through the decoder in lockstep: a tile takes max(decode, compute).

Ports: ``commands`` (a queue of frozen ``PeCommand``s from the controller), one read
port per operand buffer (``operand_ports``), ``decoder_port`` (the weight stream) and
``done_port`` (a ``Completion`` per command once its results are out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np
import simpy
from pydantic import Field, model_validator

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.configbase import Section
from tlmsim.engine.errors import ConfigError
from tlmsim.engine.payload import Completion
from tlmsim.engine.ports import InitiatorPort, QueueTarget
from tlmsim.engine.protocol import Frame, RepeatUnit
from tlmsim.engine.timebase import cycles_to_ps
from tlmsim.engine.units import ceil_div
from tlmsim.models.buffer import BankAccess, BankCommand
from tlmsim.models.decoder import DecodeStream
from tlmsim.models.pe_core import PeParams, beats_for, initiation_interval, latency_cycles
from tlmsim.models.tiling import Tile
from tlmsim.workloads.formats import WeightFormat


class PeArrayConfig(Section):
    """Array of rows x cols N:M PEs (the RTL in rtl/ is one PE with these n, m, lanes)."""

    rows: int = Field(ge=1, le=4096, description="token rows computed in parallel")
    cols: int = Field(ge=1, le=4096, description="output columns computed in parallel")
    n: int = Field(ge=1, le=255, description="kept weights per group the PE mux handles")
    m: int = Field(ge=2, le=256, description="group size of the N:M pattern")
    lanes: int = Field(ge=1, le=4096, description="N:M groups per PE per cycle")
    native_weight_bits: int = Field(4, ge=1, le=16,
                                    description="multiplier weight width; wider weights take more beats")
    ternary: bool = Field(True, description="multiplication-free mode for ternary weights")
    pe: Literal["int4", "ternary"] = Field(
        "int4", description="PE build (rtl/nm_pe.v WMODE): int4 multipliers (run INT and ternary weights) or the "
                            "multiply-free ternary PE (ternary weights only, no product DSPs)")
    pack: Literal[1, 2] = Field(1, description="token rows per PE sharing each weight's DSP (rtl PACK; rows counts "
                                               "token rows, so the array has rows / pack x cols PEs; timing unchanged)")
    map_to_sub_array: bool = Field(True, description="run each op on the sub-array that finishes it soonest")

    @model_validator(mode="after")
    def _n_below_m(self):
        if self.pe == "ternary" and (self.pack != 1 or not self.ternary):
            raise ValueError("pe=ternary is the multiply-free PE: it needs ternary: true and pack: 1; "
                             "use pe: int4 for packed or INT weights")
        if self.rows % self.pack:
            raise ValueError(f"rows={self.rows} is not a multiple of pack={self.pack} (a packed PE computes "
                             f"{self.pack} token rows); use an even number of rows or pack: 1")
        if self.n >= self.m:
            raise ValueError(f"n={self.n} must be < m={self.m} (N:M keeps N of every M weights)")
        if self.m & (self.m - 1):
            raise ValueError(f"m={self.m} must be a power of two (indices are log2(m) bits)")
        return self


def check_runs(cfg: PeArrayConfig, fmt: WeightFormat, where: str) -> None:
    """Refuse a weight format this PE array was not built for (ConfigError naming the fix).

    Applied to every format the workload really holds (a compressed model's manifest may
    differ from ``workload.weight_format``), so no format runs on hardware without it.
    """
    if fmt.sparse and (fmt.n, fmt.m) != (cfg.n, cfg.m):
        raise ConfigError(f"{where} is {fmt.n}:{fmt.m} sparse but the PE array is built for "
                          f"{cfg.n}:{cfg.m}; set accelerator.pe_array.n/m to {fmt.n}/{fmt.m}")
    if fmt.encoding == "ternary" and not cfg.ternary:
        raise ConfigError(f"{where} is ternary but accelerator.pe_array.ternary is false; "
                          f"set it to true or use an INT format")
    # The multiply-free PE refuses INT weights; attention's activation x KV products (fp16
    # "values") are charged to the array as if it ran them (docs/cost.md names the missing unit).
    if fmt.encoding == "int" and cfg.pe == "ternary":
        raise ConfigError(f"{where} is {fmt.name} but accelerator.pe_array.pe is ternary (multiply-free, ternary "
                          f"weights only); set pe: int4 or use a ternary format")


class Operands(Enum):
    """Where a matmul's streamed operand comes from (each buffer has its own read port)."""

    WEIGHTS = "weights"  # the weight buffer; tiles pass the decoder
    KV = "kv"  # the KV buffer; tiles bypass the decoder


@dataclass(frozen=True)
class PeCommand:
    """Run ``tiles`` of one op on operands from ``operands``; ``work`` is the issuer's id
    for it (its step first), returned in the ``Completion``."""

    label: str
    fmt: WeightFormat
    tiles: tuple[Tile, ...]
    operands: Operands
    work: tuple[int, Hashable]

    @property
    def decoded(self) -> bool:
        """Weight tiles pass the decoder; KV tiles bypass it."""
        return self.operands is Operands.WEIGHTS


class PeArray(Component):
    """Executes matmul commands tile by tile."""

    role = "compute"
    REUSE_STATE = ("cmd", "tile_index", "skip", "activity", "since", "incoming", "draining")
    WIRING = ("cfg", "clock_mhz", "decoder_latency_cycles", "commands", "operand_ports", "decoder_port", "done_port",
              "on_tile_start", "supply_ps")
    CACHES = ("_tile_times", "_params", "_shapes", "_full_cycles")

    def __init__(self, ctx: SimContext, name: str, cfg: PeArrayConfig, clock_mhz: float, decoder_latency_cycles: int,
                 on_tile_start: Callable[[PeCommand, int], None] | None = None,
                 supply_ps: Mapping[Operands, Callable[[Tile], int]] | None = None):
        """``supply_ps``: per operand source, the shortest time its path (bank read port,
        decoder) can deliver a tile, as the system builder wires it; the sub-array choice
        counts it, since a tile takes max(compute, supply)."""
        super().__init__(ctx, name)
        self.supply_ps = dict(supply_ps or {})
        self.cfg = cfg
        self.clock_mhz = clock_mhz
        self.decoder_latency_cycles = decoder_latency_cycles  # added once to a decoded op's drain
        self.commands = QueueTarget(ctx.env, name, PeCommand)
        self.operand_ports = {source: InitiatorPort(name, BankAccess) for source in Operands}
        self.decoder_port = InitiatorPort(name, DecodeStream)
        self.done_port = InitiatorPort(name, Completion)
        self.on_tile_start = on_tile_start  # called with (command, tile index) before each tile
        self.cmd: PeCommand | None = None  # the command being executed
        self.tile_index = 0
        self.skip: tuple[int, int] | None = None  # tiles of ``cmd`` left out by steady-state reuse
        self.activity = "idle"  # idle | operands | compute
        self.since = 0  # when the current activity began
        self.incoming: simpy.Event | None = None  # the request for the next command while idle
        self.draining: list[tuple[int, str]] = []  # (when its results are out, label) of finished commands
        self._tile_times: dict[tuple, int] = {}
        self._params: dict[WeightFormat, PeParams] = {}
        self._shapes: dict[tuple, tuple] = {}
        self._full_cycles: dict[tuple, int] = {}  # (format, tile shape) -> cycles on the whole array
        self.process = self.start(self.run())

    def run(self):
        """Take commands in order; for each tile wait for operands, then compute."""
        while True:
            self.cmd, self.skip, self.activity = None, None, "idle"
            self.incoming = self.commands.get()
            cmd = self.cmd = yield self.incoming
            self.incoming = None
            operands = self.operand_ports[cmd.operands]
            shape = self.sub_array(cmd.fmt, cmd.tiles, cmd.operands)
            for index in tile_order(len(cmd.tiles), self._skipped):
                self.tile_index, tile = index, cmd.tiles[index]
                if self.on_tile_start is not None:
                    self.on_tile_start(cmd, index)
                self.activity, self.since = "operands", self.env.now
                data = yield from operands.transport(BankAccess(BankCommand.READ, cmd.label))
                self.record("stall:waiting for operands", self.since, self.env.now, cmd.label)
                yield from self._compute(cmd, tile, data.read_ps, shape)
                if data.complete is not None and not data.complete.processed:  # streamed: the rest is late
                    self.activity, self.since = "operands", self.env.now
                    yield data.complete
                    self.record("stall:waiting for operands", self.since, self.env.now, cmd.label)
                operands.request(BankAccess(BankCommand.RELEASE, cmd.label))
            self._finish_after_drain(cmd, shape)

    def _skipped(self) -> tuple[int, int] | None:
        return self.skip

    def _finish_after_drain(self, cmd: PeCommand, shape: tuple[int, int]) -> None:
        drain = self.fill_cycles(self.pe_params(cmd.fmt), shape) + (self.decoder_latency_cycles if cmd.decoded else 0)
        drain_ps = cycles_to_ps(drain, self.clock_mhz)
        self.draining.append((self.env.now + drain_ps, cmd.label))
        self.env.timeout(drain_ps, value=cmd).callbacks.append(self._drained)

    def _drained(self, event: simpy.Event) -> None:
        """The last results of a command left the array: tell the issuer."""
        cmd = event.value
        self.draining.remove((self.env.now, cmd.label))
        self.done_port.request(Completion(cmd.work, cmd.label, self.env.now))

    def boundary_state(self, frame: Frame) -> tuple:
        """Activity and since when, the command and tile (relative to the boundary), its skipped
        tiles, queued commands, a command on its way in, and the commands still draining."""
        cmd, incoming = self.cmd, self.incoming
        since = frame.time(self.since) if self.activity != "idle" else 0  # an idle array records nothing
        tile = self.tile_index if cmd is None else frame.index(cmd.label, self.tile_index)
        arriving = frame.name(incoming.value.label) if incoming is not None and incoming.triggered else None
        return (self.activity, since, None if cmd is None else frame.name(cmd.label), tile, self.skip,
                tuple(frame.name(c.label) for c in self.commands.queued()), arriving,
                tuple((frame.time(due), frame.name(label)) for due, label in self.draining))

    def advance(self, unit: RepeatUnit) -> None:
        """Leave the skipped tiles of the running command out (the tile loop reads ``skip``)."""
        if self.cmd is not None and unit.label == self.cmd.label and unit.step == self.cmd.work[0]:
            self.skip = (unit.first, unit.last)

    def _compute(self, cmd: PeCommand, tile: Tile, read_ps: int, shape: tuple[int, int]):
        """Stream one tile out of its bank (``read_ps`` at the bank's read port), through the
        decoder if it holds weights, into the array: the slowest of the three sets the pace."""
        self.activity = "compute"
        start = self.since = self.env.now
        compute = self._tile_ps(cmd.fmt, tile, shape)
        fed = max(compute, read_ps)
        if cmd.decoded:  # the decoder streams the tile in lockstep: max(read, decode, compute)
            decode = yield from self.decoder_port.transport(
                DecodeStream(cmd.label, tile.stored_weights, compute, read_ps))
        else:
            decode = 0
            yield self.env.timeout(fed)
        self.record("busy", start, start + compute, cmd.label, rows=tile.rows, k=tile.k, n=tile.n)
        self.record("stall:waiting for buffer port", start + compute, start + fed, cmd.label)
        self.record("stall:waiting for decoder", start + fed, start + decode, cmd.label)

    def _tile_ps(self, fmt: WeightFormat, tile: Tile, shape: tuple[int, int]) -> int:
        """Compute time of one tile (remembered: tiles repeat, a few shapes per op)."""
        key = (fmt, tile, shape)
        if key not in self._tile_times:
            self._tile_times[key] = cycles_to_ps(self.tile_cycles(fmt, tile, shape), self.clock_mhz)
        return self._tile_times[key]

    def sub_array(self, fmt: WeightFormat, tiles: tuple[Tile, ...],
                  operands: Operands = Operands.WEIGHTS) -> tuple[int, int]:
        """(rows, cols) of the sub-array an op runs on: the one that finishes it soonest.

        The controller maps an op onto the top-left r x c PEs; fewer columns mean more passes
        but a shorter systolic skew, and a tile takes no less than its operand path needs
        (``supply_ps``), so more columns may gain nothing. Every r <= rows, c <= cols is
        considered with the op's simulated time (tiles at max(compute, supply), then the skew),
        so a larger array can always run an op as a smaller one would and is never slower
        (``map_to_sub_array: false`` always uses the whole array)."""
        if not self.cfg.map_to_sub_array or not tiles:
            return self.cfg.rows, self.cfg.cols
        key = (fmt, id(tiles), operands)
        if key not in self._shapes:  # tiles kept: their id stays unique
            self._shapes[key] = (tiles, self._fastest_shape(fmt, tiles, self.supply_ps.get(operands)))
        return self._shapes[key][1]

    def _fastest_shape(self, fmt: WeightFormat, tiles: tuple[Tile, ...],
                       supply: Callable[[Tile], int] | None) -> tuple[int, int]:
        shapes = Counter((t.groups, t.rows, t.n, t.k, supply(t) if supply else 0) for t in tiles)
        rows, cols = np.arange(self.cfg.rows, 0, -1), np.arange(self.cfg.cols, 0, -1)  # largest first on a tie
        ii = initiation_interval(self.pe_params(fmt))
        time_ps = self._cycles_ps((rows[:, None] - 1) + (cols[None, :] - 1))
        for (groups, t_rows, t_n, k, floor_ps), count in shapes.items():
            per_pass = groups * self.beats_per_pass(fmt, k) * ii
            compute_ps = self._cycles_ps(per_pass * ceil_div(t_rows, rows)[:, None] * ceil_div(t_n, cols)[None, :])
            time_ps = time_ps + count * np.maximum(compute_ps, floor_ps)
        r, c = np.unravel_index(int(np.argmin(time_ps)), time_ps.shape)
        return int(rows[r]), int(cols[c])

    def _cycles_ps(self, cycles: np.ndarray) -> np.ndarray:
        """``cycles_to_ps`` of every element (the same rounding up to whole ps)."""
        return np.ceil(cycles * 1e6 / self.clock_mhz - 1e-6).astype(np.int64)

    def pe_params(self, fmt: WeightFormat) -> PeParams:
        """The PE configuration that runs ``fmt``: its N:M pattern, or the built one in dense mode."""
        if fmt not in self._params:
            self._params[fmt] = self._pe_params(fmt)
        return self._params[fmt]

    def _pe_params(self, fmt: WeightFormat) -> PeParams:
        ternary = fmt.encoding == "ternary"
        if fmt.sparse:
            return PeParams(fmt.n, fmt.m, self.cfg.lanes, ternary=ternary)
        return PeParams(self.cfg.n, self.cfg.m, self.cfg.lanes, ternary=ternary)

    def beats_per_pass(self, fmt: WeightFormat, k: int) -> int:
        """Beats one PE needs for a k-long dot product in ``fmt``.

        N:M weights: ``m * lanes`` inputs per beat (pe_core, checked against the RTL).
        Dense weights: each multiplier takes the next input, ``n * lanes`` per beat.
        """
        if fmt.sparse:
            beats = beats_for(self.pe_params(fmt), k)
        else:
            beats = ceil_div(k, self.cfg.n * self.cfg.lanes)
        return beats * self.bits_factor(fmt)

    def bits_factor(self, fmt: WeightFormat) -> int:
        """Beats per group: weights wider than the multiplier are processed in slices."""
        if fmt.encoding == "ternary":
            return 1
        return ceil_div(fmt.value_bits, self.cfg.native_weight_bits)

    def tile_cycles(self, fmt: WeightFormat, tile: Tile, shape: tuple[int, int] | None = None) -> int:
        """Cycles one tile occupies the (sub-)array (its beats; see the module docstring)."""
        rows, cols = shape or (self.cfg.rows, self.cfg.cols)
        passes = tile.groups * ceil_div(tile.rows, rows) * ceil_div(tile.n, cols)
        return passes * self.beats_per_pass(fmt, tile.k) * initiation_interval(self.pe_params(fmt))

    def fill_cycles(self, pe: PeParams, shape: tuple[int, int] | None = None) -> int:
        """Cycles from an op's last beat to its last result: PE latency beyond one beat plus the
        skew of the (sub-)array the op runs on."""
        rows, cols = shape or (self.cfg.rows, self.cfg.cols)
        return latency_cycles(pe) - 1 + rows - 1 + cols - 1

    def multipliers(self) -> int:
        """Multiply (or add/subtract) units in the array."""
        return self.cfg.rows * self.cfg.cols * self.cfg.lanes * self.cfg.n

    def ideal_ps(self, fmt: WeightFormat, tiles: tuple[Tile, ...]) -> int:
        """Compute bound of an op: its tiles' beats on the whole array, back to back.

        Tighter than MACs / multipliers and still a bound: a pass covers at most ``rows``
        tokens and ``cols`` outputs, so a tile of one token (decode at batch 1) keeps all but
        one row idle on any (sub-)array; no fill, skew or decoder stall is counted."""
        memo, total = self._full_cycles, 0
        for t in tiles:  # an op's tiles are mostly of one or two shapes
            key = (fmt, t.groups, t.rows, t.n, t.k)
            cycles = memo.get(key)
            if cycles is None:
                cycles = memo[key] = self.tile_cycles(fmt, t)
            total += cycles
        return cycles_to_ps(total, self.clock_mhz)


def tile_order(count: int, skipped: Callable[[], tuple[int, int] | list[int] | None]) -> Iterator[int]:
    """Indices ``0 .. count-1`` in order, leaving out the range ``skipped()`` returns (asked
    before every index: steady-state reuse sets it only for tiles no reader has reached)."""
    index = 0
    while index < count:
        skip = skipped()
        if skip and skip[0] <= index <= skip[1]:
            index = skip[1] + 1
            continue
        yield index
        index += 1
