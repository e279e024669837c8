"""Closed-form DRAM command timing of all channels of one memory.

A request reaches each channel as one contiguous range of channel-local bytes. Its
service time on that channel follows from counts, not from a command-by-command loop:

* ``N`` bursts, each taking ``max(t_burst, tCCD) / controller_efficiency`` on the data bus
  (``tCCD_S`` when the address mapping rotates consecutive bursts over bank groups,
  ``tCCD_L`` when they stay in one bank; the efficiency is the share of free burst slots a
  real controller fills, a calibrated constant of the DDR4 preset, docs/validation.md);
* ``A`` row activations: the distinct (bank, row) pairs the range touches, minus those
  already open (open-page policy; the channel keeps each bank's open row). The first
  activation is exposed (``tRCD``, plus ``tRP`` if another row was open) unless the
  controller could prepare it while the previous request on the channel was still
  transferring to another bank; the later ones overlap the data transfer when
  consecutive rows are in different banks (limited to one per ``max(tRRD_S, tFAW/4)``
  and, per bank, one per ``tRC``) and are serial (``tRP + tRCD`` each) when they are in
  the same bank (``bank_row_column``);
* a bus turnaround (``t_rtw`` / ``t_wtr``) when the direction changes, minus any idle
  gap that already covered it;
* all-bank refresh, each costing ``tRFC`` = tRP + tRFC + tRCD of channel time below
  (``DramTimingConfig.refresh_block_ns``: rows closed before, re-opened after), one of two
  policies (``refresh``):

  - ``postponed`` (default): the controller owes one ``tRFC`` per ``tREFI`` of elapsed
    time and pays it while the channel is idle, in gaps that hold a whole refresh (a
    shorter gap owes like busy time); a busy channel postpones refreshes, at
    most ``refresh_postpone_max`` of them (JEDEC allows 8), and past that spends
    ``tRFC / (tREFI - tRFC)`` of its busy time refreshing. The debt is kept as a
    fluid, in integer ps x tREFI units, so it depends only on elapsed and busy times,
    never on the absolute time: two channels in the same relative state behave the same,
    which is what lets the controller reuse identical decoder layers (tlmsim/models/steady_state.py).
  - ``windowed``: the channel is blocked ``[m tREFI - tRFC, m tREFI)`` for m >= 1; busy
    time that reaches a window is pushed past it (exact for this fixed schedule, and an
    idle channel absorbs refresh for free).

  Both give the same long-run streaming efficiency, ``1 - tRFC / tREFI``.

The controller is in order (FCFS) with one request of look-ahead; a reordering
controller would hide more activations on random traffic. All arithmetic is per channel over
the channels a request touches; channels that share a local range and a state (the
interior channels of an interleaved tile) share one cost computation.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from tlmsim.engine.protocol import Stateful
from tlmsim.engine.timebase import PS_PER_NS, ns_to_ps
from tlmsim.engine.units import ceil_div
from tlmsim.models.dram_config import DramTimingConfig

STATES = ("busy", "overhead:bank_group", "overhead:row", "overhead:turnaround", "overhead:refresh")


@dataclass(frozen=True)
class DramTiming:
    """Timing of one channel in ps, derived from its config and its peak bandwidth."""

    burst_bytes: int
    burst_ps: float  # one burst at peak bandwidth
    col_ps: int  # one burst on the bus: max(burst, tCCD of the mapping), in whole ps (rounded up)
    rcd: int
    rp: int
    rc: int
    act_ps: int  # spacing of activations to rotating banks: max(tRRD_S, tFAW / 4)
    refi: int
    rfc: int  # channel time one refresh takes: tRP + tRFC + tRCD (DramTimingConfig.refresh_block_ns)
    wtr: int
    rtw: int
    banks: int
    row_bytes: int
    mapping: str
    rows_per_bank: int
    windowed_refresh: bool = False
    refresh_debt_cap: int = 0  # postponed refreshes allowed, in ps x tREFI units

    @classmethod
    def build(cls, cfg: DramTimingConfig | None, burst_bytes: int, channel_gbps: float,
              channel_bytes: int) -> DramTiming:
        """Timing of ``cfg``; ``None`` gives an ideal channel (peak bandwidth, no overheads)."""
        burst_ps = burst_bytes * PS_PER_NS / channel_gbps  # fractional ps: bursts add up exactly
        if cfg is None:  # on the bus a burst takes whole ps, as with timing (below)
            col_ps = math.ceil(burst_ps - 1e-6)
            return cls(burst_bytes, burst_ps, col_ps, 0, 0, 0, 0, 0, 0, 0, 0, 1, burst_bytes, "ideal", 1)
        ccd = cfg.t_ccd_s_ns if cfg.address_mapping == "row_column_bank" else cfg.t_ccd_l_ns
        rows_per_bank = max(1, channel_bytes // (cfg.banks * cfg.row_bytes))
        refresh = ns_to_ps(cfg.refresh_block_ns)
        # Whole ps per burst (at most 1 ps slower than the exact rate): channel time is then
        # additive, the same for the same bursts however requests split them.
        col_ps = math.ceil(max(burst_ps, ccd * PS_PER_NS) / cfg.controller_efficiency - 1e-6)
        return cls(burst_bytes, burst_ps, col_ps, ns_to_ps(cfg.t_rcd_ns), ns_to_ps(cfg.t_rp_ns),
                   ns_to_ps(cfg.t_rc_ns), ns_to_ps(max(cfg.t_rrd_s_ns, cfg.t_faw_ns / 4)), ns_to_ps(cfg.t_refi_ns),
                   refresh, ns_to_ps(cfg.t_wtr_ns), ns_to_ps(cfg.t_rtw_ns), cfg.banks, cfg.row_bytes,
                   cfg.address_mapping, rows_per_bank, cfg.refresh == "windowed",
                   cfg.refresh_postpone_max * refresh * ns_to_ps(cfg.t_refi_ns))

    @property
    def ideal(self) -> bool:
        """True when no command timing is modelled."""
        return self.mapping == "ideal"

    @property
    def chunk_bytes(self) -> int:
        """Contiguous local bytes that stay in one bank."""
        return self.burst_bytes if self.mapping == "row_column_bank" else self.row_bytes

    def streaming_efficiency(self, refresh: bool = True) -> float:
        """Achieved / peak of an endless sequential stream on one channel (optionally
        without the time lost to refresh)."""
        if self.ideal:
            return 1.0
        bursts_per_row = self.row_bytes // self.burst_bytes
        per_row = bursts_per_row * self.col_ps
        if self.mapping == "bank_row_column":
            per_row += self.rp + self.rcd  # the next row is in the same bank: serial
        refreshing = 1 - self.rfc / self.refi if self.refi and refresh else 1.0
        return bursts_per_row * self.burst_ps / per_row * refreshing

    def resume_ps(self, write: bool) -> tuple[int, int]:
        """(row, turnaround) ps a stream pays to go on after another request cut in on its
        channel: its row re-opened (tRP + tRCD) and, after a write, the bus turned back (tWTR)."""
        if self.ideal:
            return 0, 0
        return self.rp + self.rcd, self.wtr if write else 0

    def postponable_refresh_ps(self) -> int:
        """Refresh time a busy channel may still owe at the end of a transfer."""
        return self.refresh_debt_cap // self.refi if self.refi and not self.windowed_refresh else 0


# The state of a channel: (last chunk, window, last bank, last data ps, last was write,
# used). The open rows are those of the last ``window`` chunks up to ``last chunk`` (the
# previous request's tail, one chunk per bank); a bank outside the window holds some other
# row once the channel has been used (exact when requests cover all banks, as tiles do).
IDLE = (-1, 0, -1, 0, False, False)



@dataclass(frozen=True)
class RangeCost:
    """Time-independent cost of one local range on a channel in a given state."""

    data: int  # bursts at peak
    col: int  # bursts on the bus
    stream: int  # data phase with the later activations
    penalty: int  # first activation (tRCD [+ tRP]) if it misses
    hide_cap: int  # how much of the penalty the previous transfer can hide (0: same bank)
    turnaround: int


class DramChannels(Stateful):
    """Next free time and state of every channel of one memory (part of ``Memory``'s reuse
    state: ``Memory.boundary_state`` serializes it)."""

    REUSE_STATE = ("free", "state", "debt")
    WIRING = ("t", "span", "period", "horizon", "refresh_per_col")
    CACHES = ("_costs", "_served")

    def __init__(self, timing: DramTiming, channels: int):
        self.t = timing
        self.free = [0] * channels
        self.state = [IDLE] * channels
        self.debt = [0] * channels  # postponed refresh owed (ps x tREFI), see _postponed_refresh
        t = timing
        self.refresh_per_col = ceil_div(t.col_ps * t.rfc, t.refi - t.rfc) if t.refi else 0  # at the cap
        self.span = timing.banks * (timing.row_bytes // timing.burst_bytes)  # bursts per row index
        # Costs repeat at this period of the local address (whole rows over all banks).
        self.period = (timing.banks * timing.row_bytes if timing.mapping != "bank_row_column"
                       else timing.banks * timing.row_bytes * timing.rows_per_bank)
        # Beyond this many chunks between a request's first chunk and the channel's last one,
        # no open row can be hit (different row spans), so the cost no longer depends on the gap.
        self.horizon = 2 * timing.banks + (self.span if timing.mapping == "row_column_bank" else 0)
        self._costs: dict = {}
        self._served: dict = {}

    def idle_horizon(self) -> int:
        """Idle time after which a channel's past no longer matters: the bus turnaround is
        covered and any refresh debt is paid."""
        t = self.t
        paid = ceil_div(t.refresh_debt_cap, t.refi - t.rfc) if t.refi and not t.windowed_refresh else 0
        return max(t.wtr, t.rtw, t.rfc, paid) + 1

    def serve(self, shares: list[tuple[int, int, int]], write: bool, now: int,
              table: tuple[list[int], list[int]], request: tuple | None = None) -> tuple[int, list[int]]:
        """Reserve each (channel, local start, bytes) share; adds data ps and occupied ps per
        channel to ``table`` (two lists) and returns (last end, time per STATES summed over the
        shares).

        ``request`` (e.g. (address, bytes)) names the shares: the outcome of a request that
        touches every channel (every weight and KV tile) is remembered under the channels'
        state relative to now and replayed when met again (decode steps repeat most tile
        reads exactly). Not with windowed refresh, which depends on the absolute time."""
        # Small requests (KV appends) touch few channels and rarely repeat in the same state.
        if request is None or self.t.windowed_refresh or len(shares) < len(self.free):
            return self._serve(shares, write, now, table)
        return self._serve_all(shares, write, now, table, request)

    def _serve_all(self, shares, write: bool, now: int, table: tuple[list[int], list[int]],
                   request: tuple) -> tuple[int, list[int]]:
        """``serve`` of a request that touches every channel, remembered: whole-list operations."""
        free, state, debt = self.free, self.state, self.debt
        key = (request, write, tuple(map(now.__rsub__, free)), tuple(state), tuple(debt))
        outcome = self._served.get(key)
        data, occupied = table
        if outcome is None:
            before = (list(data), list(occupied))
            last, totals = self._serve(shares, write, now, table)
            if len(self._served) > 20_000:  # bound memory on long or irregular runs
                self._served.clear()
            self._served[key] = (last - now, totals, [end - now for end in free], list(state), list(debt),
                                 list(map(operator.sub, data, before[0])), list(map(operator.sub, occupied, before[1])))
            return last, totals
        last, totals, ends, states, debts, busy, used = outcome
        free[:] = map(now.__add__, ends)
        state[:] = states
        debt[:] = debts
        data[:] = map(operator.add, data, busy)
        occupied[:] = map(operator.add, occupied, used)
        return now + last, list(totals)

    def _serve(self, shares: list[tuple[int, int, int]], write: bool, now: int,
               table: tuple[list[int], list[int]]) -> tuple[int, list[int]]:
        free, state, debt = self.free, self.state, self.debt
        data, occupied = table
        groups: dict = {}  # the interior channels of a tile: same range, state and free time
        group = None
        p_start = p_bytes = p_state = p_free = p_debt = None
        for ch, start, nbytes in shares:
            st, busy_until, owed = state[ch], free[ch], debt[ch]
            # Neighbouring channels mostly share everything: compare before building a key.
            if not (st is p_state and start == p_start and nbytes == p_bytes and busy_until == p_free
                    and owed == p_debt):
                key = (start, nbytes, st, busy_until, owed)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = self._serve_one(start, nbytes, st, busy_until, owed, write, now)
                p_start, p_bytes, p_state, p_free, p_debt = key
            group[5] += 1
            free[ch] = group[0]
            state[ch] = group[1]
            debt[ch] = group[6]
            data[ch] += group[2]
            occupied[ch] += group[3]
        totals = [0] * len(STATES)
        last = now
        for end, _, _, _, parts, count, _ in groups.values():
            last = end if end > last else last
            for i, part in enumerate(parts):
                totals[i] += count * part
        return last, totals

    def _serve_one(self, start: int, nbytes: int, st: tuple, busy_until: int, debt: int, write: bool,
                   now: int) -> list:
        """[end, state after, data ps, occupied ps, time per STATES, 0, refresh debt after] of one
        channel's share."""
        t = self.t
        first, final = start // t.chunk_bytes, (start + nbytes - 1) // t.chunk_bytes
        cost = self.cost(start, nbytes, first, st, write)
        begin = busy_until if busy_until > now else now
        row, turn = cost.penalty, cost.turnaround
        if row and cost.hide_cap and busy_until > now:  # prepared during the previous transfer
            row = max(row - min(cost.hide_cap, busy_until - now), 0)
        if turn and now > busy_until:  # an idle gap already covered part of it
            turn = max(turn - (now - busy_until), 0)
        work = turn + row + cost.stream
        if not t.refi:
            refresh = 0
        elif t.windowed_refresh:
            refresh = self._refresh(begin, work)
        else:
            refresh, debt = self._postponed_refresh(debt, max(now - busy_until, 0), work, cost.col)
        window = 1 if t.mapping == "bank_row_column" else min(final - first + 1, t.banks)
        after = (final, window, self.bank_row(final)[0], cost.col, write, True) if not t.ideal else st
        parts = (cost.data, cost.col - cost.data, cost.stream - cost.col + row, turn, refresh)
        return [begin + work + refresh, after, cost.data, work + refresh, parts, 0, debt]

    def cost(self, start: int, nbytes: int, first: int, st: tuple, write: bool) -> RangeCost:
        """Cost of the local range [start, start+nbytes) on a channel in state ``st`` (cached by
        position within the mapping's period and the state relative to the range)."""
        t = self.t
        if t.ideal:
            key = (nbytes, start % t.burst_bytes)
        else:
            last_chunk, window, last_bank, last_col, last_write, used = st
            gap = first - last_chunk if used and -self.horizon < first - last_chunk < self.horizon else None
            same_bank = self.bank_row(first)[0] == last_bank
            key = (start % self.period, nbytes, gap, window if gap is not None else 0, same_bank,
                   0 if same_bank else last_col, used and last_write != write, used, write)
        cost = self._costs.get(key)
        if cost is None:
            if len(self._costs) > 200_000:  # bound the cache on pathological access patterns
                self._costs.clear()
            cost = self._costs[key] = self._compute(start, nbytes, first, st, write)
        return cost

    def _compute(self, start: int, nbytes: int, first: int, st: tuple, write: bool) -> RangeCost:
        t = self.t
        bursts = (start + nbytes - 1) // t.burst_bytes - start // t.burst_bytes + 1
        data = math.ceil(bursts * t.burst_ps - 1e-6)  # at the exact peak: the "busy" statistic
        col = bursts * t.col_ps
        if t.ideal:
            return RangeCost(data, col, col, 0, 0, 0)
        last_chunk, window, last_bank, last_col, last_write, used = st
        final = (start + nbytes - 1) // t.chunk_bytes
        seen = min(final - first + 1, t.banks)  # only these chunks can find their row open
        hits = self.hits(first, seen, last_chunk, window)
        first_hit = self.hits(first, 1, last_chunk, window) == 1
        later = self.pairs(first, final) - hits - (0 if first_hit else 1)
        if t.mapping == "bank_row_column":
            stream = col + later * (t.rp + t.rcd)
        else:
            stream = max(col, later * t.act_ps, later // t.banks * t.rc)
        penalty = 0 if first_hit else t.rcd + (t.rp if used else 0)
        turnaround = (t.rtw if write else t.wtr) if used and last_write != write else 0
        hide_cap = last_col if self.bank_row(first)[0] != last_bank else 0
        return RangeCost(data, col, stream, penalty, hide_cap, turnaround)

    def hits(self, first: int, count: int, last_chunk: int, window: int) -> int:
        """How many of chunks first..first+count-1 (count <= banks) find their (bank, row) open,
        the open rows being those of chunks last_chunk-window+1..last_chunk (window <= banks)."""
        lo, hi = last_chunk - window + 1, last_chunk + 1
        if self.t.mapping != "row_column_bank":
            return max(0, min(first + count, hi) - max(first, lo))  # a chunk is its own (bank, row)
        # row_column_bank: within one row span, chunks j and j + k * banks share bank and row.
        span, total = self.span, 0
        for s in {first // span, (first + count - 1) // span}:
            range_lo, range_hi = max(first, s * span), min(first + count, (s + 1) * span)
            open_lo, open_hi = max(lo, s * span), min(hi, (s + 1) * span)
            if range_hi > range_lo and open_hi > open_lo:
                total += self._in_run(range_hi, open_lo, open_hi - open_lo) - \
                    self._in_run(range_lo, open_lo, open_hi - open_lo)
        return total

    def _in_run(self, x: int, start: int, width: int) -> int:
        """Chunks below ``x`` (counted from ``start``) whose bank is in the cyclic run of
        ``width`` banks beginning at ``start``'s bank."""
        banks = self.t.banks
        return (x - start) // banks * width + min((x - start) % banks, width)

    def bank_row(self, chunk: int) -> tuple[int, int]:
        """(bank, row) of a channel-local chunk index under the address mapping."""
        t = self.t
        if t.mapping == "row_column_bank":
            return chunk % t.banks, chunk // self.span
        if t.mapping == "row_bank_column":
            return chunk % t.banks, chunk // t.banks
        return chunk // t.rows_per_bank % t.banks, chunk % t.rows_per_bank

    def pairs(self, first: int, last: int) -> int:
        """Distinct (bank, row) pairs the chunks first..last touch."""
        t = self.t
        if t.mapping != "row_column_bank":
            return last - first + 1  # one row chunk per pair
        s_first, s_last = first // self.span, last // self.span
        if s_first == s_last:
            return min(last - first + 1, t.banks)
        head = min((s_first + 1) * self.span - first, t.banks)
        tail = min(last - s_last * self.span + 1, t.banks)
        return head + tail + (s_last - s_first - 1) * t.banks

    def _postponed_refresh(self, debt: int, idle: int, work: int, col: int) -> tuple[int, int]:
        """(refresh ps spent, debt after) of ``work`` ps of channel time (``col`` of it bursts)
        after ``idle`` ps idle.

        Debt accrues at tRFC per tREFI of elapsed time and is paid at full rate while the
        channel refreshes; idle time refreshes for free if the gap holds a whole refresh
        (tRP + tRFC + tRCD), else it owes like busy time. Once the debt reaches the
        postponement cap the channel must refresh: the smallest r with debt + (work + r) tRFC - r tREFI <= cap.
        A channel already at the cap pays it per burst (``refresh_per_col``) and per ps of the
        rest, rounded up separately, so the same bursts cost the same however requests split them.
        """
        refi, rfc, cap = self.t.refi, self.t.rfc, self.t.refresh_debt_cap
        debt, work = (max(debt - idle * (refi - rfc), 0), work) if idle >= rfc else (debt, work + idle)
        excess = debt + work * rfc - cap
        if excess <= 0:
            return 0, debt + work * rfc
        if debt >= cap:  # streaming at the cap
            bursts = col // self.t.col_ps if self.t.col_ps else 0
            return bursts * self.refresh_per_col + ceil_div((work - col) * rfc, refi - rfc), cap
        # Refresh is spent in whole ps; the part of the last ps beyond the debt is not credited,
        # so a channel that streams at the cap stays exactly at it (its state repeats).
        return ceil_div(excess, refi - rfc), cap

    def _refresh(self, begin: int, work: int) -> int:
        """Time lost to refresh windows [m tREFI - tRFC, m tREFI) met by ``work`` from ``begin``."""
        refi, rfc = self.t.refi, self.t.rfc
        window_end = (begin // refi + 1) * refi
        wait = window_end - begin if begin >= window_end - rfc else 0
        start = begin + wait
        base = (start + rfc) // refi
        extra = 0
        while True:  # each pass adds the windows the previous extension reached
            crossed = (start + work + extra * rfc - 1 + rfc) // refi - base
            if crossed == extra:
                return wait + extra * rfc
            extra = crossed

