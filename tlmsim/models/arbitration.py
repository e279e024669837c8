"""AXI-QoS arbitration of one memory's channels (``MemoryConfig.arbitration: qos``).

A request of higher QoS (KV tiles, embedding gathers, KV appends: what the next op waits
for) is served on each channel behind the higher-QoS work there and ahead of the queued
lowest-QoS work (bulk weight prefetch), as an accelerator's port arbiter does. It finds the
channel as a request meeting another stream does (``cut_in_state``: its first row misses,
a write turns the bus), and the stream it overtakes resumes with its row re-opened and,
after a write, the bus turned back. A channel cut into is held for the cut-in's time there;
every other channel the stream has queued work on runs on for as long as the stream skew
allows (``stream_skew_kib``: the weight DMA walks its addresses in order over the channels,
so it runs at most that far ahead of its slowest channel) and then stalls for the rest of
the slowest channel's hold (docs/memory.md, "Arbitration").

Queued lowest-QoS requests are ``QueuedRead``s: a cut-in moves their channels' ends and so,
perhaps, their completion; the memory completes them when they are due.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from tlmsim.engine.payload import Transaction
from tlmsim.engine.protocol import Stateful
from tlmsim.models.dram import STATES, DramChannels, DramTiming


@dataclass
class QueuedRead:
    """A lowest-QoS request not yet complete: a higher-QoS cut-in on one of its channels
    moves that channel's end (``ends``) and so, perhaps, its completion (``done_ps``)."""

    txn: Transaction
    start_ps: int
    done_ps: int
    ends: dict  # channel (or switch ("port" | "link", index)) -> when its share there is served
    tail_ps: int  # from the last channel's end to completion (latency, lateral hops)
    traced: bool
    event: simpy.Event


def cut_in_state(state: tuple) -> tuple:
    """A channel's DRAM state as a request cutting into its stream finds it: used, none of
    the request's rows open (the stream's are), no transfer to hide an activation behind, the
    bus in the stream's direction. The same wherever in the stream it cuts in."""
    return (-(1 << 62), 0, -1, 0, state[4], True)


class QosArbiter(Stateful):
    """When each channel's higher-QoS work ends and the lowest-QoS reads in flight (part of
    ``Memory``'s reuse state)."""

    REUSE_STATE = ("first", "queued")
    WIRING = ("dram", "timing", "channels", "skew_ps")

    def __init__(self, dram: DramChannels, timing: DramTiming, channels: int, skew_ps: int | None):
        """``skew_ps``: how far the bulk stream may run ahead of its slowest channel (None:
        its channels are independent)."""
        self.dram, self.timing, self.channels, self.skew_ps = dram, timing, channels, skew_ps
        self.first = [0] * channels  # when each channel's higher-QoS work ends
        self.queued: list[QueuedRead] = []

    def serve_first(self, shares: list[tuple[int, int, int]], write: bool, now: int,
                    table: tuple[list[int], list[int]]) -> tuple[int, list[int], list[int], int]:
        """Serve a higher-QoS request (module docstring). Returns (last end, time per STATES,
        the channels it was appended on, not cut in: their open rows are now its own, how long
        it held the lowest-QoS stream on its slowest channel: 0 if it cut into none)."""
        dram, first = self.dram, self.first
        stalled = [ch for ch in range(self.channels) if dram.free[ch] > max(now, first[ch])]  # bulk queued
        ahead = [s for s in shares if dram.free[s[0]] > max(now, first[s[0]])]
        behind = [s for s in shares if dram.free[s[0]] <= max(now, first[s[0]])]
        last, totals = dram.serve(behind, write, now, table) if behind else (now, [0] * len(STATES))
        for ch, _, _ in behind:
            first[ch] = dram.free[ch]
        appended = [ch for ch, _, _ in behind]
        if not ahead:
            return last, totals, appended, 0
        saved = [(ch, dram.free[ch], dram.state[ch], max(now, first[ch])) for ch, _, _ in ahead]
        for ch, _, state, begin in saved:  # served as if the channel were free where it cuts in
            dram.free[ch], dram.state[ch] = begin, cut_in_state(state)
        end, parts = dram.serve(ahead, write, now, table)
        row, turn = self.timing.resume_ps(write)
        held = {ch: dram.free[ch] - begin + row + turn for ch, _, _, begin in saved}
        for ch, free, state, _ in saved:
            first[ch] = dram.free[ch]
            dram.free[ch], dram.state[ch] = free, state  # the overtaken stream still ends last
            table[1][ch] += row + turn
        held_back = 0 if self.skew_ps is None else max(held.values()) - self.skew_ps
        for ch in stalled:  # held where cut into, elsewhere once the stream's skew runs out
            push = max(held.get(ch, 0), held_back)
            if push > 0:
                dram.free[ch] += push
                self.delay(ch, now, push)
        parts[STATES.index("overhead:row")] += row * len(saved)
        parts[STATES.index("overhead:turnaround")] += turn * len(saved)
        return max(last, end), [a + b for a, b in zip(totals, parts)], appended, max(held.values())

    def delay(self, resource, begin: int, push: int) -> None:
        """Queued lowest-QoS shares on ``resource`` (a channel, or a switch port or link) not
        served by ``begin`` end ``push`` later."""
        for read in self.queued:
            end = read.ends.get(resource)
            if end is not None and end > begin:
                read.ends[resource] = end + push
                read.done_ps = max(read.done_ps, end + push + read.tail_ps)

    def boundary_state(self, now: int) -> tuple:
        """When higher-QoS work ends per channel, and the queued reads' completions and
        channel ends, relative to ``now`` (past ends as 0: no cut-in can move them)."""
        first = tuple(max(t - now, 0) for t in self.first)
        queued = tuple((read.done_ps - now, tuple((ch, max(end - now, 0)) for ch, end in read.ends.items()))
                       for read in self.queued)
        return first, queued
