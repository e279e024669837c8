"""rtl/nm_pe.v against tlmsim/models/pe_core.py: bit-exact results and exact cycle counts.

Each config is built once; the same RTL observations are checked against the Python
model (pe_dot), an independent dense golden, the timing model (dot_cycles), and a
deliberately broken copy of the model that must be caught.
"""

from __future__ import annotations

import numpy as np
import pe_runner
import pe_stimulus
import pytest
from pe_campaign import CONFIGS, PACK, Campaign
from tiers import ci_subset

from tlmsim.models import pe_core

pytestmark = pytest.mark.rtl
# CI builds three configurations (INT4 and ternary, 2:4 and 4:8, packed, narrow accumulators:
# the flagship's packed 2:4 INT4 PE holds the unpacked one's datapath); the unpacked 2:4 INT4
# PE, ternary 1:4 with a 23-bit accumulator and the others run with TLMSIM_FULL=1.
NAMES = ci_subset(list(CONFIGS), {"int4_2of4_pack2", "ternary_2of4", "int4_4of8_acc25"})


def mismatches(campaign: Campaign, expected_by_batch: list, row: int = 0) -> list[str]:
    """Tiles where RTL and expectation differ, as readable lines (empty when all agree)."""
    lines = []
    for b, expected in enumerate(expected_by_batch):
        got = campaign.rtl_results(b, row)
        for t in np.flatnonzero(np.asarray(expected, dtype=np.int64) != got):
            lines.append(f"row {row} batch {b} tile {t}: rtl {got[t]} expected {expected[t]}")
    return lines


def mismatches_all_rows(campaign: Campaign, expected) -> list[str]:
    """mismatches() of every token row; `expected(params, tiles)` gives one batch's results."""
    return [line for r, batches in enumerate(campaign.rows)
            for line in mismatches(campaign, [expected(campaign.params, t) for t in batches], r)]


def model_results(c: Campaign) -> list[np.ndarray]:
    """pe_core.pe_dot on every batch of a campaign (row 0)."""
    return [pe_dot(c.params, t) for t in c.batches]


def pe_dot(p, t):
    """pe_core.pe_dot of one batch of tiles."""
    return pe_core.pe_dot(p, t.acts, t.codes, t.indices, t.scales)


@pytest.mark.parametrize("name", NAMES)
def test_lint_is_clean_with_all_warnings(name):
    result = pe_runner.lint(CONFIGS[name], PACK.get(name, 1))
    assert result.returncode == 0 and "%Warning" not in result.stderr, result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_rtl_matches_python_model_bit_exactly(rtl_runs, name):
    c = rtl_runs.campaign(name, "stream")
    assert len(c.observed["outputs"]) == len(c.order) >= 1, c.tag
    assert len(c.rows) == PACK.get(name, 1), c.tag
    bad = mismatches_all_rows(c, pe_dot)
    assert not bad, f"{c.tag}: {len(bad)} mismatches, first: {bad[:5]}"


@pytest.mark.parametrize("name", NAMES)
def test_rtl_matches_dense_golden(rtl_runs, name):
    c = rtl_runs.campaign(name, "stream")
    bad = mismatches_all_rows(c, pe_stimulus.dense_golden)
    assert not bad, f"{c.tag}: {len(bad)} mismatches, first: {bad[:5]}"


@pytest.mark.parametrize("name", ci_subset(["int4_4of8_acc25", "ternary_1of4_acc23", "int4_4of8_acc25_pack2"],
                                          {"int4_4of8_acc25"}))
def test_small_accumulators_do_wrap_in_the_stimulus(rtl_runs, name):
    c = rtl_runs.campaign(name, "stream")
    limit = 1 << (c.params.acc_bits - 1)
    exact = [x for t in c.rows[-1] for x in pe_stimulus.exact_results(t)]
    wrapped = sum(not -limit <= x < limit for x in exact)
    assert wrapped >= len(exact) // 10, f"{c.tag}: only {wrapped} tiles exceed acc range; wrap-around untested"


@pytest.mark.parametrize("name", NAMES)
def test_cycles_per_tile_equal_dot_cycles(rtl_runs, name):
    c = rtl_runs.campaign(name, "stream")
    obs = c.observed
    measured = np.array(obs["out_cycle"]) - np.array(obs["first_beat_cycle"])
    expected = np.array([pe_core.dot_cycles(c.params, int(c.batches[b].k_inputs[t])) for b, t in c.order])
    assert obs["input_gap_cycles"] == obs["output_stall_cycles"] == 0, c.tag
    assert measured.tolist() == expected.tolist(), c.tag


@pytest.mark.parametrize("name", NAMES)
def test_stream_of_tiles_runs_at_one_beat_per_cycle(rtl_runs, name):
    c = rtl_runs.campaign(name, "stream")
    obs = c.observed
    span = obs["out_cycle"][-1] - obs["first_beat_cycle"][0]
    ii, latency = pe_core.initiation_interval(c.params), pe_core.latency_cycles(c.params)
    assert span == (obs["beats_accepted"] - 1) * ii + latency, c.tag


@pytest.mark.parametrize("name", NAMES)
def test_backpressure_and_input_gaps_keep_results_exact(rtl_runs, name):
    c = rtl_runs.campaign(name, "backpressure")
    obs = c.observed
    enough = max(1, len(c.order) // 10)
    assert min(obs["input_gap_cycles"], obs["output_stall_cycles"]) >= enough, f"{c.tag}: too few stalls"
    assert not obs["protocol_errors"], f"{c.tag}: {obs['protocol_errors'][:5]}"
    bad = mismatches_all_rows(c, pe_stimulus.dense_golden)
    assert not bad, f"{c.tag}: {len(bad)} mismatches, first: {bad[:5]}"


@pytest.mark.parametrize("name", NAMES)
def test_cross_check_catches_a_corrupted_index_decoder(rtl_runs, name, monkeypatch):
    c = rtl_runs.campaign(name, "stream")
    honest = mismatches(c, model_results(c))
    original = pe_core._indices_or_identity

    def flip_top_index_bit(p, indices, acts_shape):
        # corrupt only the last kept weight of the last lane: one index bit per beat
        flipped = np.array(original(p, indices, acts_shape))
        flipped[..., -1, -1] ^= 1 << (p.index_bits - 1)
        return flipped

    monkeypatch.setattr(pe_core, "_indices_or_identity", flip_top_index_bit)
    caught = mismatches(c, model_results(c))
    assert not honest, f"{c.tag}: the unbroken model already disagrees"
    assert len(caught) > len(c.order) // 2, f"{c.tag}: a corrupted index mux went unnoticed ({len(caught)} tiles)"
