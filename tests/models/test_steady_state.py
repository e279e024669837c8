"""Steady-state reuse must not change any result: runs with and without it are compared
field by field (step times, op spans, roofline demands, utilisation, per-channel reports)."""

import json
from pathlib import Path

import pytest
from tiers import ci_subset

from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.simulate import build_workload, summarize

FLAGSHIP = Path(__file__).resolve().parents[2] / "configs" / "u280_llama7b.yaml"
SHORT = ["workload.prefill_tokens=16", "workload.decode_tokens=4"]


def _run(overrides: list[str], reuse: bool):
    cfg = load_config(FLAGSHIP, [*SHORT, *overrides, f"simulation.reuse_identical_layers={str(reuse).lower()}"])
    acc = Accelerator(cfg, build_workload(cfg))
    result = summarize(cfg, acc, acc.run())
    result.pop("config")  # differs in the reuse flag only
    result.pop("reuse")  # how many layers and tiles were skipped
    return json.dumps(result, sort_keys=True), acc


CONFIGS = {
    "flagship": [],  # HBM-bound decode
    "50GBps": ["memory.hbm.bandwidth_gbps=50"],
    "200GBps-batch2": ["memory.hbm.bandwidth_gbps=200", "workload.batch=2"],
    "batch16": ["workload.batch=16"],  # PE-bound decode
    "batch8-300GBps": ["workload.batch=8", "memory.hbm.bandwidth_gbps=300"],
    "ideal-1000GBps": ["memory.hbm.dram=null", "memory.hbm.switch=null", "memory.hbm.bandwidth_gbps=1000"],
    "int4": ["workload.weight_format=int4"],
    "int4-1:4": ["workload.weight_format=int4-1:4", "accelerator.pe_array.n=1", "accelerator.pe_array.m=4"],
    "ternary": ["workload.weight_format=ternary"],
    "fp16-spill": ["workload.weight_format=fp16", "placement.weights=[hbm, ddr]", "placement.embeddings=[hbm, ddr]"],
    "int4-lm_head": ["workload.lm_head_format=int4"],
    "kv8": ["workload.kv_bits=8"],
    "prompt300": ["workload.prefill_tokens=300"],
    "channel-range": ["memory.hbm.placement_channels=range", "memory.hbm.channel_range=[0, 24]"],
    "one-channel": ["memory.hbm.placement_channels=one"],  # tensors cannot be aligned: no reuse
    "8-axi-ports": ["memory.hbm.switch.ports_used=8"],
    "31-axi-ports": ["memory.hbm.switch.ports_used=31"],  # lateral links carry mini-switch 7's excess
    "3-banks": ["accelerator.weight_buffer.banks=3", "accelerator.weight_buffer.bank_kib=6144"],
    "512KiB-banks": ["accelerator.weight_buffer.bank_kib=512"],
    "all-ddr": ["placement.weights=[ddr]", "placement.kv_cache=[ddr]", "placement.embeddings=[ddr]"],
    "streamed-tiles": ["accelerator.weight_buffer.stream_tiles=true", "accelerator.kv_buffer.stream_tiles=true"],
    "fifo": ["memory.hbm.arbitration=fifo", "memory.ddr.arbitration=fifo"],
}


# CI runs one configuration per kind of state (memory- and PE-bound, each INT format, both
# memories, more banks, streamed tiles); fp16 with its DDR4 spill (30 s), lateral HBM
# traffic (31 ports) and one-channel placement (which reuses nothing) run with TLMSIM_FULL=1.
IN_CI = {"flagship", "batch16", "int4", "ternary", "3-banks", "all-ddr", "streamed-tiles"}


@pytest.mark.parametrize("name", ci_subset(list(CONFIGS), IN_CI))
def test_reuse_changes_no_result(name):
    overrides = CONFIGS[name]
    with_reuse, acc = _run(overrides, True)
    without, plain = _run(overrides, False)
    assert plain.reuse.layers_skipped == 0
    assert with_reuse == without


def test_flagship_decode_skips_layers_and_lm_head_tiles():
    _, acc = _run([], True)
    reuse = acc.reuse
    # The prefill simulates layers 0-2 and skips 29. A decode step's channels settle within a
    # few layers (a tensor's last partial interleave round lands on the low channels, which
    # then run at most the 2 KiB stream skew ahead): it simulates up to 6 layers and skips the
    # rest. The fp16 lm_head's 250 tiles of 1 MiB repeat once the weight buffer's 18
    # prefetched tiles have drained to the memory's pace: at most a few checkpoints (every 16
    # tiles) in, and the DMA holds up to 18 tiles that are not skipped.
    assert reuse.layers_skipped >= 29 + 4 * 26
    assert reuse.tiles_skipped > 4 * (250 - 18 - 2 * 16)
    step = acc.steps[-1]
    spans = [(op.start_ps, op.end_ps) for op in step.ops if op.name.endswith("mlp.down_proj")]
    assert len(spans) == 32
    # Skipped layers are put back one period apart, in order, inside the step.
    starts = [s for s, _ in spans]
    assert starts == sorted(starts) and step.start_ps < starts[0] and spans[-1][1] <= step.end_ps
    periods = {b - a for a, b in zip(starts[2:], starts[3:])}
    assert len(periods) == 1


def test_windowed_refresh_is_reused_only_where_the_refresh_phase_repeats():
    # Fixed refresh windows make the absolute time (modulo tREFI) part of the state: a period
    # is skipped only if it is a whole number of refresh intervals (a busy stream pushed past
    # each window locks to them), and the result is the same as without reuse.
    override = ["memory.hbm.dram.refresh=windowed"]
    with_reuse, acc = _run(override, True)
    without, _ = _run(override, False)
    refi = acc.memories["hbm"].timing.refi
    assert all(skip.period_ps % refi == 0 for skip in acc.reuse.engine.skips)
    assert with_reuse == without


def test_traced_steps_are_reused_with_identical_traces():
    # The prefill and decode step 1 are traced: skipped layers' and tiles' records are copied
    # one period apart and renamed to the layers they stand for.
    def trace(reuse: bool):
        result, acc = _run(["trace.decode_steps=2"], reuse)
        tracer = acc.ctx.tracer
        slices = sorted((s.track, s.state, s.name, s.start_ps, s.end_ps) for s in tracer.slices)
        counters = sorted((c.track, c.ts_ps, c.value) for c in tracer.counters)
        return result, slices, counters, acc.reuse.layers_skipped

    with_reuse, without = trace(True), trace(False)
    assert with_reuse[3] >= 29 + 4 * 26 and without[3] == 0  # every step skips layers, traced or not
    assert with_reuse[0] == without[0]
    assert len(with_reuse[1]) == len(without[1]) > 10_000
    assert with_reuse[1] == without[1]
    assert with_reuse[2] == without[2]
