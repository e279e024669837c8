"""DRAM timing: streaming and random-access rates against hand computations from the presets.

Published reference: Shuhai (Wang et al., FCCM 2020, doi:10.1109/FCCM48280.2020.00024)
measures up to 425 GB/s of the U280's 460.8 GB/s theoretical HBM bandwidth on streaming
reads, i.e. 92.2% (docs/memory.md).
"""

import pytest
import simpy

from tlmsim.config import DramTimingConfig, MemoryConfig, validate_config
from tlmsim.engine.component import SimContext
from tlmsim.engine.payload import Command, Transaction
from tlmsim.engine.trace import Tracer
from tlmsim.models.accelerator import Accelerator
from tlmsim.models.memory import Memory
from tlmsim.workloads.phases import Workload
from tlmsim.workloads.synthetic import single_linear

HBM = DramTimingConfig(preset="hbm2_u280")
DDR = DramTimingConfig(preset="ddr4_2400")
SHUHAI_GBPS = 425  # Shuhai (FCCM 2020), abstract: "up to 425 GB/s" on the U280's two HBM stacks
REFRESH_BLOCK_NS = 14 + 260 + 12  # tRP + tRFC + tRCD of the hbm2_u280 preset


def _pc(ctx, **kw):
    """One U280 HBM pseudo-channel with the hbm2_u280 preset and no fixed latency."""
    cfg = dict(kind="hbm2", channels=1, bandwidth_gbps=14.375, latency_ns=0, burst_bytes=32,
               interleave_bytes=512, capacity_gib=0.25, dram={"preset": "hbm2_u280"})
    cfg.update(kw)
    return Memory(ctx, "hbm", MemoryConfig(**cfg))


def _issue(mem, addrs, nbytes, command=Command.READ):
    """Issue every request at the current time (a deep queue); returns the completion times."""
    return [mem.schedule(Transaction(command, a, nbytes, "t", "x", mem.env.now)) for a in addrs]


def test_preset_values_are_the_cited_ones():
    # tlmsim/models/presets/hbm2_u280.yaml: gem5 HBM_2000_4H_1x64 and AMD PG276
    assert (HBM.t_rcd_ns, HBM.t_rp_ns, HBM.t_refi_ns, HBM.t_rfc_ns) == (12, 14, 3900, 260)
    # tlmsim/models/presets/ddr4_2400.yaml: Micron -083E 16-16-16, JESD79-4
    assert (DDR.t_rcd_ns, DDR.t_rp_ns, DDR.t_ccd_l_ns, DDR.t_refi_ns, DDR.t_rfc_ns) == (13.32, 13.32, 5.0, 7800, 350)


def test_hbm_streaming_efficiency_is_refresh_bound_and_near_shuhai(ctx):
    mem = _pc(ctx)
    nbytes = 64 * 2**20
    done = _issue(mem, range(0, nbytes, 2**16), 2**16)[-1]
    achieved = nbytes / (done / 1000) / 14.375
    # By hand: bursts rotate over bank groups, so each 32 B burst takes max(32 B / 14.375 GB/s,
    # tCCD_S 2 ns) = 2.226 ns = peak; activations (16 per 16 KB) hide behind the data; every
    # tREFI the channel closes its rows (tRP 14), refreshes (tRFC 260) and re-opens a row
    # (tRCD 12): efficiency = 1 - 286 / 3900 = 92.67%.
    by_hand = 1 - REFRESH_BLOCK_NS / 3900
    assert achieved == pytest.approx(by_hand, abs=0.002)
    whole_ps = (32_000 / 14.375) / 2227  # a burst takes 2227 whole ps, not 2226.09 (docs/memory.md)
    assert mem.streaming_gbps() == pytest.approx(14.375 * whole_ps * by_hand)
    times = mem.stats.time_ps["test"]
    assert times["overhead:refresh"] / done == pytest.approx(REFRESH_BLOCK_NS / 3900, abs=0.002)


def test_full_u280_hbm_streams_near_the_published_425_gbps(ctx):
    mem = _pc(ctx, channels=32, bandwidth_gbps=460, capacity_gib=8)
    nbytes = 256 * 2**20
    done = _issue(mem, range(0, nbytes, 2**20), 2**20)[-1]
    gbps = nbytes / (done / 1000)
    # By hand, per pseudo-channel: each 32 B burst takes 2227 whole ps and owes 2227 x R / tREFI
    # of refresh (R = tRP + tRFC + tRCD = 286 ns); the controller postpones the first 8 R, i.e.
    # the bursts until the debt reaches 8 R tREFI, and then pays 177 ps per burst (2227 x R /
    # (tREFI - R) = 176.24, rounded up once per burst).
    bursts = nbytes / 32 / 32
    block = REFRESH_BLOCK_NS
    postponed = 8 * block * 3900 * 1000 / (2227 * block)  # bursts before the cap
    data_ps, refresh_ps = bursts * 2227, (bursts - postponed) * 177
    assert gbps == pytest.approx(nbytes / ((data_ps + refresh_ps) / 1000), rel=1e-4)  # 427.6 GB/s
    long_run = 460 * (1 - block / 3900)  # 426.3 GB/s
    assert gbps == pytest.approx(long_run, rel=0.005)
    assert mem.streaming_gbps() == pytest.approx(long_run * (32_000 / 14.375) / 2227)  # 426.1 GB/s
    # Shuhai's best sequential read on a U280: 425 GB/s; the model's long-run rate is within 0.3%
    assert abs(long_run / SHUHAI_GBPS - 1) < 0.02


def test_random_64_byte_reads_cost_a_precharge_and_an_activate_each(ctx):
    mem = _pc(ctx)
    # Stride of one 16 KB row set + 64 B: every read opens a new row; its two bursts go to
    # banks 2i and 2i+1 (bank = burst index mod 16 under row_column_bank), so consecutive
    # reads use different banks and the controller may prepare read i during read i-1's data.
    addrs = [i * (16 * 1024 + 64) for i in range(100)]
    done = _issue(mem, addrs, 64)
    data = 4454  # 2 bursts x max(2226.09 ps, tCCD_S 2000 ps) rounded up to 2227 whole ps
    first = 12_000 + data  # an unused channel: tRCD, nothing to overlap with
    # Every later read finds another row open in its bank (the model counts a bank outside the
    # previous request's window as holding some row once the channel is in use): tRP + tRCD,
    # of which the previous read's data transfer hides `data`, then its own data.
    conflict = 14_000 + 12_000
    assert done[-1] == first + 99 * conflict  # < tREFI - tRFC: no refresh yet
    assert done[-1] - done[-2] == conflict
    rate = 64 / (conflict / 1000)  # 2.46 GB/s = 17% of the channel's peak
    assert rate / 14.375 == pytest.approx(0.171, abs=0.001)


def test_ddr4_random_reads_explained_by_trp_plus_trcd(ctx):
    mem = _pc(ctx, kind="ddr4", bandwidth_gbps=19.2, burst_bytes=64, capacity_gib=16, dram={"preset": "ddr4_2400"})
    addrs = [i * (16 * 8192 + 64) for i in range(40)]  # new row, next bank each time
    done = _issue(mem, addrs, 64)
    assert done[-1] - done[-2] == 13_320 + 13_320  # tRP + tRCD: 64 B per 26.64 ns = 2.40 GB/s


# The JEDEC timing alone (the preset's calibrated controller efficiency set aside)
DDR4_TIMING = {"preset": "ddr4_2400", "controller_efficiency": 1.0}


def test_ddr4_streaming_efficiency_is_refresh_bound(ctx):
    mem = _pc(ctx, kind="ddr4", bandwidth_gbps=19.2, burst_bytes=64, capacity_gib=16, dram=DDR4_TIMING)
    nbytes = 32 * 2**20
    done = _issue(mem, range(0, nbytes, 2**16), 2**16)[-1]
    # one 64 B burst = 3.333 ns = tCCD_S: peak; refresh blocks tRP + tRFC + tRCD = 376.64 ns of
    # every 7.8 us (the last 8 postponed past the end of the stream)
    assert nbytes / (done / 1000) / 19.2 == pytest.approx(1 - 376.64 / 7800, abs=0.002)


def test_ddr4_preset_controller_fills_its_calibrated_share_of_burst_slots(ctx):
    """The preset's controller efficiency (fitted on Li et al.'s KV260 decode, docs/validation.md)
    scales the streaming rate and nothing else: same stream, same refresh, rate x efficiency."""
    timed = _pc(ctx, kind="ddr4", bandwidth_gbps=19.2, burst_bytes=64, capacity_gib=16, dram=DDR4_TIMING)
    real = _pc(ctx, kind="ddr4", bandwidth_gbps=19.2, burst_bytes=64, capacity_gib=16, dram={"preset": "ddr4_2400"})
    nbytes = 32 * 2**20
    ideal_ps = _issue(timed, range(0, nbytes, 2**16), 2**16)[-1]
    real_ps = _issue(real, range(0, nbytes, 2**16), 2**16)[-1]
    assert real.cfg.dram.controller_efficiency == 0.918
    assert ideal_ps / real_ps == pytest.approx(0.918, abs=0.004)


def test_same_bank_group_mapping_is_bound_by_tccd_l(ctx):
    mem = _pc(ctx, kind="ddr4", bandwidth_gbps=19.2, burst_bytes=64, capacity_gib=16,
              dram={**DDR4_TIMING, "address_mapping": "row_bank_column"})
    done = _issue(mem, [0], 4096)[0]
    # 64 bursts in one bank: tCCD_L 5 ns apart instead of 3.33 ns; one activation (tRCD) first
    assert done == 13_320 + 64 * 5_000


def test_bank_row_column_streaming_pays_every_row_change(ctx):
    mem = _pc(ctx, dram={"preset": "hbm2_u280", "address_mapping": "bank_row_column"})
    done = _issue(mem, [0], 8 * 1024)[0]
    # 8 rows of 1 KB in one bank: 256 bursts at tCCD_L 3 ns, first row tRCD, 7 row switches tRP + tRCD
    assert done == 12_000 + 256 * 3_000 + 7 * (14_000 + 12_000)


def test_write_after_read_pays_the_turnaround(ctx):
    mem = _pc(ctx)
    read, write = _issue(mem, [0], 1024)[0], _issue(mem, [1024], 1024, Command.WRITE)[0]
    # 1024 B = 32 bursts over the 16 banks of row 0; the write continues in those open rows
    assert write - read == 18_000 + 32 * 2227  # tRTW + 32 bursts of 2227 whole ps


def test_postponed_refresh_is_paid_in_idle_time_and_capped_when_busy(ctx):
    mem = _pc(ctx)
    burst = 2227  # one 32 B burst at 14.375 GB/s, rounded up
    (first,) = _issue(mem, [0], 32)
    assert first == 12_000 + burst  # tRCD + data: the debt is far below the 8 postponed refreshes
    # Busy for a long stretch: the debt reaches 8 x tRFC, then the channel refreshes enough to
    # keep it there: over a span T (data + refresh r), T tRFC / tREFI owed - 8 tRFC = r.
    nbytes = 2**20
    (done,) = _issue(mem, [32], nbytes)
    work = done - first
    block = REFRESH_BLOCK_NS * 1000
    assert mem.dram.debt[0] == pytest.approx(8 * block * 3_900_000, rel=1e-6)
    assert mem.stats.time_ps["test"]["overhead:refresh"] == pytest.approx(
        (work * block - 8 * block * 3_900_000) / 3_900_000, rel=0.01)
    # A long idle gap pays the whole debt: the next request runs without refresh.
    ctx.env.run(until=done + 10_000_000)
    mem.schedule(Transaction(Command.READ, 2**21, 32, "t", "x", ctx.env.now))
    # only the new request's own accrual: (tRP + tRCD + one burst) x R, in ps x tREFI units
    assert mem.dram.debt[0] == (14_000 + 12_000 + burst) * block


def test_an_idle_gap_shorter_than_one_refresh_pays_no_debt(ctx):
    block = REFRESH_BLOCK_NS * 1000

    def debt_after(gap_ps):
        env = simpy.Environment()
        mem = _pc(SimContext(env, Tracer(), phase="test"))
        (first,) = _issue(mem, [0], 32)
        owed = mem.dram.debt[0]
        env.run(until=first + gap_ps)
        _issue(mem, [32], 32)
        return owed, mem.dram.debt[0]

    owed, after_long = debt_after(10 * block)  # pays the whole debt, then owes the new work
    work = after_long // block
    assert after_long == work * block and owed > 0
    gap = block - 1000  # 1 ns too short to hold tRP + tRFC + tRCD: the controller cannot refresh
    assert debt_after(gap) == (owed, owed + (gap + work) * block)


def test_windowed_refresh_blocks_a_request_arriving_inside_the_window(ctx):
    mem = _pc(ctx, dram={"preset": "hbm2_u280", "refresh": "windowed"})
    ctx.env.run(until=3_900_000 - 100_000)  # inside [tREFI - (tRP + tRFC + tRCD), tREFI)
    (done,) = _issue(mem, [0], 32)
    assert done == 3_900_000 + 12_000 + 2227


def test_one_channel_placement_is_slower_by_the_bandwidth_ratio(flagship_raw):
    def op_time(placement: str) -> tuple[int, float]:
        flagship_raw["memory"]["hbm"]["placement_channels"] = placement
        cfg = validate_config(flagship_raw)
        acc = Accelerator(cfg, Workload(single_linear(11008, 4096, "int4-2:4"), 1, 1, 0, 16))
        (step,) = acc.run()
        return step.ops[0].end_ps - step.ops[0].start_ps, acc.memories["hbm"].streaming_gbps()

    spread, spread_gbps = op_time("spread")
    one, one_gbps = op_time("one")
    assert spread_gbps / one_gbps == pytest.approx(32)  # 32 pseudo-channels vs 1, same efficiency
    # The spread run also shows the pipeline head and tail (< 10% of it), so the ratio is a bit lower.
    # The short spread run also postpones up to 8 refreshes (8 x 286 ns) to after its end.
    assert 0.9 * 32 < one / spread <= 32 * 1.01 * (1 + 8 * REFRESH_BLOCK_NS * 1000 / spread)


@pytest.mark.parametrize("mapping", ["row_column_bank", "row_bank_column"])
def test_closed_form_hit_count_equals_a_bank_by_bank_check(ctx, mapping):
    mem = _pc(ctx, dram={"preset": "hbm2_u280", "address_mapping": mapping})
    channels, banks = mem.dram, 16
    for last_chunk in (0, 5, 511, 512, 700, 1023, 1024):
        for window in (1, 7, 16):
            open_rows = {}
            for j in range(max(0, last_chunk - window + 1), last_chunk + 1):
                bank, row = channels.bank_row(j)
                open_rows[bank] = row
            for first in range(max(0, last_chunk - 40), last_chunk + 40):
                for count in (1, 3, 16):
                    brute = sum(open_rows.get(channels.bank_row(j)[0]) == channels.bank_row(j)[1]
                                for j in range(first, first + count))
                    assert channels.hits(first, count, last_chunk, window) == brute, (last_chunk, window, first, count)
    assert banks == channels.t.banks


def test_a_remembered_request_outcome_equals_a_fresh_one(ctx):
    # The same request on channels in the same relative state is replayed, not recomputed:
    # replaying must leave every channel exactly as serving it again would.
    def run(remember: bool):
        mem = _pc(ctx, channels=32, bandwidth_gbps=460, capacity_gib=8)
        sequence = [(0, 2**20), (2**20, 2**20), (5 * 2**20 + 64, 4000), (0, 2**20), (2**20, 2**20),
                    (5 * 2**20 + 64, 4000), (3 * 2**20, 700_000)]
        outcomes = []
        for step in range(3):
            now = step * 50_000_000
            for addr, nbytes in sequence:
                shares = mem.split_local(addr, nbytes)
                table = ([0] * 32, [0] * 32)
                last, totals = mem.dram.serve(shares, False, now, table, (addr, nbytes) if remember else None)
                outcomes.append((last, totals, table, list(mem.dram.free), list(mem.dram.state), list(mem.dram.debt)))
                now += 100_000
        return outcomes, len(mem.dram._served)

    fresh, _ = run(False)
    replayed, remembered = run(True)
    assert remembered < 3 * 7  # later steps found their requests remembered
    assert replayed == fresh
