"""Weight-format study on one 4096 x 4096 matmul: the qualitative claims of docs/studies.md."""

from pathlib import Path

import pytest
import yaml

from tlmsim.config import load_config
from tlmsim.study import run_study
from tlmsim.workloads.formats import parse_format

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    study = yaml.safe_load((ROOT / "configs" / "studies" / "matmul_4096.yaml").read_text())
    study["base"] = str(ROOT / "configs" / "u280_llama7b.yaml")
    path = tmp_path_factory.mktemp("s") / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return {(r["format"], r["batch"]): r for r in run_study(path)}


def _density(spec):
    if "-" not in spec:
        return 1.0
    n, m = spec.split("-")[1].split(":")
    return int(n) / int(m)


def _between_ideal_and_one(speedup, ideal, spec):
    """Fixed costs (first read, pipeline drain) pull a ratio from its ideal towards 1, by < 15%."""
    low, high = sorted((ideal, 1.0))
    assert low * 0.999 <= speedup <= high * 1.001, spec
    assert abs(speedup / ideal - 1) < 0.15, spec


def test_sparser_formats_never_move_more_bytes(rows):
    int4 = [(f, r["weight_bytes"]) for (f, b), r in rows.items() if b == 1 and f.startswith("int4")]
    for fa, ba in int4:
        for fb, bb in int4:
            if _density(fa) < _density(fb):
                assert ba <= bb, (fa, fb)


def _dense_array_us(spec: str, weights: int) -> float:
    """Analytic time of the flagship array on dense weights at batch 1: one token row busy,
    ``n x lanes`` weights per column and beat, fp16 in 4 beats on the INT4 multipliers."""
    cfg = load_config(ROOT / "configs" / "u280_llama7b.yaml")
    pe = cfg.accelerator.pe_array
    beats = 4 if spec == "fp16" else 1
    return weights * beats / (pe.cols * pe.lanes * pe.n) / cfg.accelerator.clock_mhz


def test_batch_1_is_bound_by_the_slower_of_memory_and_array_and_speedups_follow_bytes(rows):
    """At batch 1 an op streams its weights once. On the 4 x 96 flagship array one token row
    takes 3,072 dense weights per cycle, about 390 GB/s of INT4: slower than HBM, so dense
    formats are bound by the array; N:M beats take m x lanes inputs and HBM binds."""
    hbm_gbps = load_config(ROOT / "configs" / "u280_llama7b.yaml").memory["hbm"].bandwidth_gbps
    for (spec, batch), r in rows.items():
        if batch != 1:
            continue
        # at most the fixed head/tail (first read, drain) above the bound
        assert r["roofline_us"] <= r["latency_us"] <= 1.3 * r["roofline_us"], spec
        if "-" in spec:
            assert r["bound_by"] == "hbm", spec
        else:
            slower = _dense_array_us(spec, 4096 * 4096) > r["weight_bytes"] / hbm_gbps / 1e3
            assert r["bound_by"] == ("pe_array" if slower else "hbm"), spec
    ref = rows[("int4-2:4", 1)]
    for (spec, batch), r in rows.items():
        if batch == 1 and r["bound_by"] == "hbm":
            bytes_ratio = ref["weight_bytes"] / r["weight_bytes"]
            assert abs(ref["latency_us"] / r["latency_us"] / bytes_ratio - 1) < 0.15, spec


def test_batch_16_is_compute_bound_and_speedups_follow_density(rows):
    for (spec, batch), r in rows.items():
        if batch == 16:
            assert r["bound_by"] == "pe_array"
            ideal = 1 / _density(spec) if spec != "fp16" else 0.25  # fp16 takes 4 beats on INT4 multipliers
            _between_ideal_and_one(r["speedup_vs_int4"], ideal, spec)


def test_compute_bound_ordering_differs_from_memory_bound(rows):
    # 2:4 beats 4:8 in decode (fewer index bits), but not at batch 16 where both do
    # the same multiplies: the model says the orderings differ.
    assert rows[("int4-2:4", 1)]["latency_us"] < 0.95 * rows[("int4-4:8", 1)]["latency_us"]
    assert rows[("int4-4:8", 16)]["latency_us"] <= rows[("int4-2:4", 16)]["latency_us"] * 1.01


def test_the_study_is_deterministic(rows, tmp_path):
    study = yaml.safe_load((ROOT / "configs" / "studies" / "matmul_4096.yaml").read_text())
    study.update(base=str(ROOT / "configs" / "u280_llama7b.yaml"), formats=["int4-2:4"], batches=[1])
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    (again,) = run_study(path)
    first = rows[("int4-2:4", 1)]
    assert {k: first[k] for k in again if not k.startswith("speedup")} == \
        {k: v for k, v in again.items() if not k.startswith("speedup")}


def test_bandwidth_study_finds_each_formats_knee_and_sparser_plateaus_higher(tmp_path):
    study = yaml.safe_load((ROOT / "configs" / "studies" / "llama7b_bandwidth.yaml").read_text())
    study.update(base=str(ROOT / "configs" / "u280_llama7b.yaml"), formats=["int4", "int4-2:4"],
                 bandwidth_axis="[100,5000]")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    rows = {r["format"]: r for r in run_study(path, tmp_path / "points")}
    # At the top of the axis memory no longer bounds. Dense int4 is PE-bound: 4096 multipliers
    # take 4096 weights per cycle. 2:4 would feed them 8192 dense weights per cycle, more bytes
    # than the weight bank's read port moves (256 URAMs x 72 bit = 2304 B per cycle): it is
    # bound by the port, at 2304 B / (bytes per dense weight) per cycle.
    cfg = load_config(ROOT / "configs" / "u280_llama7b.yaml")
    per_weight = parse_format("int4-2:4").packed_nbytes(4096, 4096) / 4096**2
    port = cfg.accelerator.weight_buffer.bank_width_bits / 8
    pe = cfg.accelerator.pe_array
    multipliers = pe.cols * pe.lanes * pe.n  # one token row at batch 1
    # 2:4 feeds 2 dense weights per multiplier and cycle unless the bank's read port is slower
    port_bound = port / per_weight < 2 * multipliers
    expected = min(port / per_weight, 2 * multipliers) / multipliers  # 2:4 over int4 decode throughput
    assert rows["int4-2:4"]["tokens_per_s_at_top"] / rows["int4"]["tokens_per_s_at_top"] == \
        pytest.approx(expected, rel=0.1)
    near_tie = abs(port / per_weight / (2 * multipliers) - 1) < 0.05  # either may bind
    bounds = {"pe_array", "weight_buffer"} if near_tie else {"weight_buffer" if port_bound else "pe_array"}
    assert rows["int4"]["bound_at_top"] == "pe_array" and rows["int4-2:4"]["bound_at_top"] in bounds
    assert 100 < rows["int4"]["knee_gbps"] < rows["int4-2:4"]["knee_gbps"] < 5000
    assert (tmp_path / "points" / "bandwidth_sweep.png").read_bytes()[:4] == b"\x89PNG"
