"""cocotb bench for rtl/nm_pe.v: drive beats from a JSON file, record results and cycles.

Runs inside the simulator, started by test_nm_pe.py through cocotb's Python runner.
The driver, the output sink and the monitor are separate coroutines. All of them write
signals just after a rising edge and read them at the falling edge, where every value
is settled, so a handshake seen at a falling edge happens at the next rising edge.
Checking against the Python models happens in pytest; this file only observes.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

CLOCK_NS = 10


@dataclass
class Observed:
    """What the monitor saw; cycle numbers count falling edges after reset."""

    outputs: list[int] = field(default_factory=list)  # out_data per tile (unsigned, all rows), in order
    first_beat_cycle: list[int] = field(default_factory=list)  # handshake of a tile's first beat
    out_cycle: list[int] = field(default_factory=list)  # first cycle out_valid was high
    beats_accepted: int = 0
    input_gap_cycles: int = 0  # cycles with in_valid low while beats remained
    output_stall_cycles: int = 0  # cycles with out_valid high and out_ready low
    protocol_errors: list[str] = field(default_factory=list)
    cycles: int = 0


async def drive_beats(dut, beats: list[list[int]], gap_prob: float, rng: random.Random) -> None:
    """Offer each beat until in_ready takes it, idling on in_valid with gap_prob."""
    for act, code, idx, scale, group_last, tile_last in beats:
        while rng.random() < gap_prob:
            dut.in_valid.value = 0
            await RisingEdge(dut.clk)
        dut.in_act.value = act
        dut.in_code.value = code
        dut.in_idx.value = idx
        dut.in_scale.value = scale
        dut.in_group_last.value = group_last
        dut.in_tile_last.value = tile_last
        dut.in_valid.value = 1
        accepted = False
        while not accepted:
            await FallingEdge(dut.clk)
            accepted = bool(dut.in_ready.value)
            await RisingEdge(dut.clk)
    dut.in_valid.value = 0


async def drive_out_ready(dut, stall_prob: float, rng: random.Random) -> None:
    """Lower out_ready at random cycles (back-pressure); forever."""
    while True:
        dut.out_ready.value = int(rng.random() >= stall_prob)
        await RisingEdge(dut.clk)


async def monitor(dut, n_beats: int, n_tiles: int, max_cycles: int) -> Observed:
    """Record handshakes, results and output stability until all tiles came out."""
    seen = Observed()
    held = None  # (data) of a result offered but not taken last cycle
    new_tile = True
    while len(seen.outputs) < n_tiles and seen.cycles < max_cycles:
        await FallingEdge(dut.clk)
        cycle, seen.cycles = seen.cycles, seen.cycles + 1
        if dut.in_valid.value and dut.in_ready.value:
            if new_tile:
                seen.first_beat_cycle.append(cycle)
            new_tile = bool(dut.in_tile_last.value)
            seen.beats_accepted += 1
        elif not dut.in_valid.value and seen.beats_accepted < n_beats:
            seen.input_gap_cycles += 1
        held = _watch_output(dut, seen, cycle, held)
    return seen


def _watch_output(dut, seen: Observed, cycle: int, held):
    valid, ready = bool(dut.out_valid.value), bool(dut.out_ready.value)
    data = int(dut.out_data.value) if valid else None
    if held is not None and data != held:
        seen.protocol_errors.append(f"cycle {cycle}: result {held} changed or vanished while stalled")
    if valid and held is None:
        seen.out_cycle.append(cycle)
    if valid and ready:
        seen.outputs.append(data)
    if valid and not ready:
        seen.output_stall_cycles += 1
    return data if valid and not ready else None


@cocotb.test()
async def stream_tiles(dut) -> None:
    """Stream the beats of PE_STIMULUS through the PE and write observations to PE_RESULTS."""
    with open(os.environ["PE_STIMULUS"]) as f:
        stim = json.load(f)
    rng = random.Random(stim["seed"])
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.out_ready.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    cocotb.start_soon(drive_beats(dut, stim["beats"], stim["gap_prob"], rng))
    cocotb.start_soon(drive_out_ready(dut, stim["stall_prob"], rng))
    max_cycles = 100 + 20 * len(stim["beats"])
    seen = await monitor(dut, len(stim["beats"]), stim["tiles"], max_cycles)
    with open(os.environ["PE_RESULTS"], "w") as f:
        json.dump(asdict(seen), f)
    assert len(seen.outputs) == stim["tiles"], f"only {len(seen.outputs)} results in {seen.cycles} cycles"
