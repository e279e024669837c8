"""tlmsim explore: the front is the non-dominated set, points equal standalone runs, resume, reasons."""

import json
from pathlib import Path

import pytest
import yaml

import tlmsim.sweep as sweep
from tlmsim.cli import main
from tlmsim.coupled import format_overrides
from tlmsim.explore import dominates, explore, judge, pareto_front
from tlmsim.sweep import metrics

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
OBJECTIVES = ["decode_tokens_per_s", "resource_share", "decode_j_per_token"]


def _space(tmp_path, **changes) -> Path:
    space = {"name": "t", "base": str(FLAGSHIP),
             "overrides": ["workload.prefill_tokens=1", "workload.decode_tokens=1"],
             # 160 columns are over the U280's DSP budget: an infeasible point with its reason
             "axes": ["format=[int4,int4-2:4]", "accelerator.pe_array.cols=[64,96,160]"],
             "constraints": {"min_decode_tokens_per_s": 80},
             "objectives": OBJECTIVES, "accuracy": {"proxy": "none"}, **changes}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explore")
    path = _space(tmp)
    rows, front = explore(path, tmp / "out", executor="serial")
    return path, tmp / "out", rows, front


def test_no_point_on_the_front_is_dominated_and_every_other_feasible_point_is(explored):
    _, _, rows, front = explored
    feasible = [r for r in rows if r["feasible"]]
    assert front and len(front) < len(feasible) + 1
    for r in front:
        assert not any(dominates(o, r, OBJECTIVES) for o in feasible)
    keys = {r["key"] for r in front}
    for r in feasible:
        if r["key"] not in keys:
            assert any(dominates(f, r, OBJECTIVES) for f in front)


def test_infeasible_points_carry_their_reason(explored):
    _, _, rows, _ = explored
    by_point = {(r["format"], r["point"]["accelerator.pe_array.cols"]): r for r in rows}
    over = by_point[("int4-2:4", 160)]
    assert not over["feasible"] and "over the board's budget" in over["reason"] and "DSP" in over["reason"]
    assert over["tokens_per_s"] > 0  # simulated as a what-if: shown faint on the plot
    slow = [r for r in rows if r["status"] == "ok" and r["tokens_per_s"] < 80]
    assert slow and all(not r["feasible"] and "tokens/s < 80" in r["reason"] for r in slow)


def test_a_point_equals_a_standalone_run_of_its_config(explored, tmp_path):
    _, _, rows, _ = explored
    row = next(r for r in rows if r["feasible"])
    point = dict(row["point"])
    items = [f"{k}={json.dumps(v)}" for k, v in point.items() if k != "format"]
    items += format_overrides(2, 16, point["format"])  # the flagship array: n = 2 x 16 lanes
    args = ["run", str(FLAGSHIP), "--out", str(tmp_path / "alone"), "-q"] + [a for i in items for a in ("--set", i)]
    assert main(args) == 0
    alone = metrics(json.loads((tmp_path / "alone" / "result.json").read_text()))
    for column in ("tokens_per_s", "prefill_ms", "decode_j_per_token", "resource_share", "dsp", "bound_by"):
        assert row[column] == alone[column], column


class PowerCut(Exception):
    """Stands for a kill mid-explore (a KeyboardInterrupt would stop pytest itself)."""


def test_an_interrupted_explore_resumes_without_recomputing(tmp_path, monkeypatch):
    path, out = _space(tmp_path), tmp_path / "out"
    calls, cut = [], [3]  # the third point of the first run is cut off mid-run
    real = sweep.run_point

    def counted(raw, point):
        calls.append(json.dumps(point, sort_keys=True))
        if len(calls) == cut[0]:
            cut[0] = 0
            raise PowerCut
        return real(raw, point)

    monkeypatch.setattr(sweep, "run_point", counted)
    with pytest.raises(PowerCut):
        explore(path, out, executor="serial")
    assert len((out / "points.jsonl").read_text().splitlines()) == 2
    first_two = set(calls[:2])
    calls.clear()
    rows, _ = explore(path, out, executor="serial")
    assert len(rows) == 6 and len(calls) == 4 and not first_two & set(calls)
    calls.clear()
    explore(path, out, executor="serial")
    assert calls == []  # all done: nothing runs again


def test_nsga2_stops_at_its_trials_and_resumes_to_more(tmp_path):
    path = _space(tmp_path, search={"method": "nsga2", "trials": 3, "seed": 1})
    rows, front = explore(path, tmp_path / "out", executor="serial")
    assert len(rows) == 3 and all(r in rows for r in front)
    path = _space(tmp_path, search={"method": "nsga2", "trials": 5, "seed": 1})
    rows, _ = explore(path, tmp_path / "out", executor="serial")
    assert len(rows) == 5


def test_judge_applies_the_perplexity_constraint():
    row = {"status": "ok", "error": "", "tokens_per_s": 100.0, "what_if": False}
    limits = load_space_constraints(max_perplexity_increase_pct=10)
    ok = judge(row, {"format": "int4"}, "int4", {"fp16": 10.0, "int4": 10.5}, limits)
    bad = judge(row, {"format": "ternary"}, "int4", {"fp16": 10.0, "ternary": 12.0}, limits)
    assert ok["feasible"] and not bad["feasible"] and "perplexity +20.0 % > 10 %" in bad["reason"]


def load_space_constraints(**kw):
    from tlmsim.explore import Constraints

    return Constraints(**kw)


def test_pareto_front_ranks_by_the_first_objective():
    rows = [{"key": k, "feasible": True, "tokens_per_s": t, "resource_share": s, "decode_j_per_token": 1.0}
            for k, t, s in [("a", 10.0, 0.5), ("b", 20.0, 0.9), ("c", 5.0, 0.9)]]
    assert [r["key"] for r in pareto_front(rows, OBJECTIVES)] == ["b", "a"]  # c is dominated by a


def test_explore_cli_writes_the_outputs_and_refuses_a_bad_space(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "base": str(FLAGSHIP), "axes": ["a=1"], "objectives": ["speed"]}))
    assert main(["explore", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "objectives" in err[0] and not (tmp_path / "o").exists()
    path = _space(tmp_path, axes=["format=[int4-2:4]", "accelerator.pe_array.cols=[96]"])
    assert main(["explore", str(path), "--out", str(tmp_path / "e"), "--executor", "serial", "-q"]) == 0
    assert {"points.csv", "pareto.csv", "pareto.png", "points.jsonl"} <= {p.name for p in (tmp_path / "e").iterdir()}
    assert "Pareto front" in capsys.readouterr().out
