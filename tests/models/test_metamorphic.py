"""Metamorphic properties over random valid designs (hypothesis, a tiny LLaMA, prefill + decode).

No expected numbers: each example draws a design and checks relations that any sound
model of it must keep. More of a resource (bandwidth, clock, channels, PE rows, columns
or lanes, banks, bank size, bank width, decoder rate) never makes a run slower by more
than 0.1%; a run never beats the memory-bandwidth bound computed independently of the
event model; every busy/stall fraction lies in [0, 1] and a component's fractions sum to
at most 1 per phase; steady-state reuse changes nothing.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tiers import FULL

from tlmsim.config import validate_config
from tlmsim.engine.errors import ConfigError
from tlmsim.models.accelerator import Accelerator
from tlmsim.workloads.phases import Workload

NOISE = 1e-3  # "never slower" allows 0.1%
PREFILL, DECODE = 8, 3
# Per "more hardware" property (two designs each); the invariants test draws twice as many.
# CI: 9 x 10 x 2 + 20 = 200 designs; TLMSIM_FULL=1: 9 x 16 x 2 + 32 = 320.
EXAMPLES = 16 if FULL else 10


def _design(draw) -> dict:
    """Overrides of the flagship that give a valid design (buffers that fit the FPGA)."""
    bank_kib = draw(st.sampled_from([64, 144, 288, 1024, 2304]))
    return {
        ("memory", "hbm", "bandwidth_gbps"): draw(st.sampled_from([115.0, 230.0, 460.0, 920.0])),
        ("accelerator", "clock_mhz"): draw(st.sampled_from([150.0, 250.0, 400.0])),
        ("accelerator", "pe_array", "rows"): draw(st.sampled_from([1, 2, 4, 8])),
        ("accelerator", "pe_array", "cols"): draw(st.sampled_from([8, 16, 64, 128])),
        ("accelerator", "pe_array", "lanes"): draw(st.sampled_from([2, 4, 16])),
        ("accelerator", "weight_buffer", "banks"): draw(st.sampled_from([2, 3, 4])),
        ("accelerator", "weight_buffer", "bank_kib"): bank_kib,
        ("accelerator", "weight_buffer", "tile_kib"): draw(st.sampled_from([None, 32, 64])),
        ("accelerator", "weight_buffer", "width_bits"): draw(st.sampled_from([None, 1152, 4608])),
        ("accelerator", "decoder", "weights_per_cycle"): draw(st.sampled_from([256, 1024, 4096])),
    }


# Each "more hardware" step: the field and how it grows.
MORE = {
    "bandwidth": (("memory", "hbm", "bandwidth_gbps"), lambda v: v * 2),
    "clock": (("accelerator", "clock_mhz"), lambda v: v * 1.5),
    "rows": (("accelerator", "pe_array", "rows"), lambda v: v * 2),
    "cols": (("accelerator", "pe_array", "cols"), lambda v: v * 2),
    "lanes": (("accelerator", "pe_array", "lanes"), lambda v: v * 2),
    "banks": (("accelerator", "weight_buffer", "banks"), lambda v: v + 1),
    "bank size": (("accelerator", "weight_buffer", "bank_kib"), lambda v: v * 2),
    "bank width": (("accelerator", "weight_buffer", "width_bits"), lambda v: (v or 72) * 4),
    "decoder rate": (("accelerator", "decoder", "weights_per_cycle"), lambda v: v * 2),
}


def _config(base: dict, design: dict):
    raw = copy.deepcopy(base)
    raw["workload"].update(prefill_tokens=PREFILL, decode_tokens=DECODE)
    for path, value in design.items():
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return validate_config(raw)


def _run(cfg, graph, reuse: bool = True) -> Accelerator:
    cfg = cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"reuse_identical_layers": reuse})})
    acc = Accelerator(cfg, Workload(graph, 1, PREFILL, DECODE, 16))
    acc.run()
    return acc


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
# Known violations, kept visible (docs/validation.md, "Metamorphic properties"; not strict:
# the derandomized designs may or may not hit them as the model changes):
# * more tile slots let the weight DMA queue more prefetch reads at the memory, and a read
#   the critical path needs (the embedding gather, a KV read) waits behind them in the
#   channel's FIFO;
# * the controller cuts weight tiles in multiples of the array's columns, so a wider array
#   can get other (fewer-row) tiles and a different pipeline.
KNOWN = {
    "banks": "more slots queue more weight prefetch ahead of critical-path reads in a FIFO memory",
    "bank size": "more slots queue more weight prefetch ahead of critical-path reads in a FIFO memory",
    "cols": "weight tiles are cut in multiples of the array's columns",
}
PROPERTIES = [pytest.param(name, marks=pytest.mark.xfail(strict=False, reason=KNOWN[name])) if name in KNOWN
              else name for name in sorted(MORE)]


@pytest.mark.parametrize("more", PROPERTIES)
@settings(max_examples=EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_more_hardware_is_never_slower(flagship_raw, tiny_llama_graph, more, data):
    design = _design(data.draw)
    path, grow = MORE[more]
    bigger = {**design, path: grow(design[path])}
    small, large = _valid(flagship_raw, design), _valid(flagship_raw, bigger)
    if small is None or large is None:
        return
    before, after = _phase_times(_run(small, tiny_llama_graph)), _phase_times(_run(large, tiny_llama_graph))
    for phase in before:
        assert after[phase] <= before[phase] * (1 + NOISE), (more, phase, after[phase] / before[phase], design)


@settings(max_examples=2 * EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_fractions_bounds_and_reuse_hold_for_any_design(flagship_raw, tiny_llama_graph, data):
    cfg = _valid(flagship_raw, _design(data.draw))
    if cfg is None:
        return
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
