"""Off-chip memory (DDR4 DIMMs or HBM2 pseudo-channels) as a TLM target.

A request's bytes are split over the channels by the address map
(``placement_channels``: interleave over all channels, over a range of them, or one
contiguous slice per channel). Each channel serves its share first-come first-served;
with ``dram`` timing set, ``tlmsim/models/dram.py`` adds row activations, bank-group spacing,
bus turnaround and refresh in closed form; without it the channel runs at peak. With an
HBM ``switch`` (tlmsim/models/hbm_switch.py), every byte also goes through an AXI port
(capped by the AXI clock and the kernel-side master across the clock crossing) and, when a
channel is served from another mini-switch, through shared lateral connections at 50% of a
port's rate, paying extra latency per crossing. The request completes ``latency_ns`` (+ switch latency) after
its last channel finished: one SimPy timeout per request, O(channels) numpy arithmetic.

Arbitration (``arbitration``): with ``qos`` (default) KV reads, embedding gathers and KV
appends cut ahead of queued bulk weight prefetch on each channel, port and link, and the
overtaken stream ends later by as much (tlmsim/models/arbitration.py); so a deeper prefetch
never delays what the next op waits for. With ``fifo`` every channel serves in issue order.
A channel runs a bulk read at most ``stream_skew_kib`` ahead of that read's slowest channel
(the DMA walks its addresses in order): the channels of one stream stay together, so a
decoder layer's channel state repeats layer after layer, which exact reuse needs.

Per-channel efficiency lands in ``stats``: "busy" is data at peak bandwidth (achieved /
peak), "overhead:<reason>" the time lost to refresh, row misses, turnaround, bank-group
spacing and the switch; the rest of the channel time is idle.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Literal

import simpy
from pydantic import BeforeValidator, Field, model_validator

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.configbase import BANDWIDTH_GBPS, PORTS, TIME_NS, Section, list_to_tuple
from tlmsim.engine.payload import Command, Response, Transaction
from tlmsim.engine.ports import TargetPort
from tlmsim.engine.protocol import Frame, RepeatUnit
from tlmsim.engine.timebase import ns_to_ps, transfer_ps
from tlmsim.models.arbitration import QosArbiter, QueuedRead
from tlmsim.models.dram import STATES, DramChannels, DramTiming
from tlmsim.models.dram_config import DramTimingConfig
from tlmsim.models.hbm_switch import HbmSwitch, HbmSwitchConfig

# YAML has no tuples; strict mode would refuse the list [first, count] for a tuple field.
ChannelIndex = Annotated[int, Field(ge=0, le=1024)]
ChannelRange = Annotated[tuple[ChannelIndex, ChannelIndex], BeforeValidator(list_to_tuple)]


class MemoryConfig(Section):
    """An off-chip memory (all channels of one kind): peak numbers from the data sheet,
    optional DRAM command timing, HBM switch and how addresses spread over channels."""

    kind: Literal["hbm2", "ddr4", "generic"] = "generic"
    channels: int = Field(**PORTS, description="independent channels (HBM pseudo-channels)")
    bandwidth_gbps: float = Field(**BANDWIDTH_GBPS, description="total peak bandwidth, GB/s")
    latency_ns: float = Field(**TIME_NS, description="idle read latency (page hit)")
    burst_bytes: int = Field(64, ge=1, le=65536, description="smallest transfer; requests round up to it")
    interleave_bytes: int = Field(4096, ge=1, le=2**30, description="address interleave across channels")
    capacity_gib: float = Field(gt=1e-6, le=16384, description="capacity, above 1 KiB, at most 16 TiB")
    dram: DramTimingConfig | None = Field(None, description="command timing; None = ideal pipe at peak")
    switch: HbmSwitchConfig | None = Field(None, description="HBM AXI switch; None = every port local")
    placement_channels: Literal["spread", "one", "range"] = Field(
        "spread", description="spread: interleave over all channels; one: each channel holds a contiguous "
                              "capacity/channels slice, so a tensor sits in one channel; range: interleave "
                              "over channel_range")
    channel_range: ChannelRange | None = Field(None, description="(first channel, count) for 'range'")
    stream_skew_kib: float | None = Field(
        2, ge=0, le=2**20, description="how far one channel of a bulk (lowest-QoS) read may run ahead of the "
        "slowest channel of that read: the DMA walks its addresses in order and each port queues this much "
        "ahead (4 AXI bursts of 512 B); None: channels run independently")
    arbitration: Literal["qos", "fifo"] = Field(
        "qos", description="qos: a request cuts ahead of lower-QoS work queued on each of its channels (bulk "
                           "weight prefetch never delays a KV read or gather); fifo: every channel in issue order")

    @property
    def capacity_bytes(self) -> int:
        """Capacity in bytes."""
        return int(self.capacity_gib * 2**30)

    @model_validator(mode="after")
    def _channels_consistent(self):
        if self.placement_channels == "range":
            if self.channel_range is None:
                raise ValueError("placement_channels 'range' needs channel_range: [first, count]")
            first, count = self.channel_range
            if first < 0 or count <= 0 or first + count > self.channels:
                raise ValueError(f"channel_range {list(self.channel_range)} must lie within the "
                                 f"{self.channels} channels")
        if self.dram is not None and self.dram.row_bytes % self.burst_bytes:
            raise ValueError(f"dram.row_bytes={self.dram.row_bytes} must be a multiple of burst_bytes")
        if self.switch is not None and self.channels % self.switch.ports_per_switch:
            raise ValueError(f"channels={self.channels} must be a multiple of switch.ports_per_switch")
        if self.switch is not None and self.switch.ports_used > self.channels:
            raise ValueError(f"switch.ports_used={self.switch.ports_used} exceeds the {self.channels} ports")
        return self


class Memory(Component):
    """All channels of one memory, reachable through one target port."""

    role = "memory"
    REUSE_STATE = ("dram", "switch", "last_label", "arbiter")
    WIRING = ("cfg", "skew_ps", "channel_gbps", "latency_ps", "first_channel", "spread", "granule", "channel_bytes",
              "timing",
              "hops", "hop_ps", "any_lateral", "target")
    CACHES = ("_streaming", "_splits", "_tables", "_switch_ends")

    def __init__(self, ctx: SimContext, name: str, cfg: MemoryConfig, kernel_clock_mhz: float | None = None):
        """``kernel_clock_mhz``: the clock of the accelerator's AXI masters (the builder passes
        the accelerator clock); None leaves the kernel side of the clock crossing unmodelled."""
        super().__init__(ctx, name)
        self.cfg = cfg
        self.channel_gbps = cfg.bandwidth_gbps / cfg.channels
        self.latency_ps = ns_to_ps(cfg.latency_ns)
        self.first_channel, self.spread = _channel_set(cfg)
        self.granule = cfg.capacity_bytes // cfg.channels if cfg.placement_channels == "one" else cfg.interleave_bytes
        self.channel_bytes = cfg.capacity_bytes // cfg.channels
        self.timing = DramTiming.build(cfg.dram, cfg.burst_bytes, self.channel_gbps, self.channel_bytes)
        skew = cfg.stream_skew_kib
        self.skew_ps = None if skew is None else transfer_ps(round(skew * 1024), self.channel_gbps)
        self.dram = DramChannels(self.timing, cfg.channels)
        self._build_switch(kernel_clock_mhz)
        self.last_label: list[str | None] = [None] * cfg.channels  # what each channel served last
        self.arbiter = QosArbiter(self.dram, self.timing, cfg.channels, self.skew_ps)  # ``arbitration: qos``
        self._switch_ends: dict = {}  # scratch: the switch resources the request being scheduled ends on
        self._streaming: dict[bool, float] = {}
        self._splits: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        self._tables: dict[str, tuple[list[int], list[int]]] = {}  # phase -> its two arrays in stats
        self.target = TargetPort(name, Transaction, self.transport, self.request)

    def _build_switch(self, kernel_clock_mhz: float | None) -> None:
        sw, n = self.cfg.switch, self.cfg.channels
        demand = range(self.first_channel, self.first_channel + self.spread)
        sustained = self.channel_gbps * self.timing.streaming_efficiency()
        self.switch = None if sw is None else HbmSwitch(sw, n, demand, sustained, self.channel_gbps, kernel_clock_mhz)
        self.hops = [0] * n if sw is None else list(self.switch.routes.hops)
        self.hop_ps = 0 if sw is None else ns_to_ps(sw.lateral_latency_ns)
        self.any_lateral = self.hop_ps > 0 and any(self.hops)

    @property
    def addressable_bytes(self) -> int:
        """Bytes the address map reaches (a channel range reaches only its channels)."""
        return self.channel_bytes * self.spread

    def transport(self, txn: Transaction):
        """Blocking transport: serve ``txn``; returns its completion time in ps."""
        response = yield self.request(txn)
        return response.done_ps

    def request(self, txn: Transaction) -> simpy.Event:
        """Non-blocking transport: reserve the channels now; the returned event fires at
        completion with the ``Response``."""
        if txn.addr + txn.nbytes > self.addressable_bytes:
            raise ValueError(f"{self.name}: access [{txn.addr}, {txn.addr + txn.nbytes}) beyond capacity "
                             f"({self.addressable_bytes} B reachable)")
        start = self.env.now
        self._switch_ends.clear()
        done = self.schedule(txn)
        self.stats.add_count(self.ctx.phase, f"{txn.command.value}_bytes", txn.nbytes)
        if self.cfg.arbitration == "qos" and txn.qos == 0:  # may still be overtaken: completes when it is due
            return self._track(txn, start, done)
        self._trace(txn, start, done)
        return self.env.timeout(done - start, value=Response(txn, done))

    def _trace(self, txn: Transaction, start: int, done: int, traced: bool | None = None) -> None:
        if self.ctx.tracer.enabled if traced is None else traced:
            self.ctx.tracer.slice(self.name, "busy", txn.label, start, done, bytes=txn.nbytes,
                                  command=txn.command.value, stream=txn.stream,
                                  data_ps=self._data_window(txn, start, done))

    def _track(self, txn: Transaction, start: int, done: int) -> simpy.Event:
        """Track a lowest-QoS request until it is due (cut-ins may move that later)."""
        shares = self.split_local(txn.addr, txn.nbytes)
        ends = {ch: self.dram.free[ch] for ch, _, _ in shares}
        ends.update(self._switch_ends)  # the ports and links it went through (filled by ``schedule``)
        read = QueuedRead(txn, start, done, ends, done - max(ends.values()), self.ctx.tracer.enabled, self.env.event())
        self.arbiter.queued.append(read)
        self.env.timeout(done - start).callbacks.append(partial(self._due, read))
        return read.event

    def _due(self, read: QueuedRead, _event=None) -> None:
        """``read`` was due now: complete it, or wait on if a cut-in delayed it."""
        now = self.env.now
        if read.done_ps > now:
            self.env.timeout(read.done_ps - now).callbacks.append(partial(self._due, read))
            return
        self.arbiter.queued.remove(read)
        self._trace(read.txn, read.start_ps, now, read.traced)
        read.event.succeed(Response(read.txn, now))

    def _data_window(self, txn: Transaction, start: int, done: int) -> list[int]:
        """[start, end] ps, relative to the request, in which ``txn``'s data moves on its
        channels (for the bandwidth counter; relative, so copies of the slice keep it): it ends a
        fixed latency before completion and lasts the time its largest channel share needs at
        the channel's peak, so concurrent windows never add up above the memory's peak."""
        end = max(0, done - self.latency_ps - start)
        longest = max(transfer_ps(nbytes, self.channel_gbps) for _, _, nbytes in self.split_local(txn.addr, txn.nbytes))
        return [max(0, end - longest), end]

    def schedule(self, txn: Transaction) -> int:
        """Reserve channel time for ``txn`` and return when its data is complete."""
        now = self.env.now
        shares = self.split_local(txn.addr, txn.nbytes)
        write, table = txn.command is Command.WRITE, self._channel_table(self.ctx.phase)
        first, held = self.cfg.arbitration == "qos" and txn.qos > 0, 0
        if first:
            last, totals, appended, held = self.arbiter.serve_first(shares, write, now, table)
            for ch in appended:
                self.last_label[ch] = txn.label
        else:
            if txn.qos == 0:
                now = self._stream_start(shares, now)
            last, totals = self.dram.serve(shares, write, now, table, (txn.addr, txn.nbytes))
            for ch, _, _ in shares:
                self.last_label[ch] = txn.label
        if self.switch is not None:
            cut_ins: list = []
            last = max(last, self.switch.through(shares, now, first, self._switch_ends, cut_ins))
            for key, begin, push in cut_ins:
                self.arbiter.delay(key, begin, push)
                held = max(held, push)
        if held:  # how often, and how long on its slowest resource, critical work held the weight stream
            self.stats.add_count(self.ctx.phase, "cut_ins", 1)
            self.stats.add_count(self.ctx.phase, "stream_held_ps", held)
        times = self.stats.time_ps[self.ctx.phase]
        for state, total in zip(STATES, totals):
            if total:
                times[state] += total
        hops = max(self.hops[ch] for ch, _, _ in shares) if self.any_lateral else 0
        return last + self.latency_ps + hops * self.hop_ps

    def _stream_start(self, shares: list[tuple[int, int, int]], now: int) -> int:
        """When a lowest-QoS (bulk) read reaches its channels: no channel starts it more than
        ``stream_skew_kib`` ahead of the slowest of them (the DMA walks its addresses in order,
        so a channel still busy holds the others once their queues are full)."""
        if self.skew_ps is None:
            return now
        free = self.dram.free
        return max(now, max(free[ch] for ch, _, _ in shares) - self.skew_ps)

    def _channel_table(self, phase: str) -> tuple[list[int], list[int]]:
        """(data ps, occupied ps) per channel in ``phase``: two arrays of the stats."""
        table = self._tables.get(phase)
        if table is None:
            table = self._tables[phase] = (self.stats.array(phase, "channel data ps", self.cfg.channels),
                                           self.stats.array(phase, "channel occupied ps", self.cfg.channels))
        return table

    def split_local(self, addr: int, nbytes: int) -> list[tuple[int, int, int]]:
        """(channel, channel-local start, bytes) of [addr, addr+nbytes) under the address map
        (remembered: decode steps read the same tiles every step)."""
        shares = self._splits.get((addr, nbytes))
        if shares is None:
            if len(self._splits) > 100_000:
                self._splits.clear()
            shares = self._splits[(addr, nbytes)] = self._split_local(addr, nbytes)
        return shares

    def _split_local(self, addr: int, nbytes: int) -> list[tuple[int, int, int]]:
        gran, n = self.granule, self.spread
        first_unit, last_unit = addr // gran, (addr + nbytes - 1) // gran
        rounds, extra = divmod(last_unit - first_unit + 1, n)
        out = []
        for i in range(min(n, last_unit - first_unit + 1)):
            unit = first_unit + i  # this lane's first unit; its later ones follow every n units
            count = rounds + (1 if i < extra else 0)
            head = addr - unit * gran if unit == first_unit else 0
            final = unit + (count - 1) * n
            tail = (last_unit + 1) * gran - (addr + nbytes) if final == last_unit else 0
            out.append(((unit % n) + self.first_channel, (unit // n) * gran + head, count * gran - head - tail))
        return out

    def split(self, addr: int, nbytes: int) -> list[tuple[int, int]]:
        """Bytes of [addr, addr+nbytes) per channel."""
        return [(ch, b) for ch, _, b in self.split_local(addr, nbytes)]

    def streaming_gbps(self, refresh: bool = True) -> float:
        """Sustained GB/s of a long sequential read spread as configured: peak x DRAM
        streaming efficiency (bank-group spacing, refresh unless ``refresh=False``), over the
        channels the address map uses, capped by the AXI ports and lateral switch paths."""
        if refresh not in self._streaming:
            self._streaming[refresh] = self._streaming_gbps(refresh)
        return self._streaming[refresh]

    def _streaming_gbps(self, refresh: bool) -> float:
        channels = range(self.first_channel, self.first_channel + self.spread)
        per_channel = self.channel_gbps * self.timing.streaming_efficiency(refresh)
        if self.switch is not None:
            per_channel = self.switch.sustained_share(channels, per_channel)
        gbps = per_channel * len(channels)
        return gbps / self.spread if self.cfg.placement_channels == "one" else gbps

    def boundary_state(self, frame: Frame) -> tuple:
        """Per channel the time until it is free (clipped where no gap-dependent cost can still
        change), the refresh debt, and its open-row state with the last chunk taken relative to
        the work it served last; the AXI ports' and lateral links' free times; the refresh phase if it is fixed;
        when higher-QoS work ends per channel; the queued lowest-QoS requests' channel ends and completions."""
        now, dram = frame.now, self.dram
        clip = dram.idle_horizon()
        where: dict[str, tuple] = {}  # label -> (relative name, base chunk): channels share a few labels
        rows = []
        for ch in range(self.cfg.channels):
            free = max(dram.free[ch] - now, -clip)
            if self.timing.ideal:  # no open rows: only the free time matters
                rows.append((free,))
                continue
            last_chunk, *rest = dram.state[ch]
            label = self.last_label[ch]
            if label is not None and label not in where:
                where[label] = (frame.name(label), self.local_chunk(frame.base(label)))
            name, base_chunk = where[label] if label is not None else (None, 0)
            rows.append((free, dram.debt[ch], name, last_chunk - base_chunk, *rest))
        ports = self.switch.boundary_state(frame) if self.switch is not None else ()
        refresh_phase = now % self.timing.refi if self.timing.windowed_refresh and self.timing.refi else 0
        return tuple(rows), ports, refresh_phase, self.arbiter.boundary_state(now)

    def advance(self, unit: RepeatUnit) -> None:
        """Skipped units of work ``unit.label`` move the open rows it left by as many strides
        (a multiple of the alignment period): as if they had been read."""
        if unit.label is not None and unit.stride_bytes:
            self.move_open_rows(unit.label, unit.count * unit.stride_bytes)

    def move_open_rows(self, label: str, nbytes: int) -> None:
        """Move the open-row state of the channels ``label`` used last by ``nbytes`` of address."""
        shift = self.local_chunk(nbytes)
        for ch, last in enumerate(self.last_label):
            if last == label:
                last_chunk, *rest = self.dram.state[ch]
                self.dram.state[ch] = (last_chunk + shift, *rest)

    def local_chunk(self, addr: int) -> int:
        """Channel-local DRAM chunk index of the interleave row that holds ``addr``."""
        row = addr // (self.granule * self.spread)
        return row * self.granule // self.timing.chunk_bytes

    def min_transfer_ps(self, nbytes: int) -> int:
        """Roofline time to stream ``nbytes``: at ``streaming_gbps``, less the refreshes a
        channel may postpone past the end (T >= W + T tRFC/tREFI - postponed, W the time
        without refresh), so it stays a lower bound for short transfers too."""
        sustained = transfer_ps(nbytes, self.streaming_gbps())
        postponed = self.timing.postponable_refresh_ps()
        if not postponed:
            return sustained
        keep = 1 - self.timing.rfc / self.timing.refi
        return max(transfer_ps(nbytes, self.streaming_gbps(refresh=False)), sustained - math.ceil(postponed / keep))

    def busy_fraction(self, phase: str, duration_ps: int) -> float:
        """Average channel utilisation (data at peak) over ``duration_ps`` of ``phase``."""
        busy = self.stats.time_ps[phase]["busy"]
        return busy / (duration_ps * self.cfg.channels) if duration_ps else 0.0

    def channel_report(self, phase: str, duration_ps: int) -> list[dict[str, float]]:
        """Per channel over ``duration_ps`` of ``phase``: "busy" (data at peak = achieved / peak),
        "overhead" (refresh, rows, turnaround, bank groups, switch; reasons summed in stats),
        "idle" (the rest)."""
        arrays = self.stats.arrays.get(phase, {})
        zeros = [0] * self.cfg.channels
        data_ps, occupied_ps = arrays.get("channel data ps", zeros), arrays.get("channel occupied ps", zeros)
        span = duration_ps or 1
        return [{"busy": data / span, "overhead": (occupied - data) / span, "idle": max(0.0, 1 - occupied / span)}
                for data, occupied in zip(data_ps, occupied_ps)]


def addressable_bytes(cfg: MemoryConfig) -> int:
    """Bytes the address map reaches (a channel range reaches only its channels)."""
    return cfg.capacity_bytes // cfg.channels * _channel_set(cfg)[1]


def tensor_alignment(cfg: MemoryConfig) -> tuple[int | None, int]:
    """(alignment, guard) in bytes for placing tensors in this memory.

    A tensor starts where the address map and the DRAM costs repeat (same channel, same
    bank and row offset in every channel) and at least the open-row horizon after the
    previous tensor, so a tensor's access costs do not depend on where it lies or on its
    neighbours: the same layer at another address behaves the same, which lets the
    controller reuse identical layers (tlmsim/models/steady_state.py). (None, 0) when the period
    is a whole channel (``one`` placement, ``bank_row_column`` mapping): tensors are then
    only page-aligned and their costs depend on where they lie.
    """
    _, spread = _channel_set(cfg)
    timing = DramTiming.build(cfg.dram, cfg.burst_bytes, cfg.bandwidth_gbps / cfg.channels,
                              cfg.capacity_bytes // cfg.channels)
    channels = DramChannels(timing, 1)
    local_period = timing.burst_bytes if timing.ideal else channels.period
    period = spread * math.lcm(cfg.interleave_bytes, local_period)
    if cfg.placement_channels == "one" or period > cfg.capacity_bytes // 64:
        return None, 0
    guard = 0 if timing.ideal else spread * (channels.horizon * timing.chunk_bytes + cfg.interleave_bytes)
    return math.lcm(4096, period), guard


def _channel_set(cfg: MemoryConfig) -> tuple[int, int]:
    """(first channel, number of channels) the address map interleaves over."""
    if cfg.placement_channels == "range":
        return cfg.channel_range
    return 0, cfg.channels
