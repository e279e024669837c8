"""Cost of a design: resources per component against the board, and energy from the records."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlmsim.config import load_config
from tlmsim.cost import design_cost
from tlmsim.energy import energy_report
from tlmsim.models.board import BoardConfig, board_names, energy_constants
from tlmsim.models.synthesis import PeDesign, ResourceCount
from tlmsim.models.synthesis.array import interconnect_per_pe
from tlmsim.models.synthesis.cache import table_entry
from tlmsim.models.synthesis.yosys import synthesis_inputs

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"


@pytest.fixture(scope="module")
def flagship_cost():
    return design_cost(load_config(FLAGSHIP))


def test_flagship_pe_array_is_the_synthesized_packed_pe_times_its_192_pes(flagship_cost):
    design = PeDesign(n=2, m=4, lanes=16, pack=2)
    pe = table_entry(synthesis_inputs(design))  # the committed Yosys run (tests/models/test_resources.py
    assert pe is not None                       # re-synthesizes PEs and checks the table is current)
    pes = 4 // 2 * 96
    expected = (ResourceCount.of_pe(pe) + interconnect_per_pe(design)).times(pes)
    line = flagship_cost["components"]["pe_array"]
    assert {k: line[k] for k in ("dsp", "lut", "ff", "bram36", "uram")} == expected.to_json()
    assert line["dsp"] == 192 * (32 + 4)  # 32 product DSPs (two token rows each) + 2 scale DSPs per row


def test_flagship_fits_the_u280_and_totals_are_the_sum_of_its_components(flagship_cost):
    assert flagship_cost["over_budget"] == [] and not flagship_cost["what_if"]
    for kind in ("dsp", "lut", "ff", "bram36", "uram"):
        parts = sum(line[kind] for line in flagship_cost["components"].values())
        assert flagship_cost["total"][kind] == pytest.approx(parts)
        assert flagship_cost["total"][kind] <= flagship_cost["budget"][kind]
    # buffers: 2 x 256 URAM weight banks + 8 MiB of activations in 36 KiB URAMs; 2 x 200 BRAM36 KV banks
    assert flagship_cost["components"]["weight_buffer"]["uram"] == 512
    assert flagship_cost["components"]["activation_buffer"]["uram"] == 8192 // 36 + 1
    assert flagship_cost["components"]["kv_buffer"]["bram36"] == 400
    assert flagship_cost["share_of_board"]["dsp"] == pytest.approx(flagship_cost["total"]["dsp"] / 9024)


def test_the_multiply_free_ternary_pe_array_has_only_scale_dsps():
    cfg = load_config(FLAGSHIP, ["accelerator.pe_array.pe=ternary", "accelerator.pe_array.pack=1",
                                 "workload.weight_format=ternary-2:4", "workload.lm_head_format=ternary"])
    line = design_cost(cfg)["components"]["pe_array"]
    assert line["dsp"] == 4 * 96 * 2  # the two group-scale DSPs per PE; no product DSP


def test_a_packed_ternary_pe_is_refused_with_the_fix():
    with pytest.raises(Exception, match="pe=ternary is the multiply-free PE: it needs ternary: true and pack: 1"):
        load_config(FLAGSHIP, ["accelerator.pe_array.pe=ternary", "workload.weight_format=ternary-2:4"])


@pytest.mark.parametrize("name", board_names())
def test_every_board_preset_validates_and_its_config_fits_it(name):
    board = BoardConfig.model_validate(name)
    assert board.resources.dsp > 0 and board.static_power_w < board.max_power_w
    cost = design_cost(load_config(ROOT / "configs" / "boards" / f"{name}_llama7b.yaml"))
    assert cost["over_budget"] == []


def _result(**phase_extra) -> dict:
    """A hand-made result: one decode phase of 1 s on a board with a 10 W static power."""
    line = {"dsp": 0, "lut": 0, "ff": 0, "bram36": 0, "uram": 0, "source": "test"}
    components = {c: dict(line) for c in ("pe_array", "decoder", "vector_unit", "dmas", "hbm_controller")}
    components["pe_array"].update(dsp=100, lut=1000, ff=2000)
    phase = {"steps": 10, "time_s": 1.0, "bytes_by_memory": {"hbm": 10**9},
             "utilisation": {"pe_array": {"busy": 0.5}, "hbm": {"busy": 0.25}},
             "counts": {"weight_dma": {"bytes": 10**9}}, **phase_extra}
    config = {"board": {"family": "xcup", "static_power_w": 10.0},
              "accelerator": {"clock_mhz": 100.0, "vector_unit": {"lanes": 4},
                              "weight_buffer": {"memory": "uram"}, "kv_buffer": {"memory": "bram"},
                              "activation_buffer": {"memory": "uram"},
                              "pe_array": {"rows": 2, "lanes": 1, "m": 4}},
              "memory": {"hbm": {"kind": "hbm2"}}, "workload": {"batch": 1, "prefill_tokens": 8, "activation_bits": 8}}
    return {"config": config, "cost": {"components": components, "total": {"ff": 2000}}, "phases": {"decode": phase}}


def test_energy_of_a_hand_made_phase_matches_the_constants_by_hand():
    k = energy_constants("xcup")
    report = energy_report(_result())["phases"]["decode"]
    busy_cycles = 0.5 * 1.0 * 100e6
    pe = busy_cycles * (100 * k.dsp_pj_per_op + (1000 * k.lut_pj_per_toggle + 2000 * k.ff_pj_per_toggle)
                        * k.toggle_rate) * 1e-12
    hbm = 8e9 * k.hbm2_pj_per_bit * 1e-12
    weight_buffer = 2 * 8e9 * k.uram_pj_per_bit * 1e-12
    axi = 8e9 * k.axi_pj_per_bit * 1e-12
    activations = busy_cycles * 2 * 1 * 4 * 8 * k.uram_pj_per_bit * 1e-12
    clock = 2000 * 100e6 * k.clock_pj_per_ff_cycle * 1e-12
    j = report["joules"]
    assert j["static"] == 10.0
    assert j["pe_array"] == pytest.approx(pe)
    assert j["hbm"] == pytest.approx(hbm)
    assert j["weight_buffer"] == pytest.approx(weight_buffer)
    assert j["dmas"] == pytest.approx(axi)
    assert j["activation_buffer"] == pytest.approx(activations)
    assert j["clock_tree"] == pytest.approx(clock)
    assert report["total_j"] == pytest.approx(sum(j.values()))
    assert report["j_per_token"] == pytest.approx(report["total_j"] / 10)  # 10 decode steps of batch 1
    assert report["average_w"] == pytest.approx(report["total_j"])  # over 1 s


def test_energy_grows_with_bytes_moved_and_static_power_with_time():
    base = energy_report(_result())["phases"]["decode"]
    more = energy_report(_result(bytes_by_memory={"hbm": 2 * 10**9}))["phases"]["decode"]
    assert more["joules"]["hbm"] == pytest.approx(2 * base["joules"]["hbm"])
    longer = energy_report(_result(time_s=2.0))["phases"]["decode"]
    assert longer["joules"]["static"] == 2 * base["joules"]["static"]
