"""Metamorphic properties over random valid designs (hypothesis, a tiny LLaMA, prefill + decode).

No expected numbers: each example draws a design and checks relations that any sound
model of it must keep. More of a resource (bandwidth, clock, HBM channels, PE rows,
columns or lanes, banks, bank size, bank width, decoder rate, tiles streamed while they
arrive) never makes a run slower by more than 0.1%, beyond two measured allowances
(below); a sparser format is never slower, a batch of two never lowers throughput; a run
never beats the memory-bandwidth bound computed independently of the event model; every
busy/stall fraction lies in [0, 1] and a component's fractions sum to at most 1 per phase;
steady-state reuse changes nothing.

"Slower" compares when each phase ends (the first token's time, the last token's time),
not each phase's own length: the weight DMA prefetches across the prefill/decode boundary,
so a design with a shorter prefill leaves less of decode's weights loaded before decode
starts. On a bandwidth-bound design the weight stream ends at the same time either way,
and the faster design's decode phase is longer by what its prefill saved (found with 8
and 16 channels: clock 400 -> 600 MHz, decode phase +5.6%, run 0.7% shorter).

Two physical exceptions, both from more prefetch keeping channels busy more often. A
critical request (KV read, KV append) that meets the weight prefetch cuts into it and holds
it (its row re-opened, a write's bus turned back; docs/memory.md, "Arbitration"), while one
that finds the channel idle holds nothing: each run counts how long cut-ins held the stream
(``stream_held_ps`` in the memories' stats), and the larger design may be slower by what
its cut-ins held the stream longer. And a KV append queued right behind a read waits for
the bus to turn (tRTW), where an idle gap would have turned it: one tRTW per append (18 ns
on the U280 preset, 0.02% of a LLaMA-7B decode step, up to 1% of the tiny model's).
"""

from __future__ import annotations

import copy
import functools

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from tiers import FULL

from tlmsim.config import validate_config
from tlmsim.engine.errors import ConfigError
from tlmsim.models.accelerator import Accelerator
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Workload

NOISE = 1e-3  # "never slower" allows 0.1%
PREFILL, DECODE = 8, 3
# Valid designs per "more hardware" property (two runs each), per format pair and per batch
# test; the invariants test draws twice as many. CI: 13 x 12 x 2 + 24 = 336 designs;
# TLMSIM_FULL=1: 13 x 40 x 2 + 80 = 1120.
EXAMPLES = 40 if FULL else 12


def _design(draw) -> dict:
    """Overrides of the flagship that give a valid design (buffers that fit the FPGA)."""
    bank_kib = draw(st.sampled_from([64, 144, 288, 1024, 2304]))
    return {
        ("memory", "hbm", "bandwidth_gbps"): draw(st.sampled_from([115.0, 230.0, 460.0, 920.0])),  # for 32 channels
        ("memory", "hbm", "channels"): draw(st.sampled_from([8, 16, 32])),
        ("accelerator", "clock_mhz"): draw(st.sampled_from([150.0, 250.0, 400.0])),
        ("accelerator", "pe_array", "rows"): draw(st.sampled_from([1, 2, 4, 8])),
        ("accelerator", "pe_array", "cols"): draw(st.sampled_from([8, 16, 64, 128])),
        ("accelerator", "pe_array", "lanes"): draw(st.sampled_from([2, 4, 16])),
        ("accelerator", "weight_buffer", "banks"): draw(st.sampled_from([2, 3, 4])),
        ("accelerator", "weight_buffer", "bank_kib"): bank_kib,
        ("accelerator", "weight_buffer", "tile_kib"): draw(st.sampled_from([None, 32, 64])),
        ("accelerator", "weight_buffer", "width_bits"): draw(st.sampled_from([None, 1152, 4608])),
        ("accelerator", "decoder", "weights_per_cycle"): draw(st.sampled_from([256, 1024, 4096])),
        ("accelerator", "weight_buffer", "stream_tiles"): False,
    }


# Each "more hardware" step: the field and how it grows.
MORE = {
    "bandwidth": (("memory", "hbm", "bandwidth_gbps"), lambda v: v * 2),
    "channels": (("memory", "hbm", "channels"), lambda v: v * 2),  # 32 -> 64 is refused: not a pair
    "clock": (("accelerator", "clock_mhz"), lambda v: v * 1.5),
    "rows": (("accelerator", "pe_array", "rows"), lambda v: v * 2),
    "cols": (("accelerator", "pe_array", "cols"), lambda v: v * 2),
    "lanes": (("accelerator", "pe_array", "lanes"), lambda v: v * 2),
    "banks": (("accelerator", "weight_buffer", "banks"), lambda v: v + 1),
    "bank size": (("accelerator", "weight_buffer", "bank_kib"), lambda v: v * 2),
    "bank width": (("accelerator", "weight_buffer", "width_bits"), lambda v: (v or 72) * 4),
    "decoder rate": (("accelerator", "decoder", "weights_per_cycle"), lambda v: v * 2),
    "streamed tiles": (("accelerator", "weight_buffer", "stream_tiles"), lambda v: True),
}


def _config(base: dict, design: dict):
    raw = copy.deepcopy(base)
    raw["workload"].update(prefill_tokens=PREFILL, decode_tokens=DECODE)
    for path, value in design.items():
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    _scale_channels(raw["memory"]["hbm"])
    return validate_config(raw)


def _scale_channels(hbm: dict) -> None:
    """HBM with ``channels`` pseudo-channels of the U280 kind: each with its own AXI port,
    1/32 of the drawn bandwidth and of the 8 GiB; more channels are more memory."""
    share = hbm["channels"] / 32
    hbm["bandwidth_gbps"] *= share
    hbm["capacity_gib"] *= share
    hbm["switch"]["ports_used"] = hbm["channels"]


def _run(cfg, graph, reuse: bool = True, batch: int = 1) -> Accelerator:
    cfg = cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"reuse_identical_layers": reuse})})
    acc = Accelerator(cfg, Workload(graph, batch, PREFILL, DECODE, 16))
    acc.run()
    return acc


def _phase_ends(acc: Accelerator) -> dict[str, int]:
    """When each phase ends (ps from the start of the run): the "never slower" measure."""
    return {phase: max(s.end_ps for s in acc.steps if s.step.phase == phase) for phase in _phase_times(acc)}


def _phase_times(acc: Accelerator) -> dict[str, int]:
    times: dict[str, int] = {}
    for s in acc.steps:
        times[s.step.phase] = times.get(s.step.phase, 0) + s.end_ps - s.start_ps
    return times


def _valid(base, design):
    try:
        return _config(base, design)
    except ConfigError:
        return None  # e.g. buffers that do not fit the FPGA: not a design to compare


# Derandomized (the same designs in every CI run) and not shrunk: a failure prints its design.
SETTINGS = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
PROPERTIES = sorted(MORE)


def _turnaround_allowance(cfg, graph) -> dict[str, int]:
    """ps by each phase's end that more prefetch may add in bus turnarounds: one tRTW per KV
    append so far (module docstring)."""
    dram = cfg.memory["hbm"].dram
    rtw = round(dram.t_rtw_ns * 1000) if dram is not None else 0
    appends = sum(1 for n in graph.nodes if graph.nodes[n]["kind"] == OpKind.KV_APPEND)
    steps = {"prefill": 1, "decode": 1 + DECODE}  # steps up to each phase's end
    return {phase: count * appends * rtw for phase, count in steps.items()}


def _extra_hold(small: Accelerator, large: Accelerator) -> dict[str, int]:
    """ps by each phase's end that ``large``'s cut-ins held its weight stream longer than
    ``small``'s (module docstring; never negative)."""
    extra, total = {}, 0
    for phase in _phase_times(small):
        total += sum(large.components[m].stats.counts[phase]["stream_held_ps"]
                     - small.components[m].stats.counts[phase]["stream_held_ps"] for m in small.memories)
        extra[phase] = max(total, 0)
    return extra


@pytest.mark.parametrize("more", PROPERTIES)
@settings(max_examples=EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_more_hardware_is_never_slower(flagship_raw, tiny_llama_graph, more, data):
    design = _design(data.draw)
    path, grow = MORE[more]
    bigger = {**design, path: grow(design[path])}
    small, large = _valid(flagship_raw, design), _valid(flagship_raw, bigger)
    assume(small is not None and large is not None)  # only valid pairs count as examples
    small_run, large_run = _run(small, tiny_llama_graph), _run(large, tiny_llama_graph)
    before, after, held = _phase_ends(small_run), _phase_ends(large_run), _extra_hold(small_run, large_run)
    turns = _turnaround_allowance(small, tiny_llama_graph)
    for phase in before:
        assert after[phase] <= before[phase] * (1 + NOISE) + held[phase] + turns[phase], \
            (more, phase, after[phase] / before[phase], held[phase], design)


@settings(max_examples=2 * EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fractions_bounds_and_reuse_hold_for_any_design(flagship_raw, tiny_llama_graph, data):
    cfg = _valid(flagship_raw, _design(data.draw))
    assume(cfg is not None)
    acc = _run(cfg, tiny_llama_graph)
    for name, comp in acc.components.items():
        width = comp.cfg.channels if name in acc.memories else 1
        for phase, times in comp.stats.time_ps.items():
            duration = _phase_times(acc).get(phase)
            if not duration:
                continue
            fractions = [t / (duration * width) for t in times.values()]
            assert all(0 <= f <= 1 + 1e-9 for f in fractions), (name, phase, times)
            assert sum(fractions) <= 1 + 1e-9, (name, phase, sum(fractions))
    for s in acc.steps:  # no step beats the time its bytes need at peak bandwidth
        assert s.end_ps - s.start_ps >= max(s.demands_ps.get(m, 0) for m in acc.memories)
    plain = _run(cfg, tiny_llama_graph, reuse=False)
    assert [(s.start_ps, s.end_ps) for s in plain.steps] == [(s.start_ps, s.end_ps) for s in acc.steps]


def test_the_designs_are_mostly_valid(flagship_raw):
    """The strategy must not waste its examples on refused designs."""
    from hypothesis import find

    assert find(st.data(), lambda d: _valid(flagship_raw, _design(d.draw)) is not None) is not None
    with pytest.raises(ConfigError):
        _config(flagship_raw, {("accelerator", "weight_buffer", "bank_kib"): 10**6})  # beyond the FPGA's URAM


# Each N:M format against dense INT4 on the same PE array, built for that N:M (a 2:4 PE
# cannot run 1:4 weights; and a 1:4 PE has half the multipliers of a 2:4 one for dense
# work such as the fp16 lm_head, so formats on different PEs compare hardware, not formats).
SPARSE = ["int4-2:4", "int4-1:4", "int4-2:8", "int4-1:8"]


@functools.cache
def _graph(spec: str):
    """The tiny LLaMA's layer graph with decoder weights in ``spec`` (lm_head fp16)."""
    from transformers import LlamaConfig

    from tlmsim.workloads.graph import build_meta_model, extract_layer_graph, layer_index

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=512)
    body, head = parse_format(spec), parse_format("fp16")

    def info(name, out_f, in_f):
        fmt = body if layer_index(name) is not None else head
        return fmt.name, fmt.packed_nbytes(out_f, in_f)

    return extract_layer_graph(build_meta_model(cfg), info)


def _with_format(design: dict, spec: str, pe_for: str) -> dict:
    """``design`` running ``spec`` on a PE array built for the N:M pattern of ``pe_for``."""
    pe, built = ("accelerator", "pe_array"), parse_format(pe_for)
    return {**design, ("workload", "weight_format"): spec, (*pe, "n"): built.n, (*pe, "m"): built.m}


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_a_sparser_format_is_never_slower(flagship_raw, data):
    sparse = data.draw(st.sampled_from(SPARSE))
    design = _design(data.draw)
    dense_cfg = _valid(flagship_raw, _with_format(design, "int4", sparse))
    sparse_cfg = _valid(flagship_raw, _with_format(design, sparse, sparse))
    assume(dense_cfg is not None and sparse_cfg is not None)
    before, after = _phase_ends(_run(dense_cfg, _graph("int4"))), _phase_ends(_run(sparse_cfg, _graph(sparse)))
    for phase in before:
        assert after[phase] <= before[phase] * (1 + NOISE), (sparse, phase, after[phase] / before[phase], design)


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_batching_never_lowers_throughput(flagship_raw, tiny_llama_graph, data):
    cfg = _valid(flagship_raw, _design(data.draw))
    assume(cfg is not None)
    try:
        one, two = _run(cfg, tiny_llama_graph, batch=1), _run(cfg, tiny_llama_graph, batch=2)
    except ConfigError:  # a batch of two does not fit this design's buffers
        assume(False)
    times_one, times_two = _phase_times(one), _phase_times(two)
    for phase in times_one:  # tokens per second: twice the tokens in the batch-2 run
        assert times_two[phase] <= 2 * times_one[phase] * (1 + NOISE), (phase, times_two[phase] / times_one[phase])
