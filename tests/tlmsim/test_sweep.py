"""Sweeps: axis syntax, a 16-point flagship bandwidth sweep (monotone, plateau past the
roofline knee), identical rows on a Dask cluster, resume after an interruption, and
failing points recorded without killing the sweep."""

import json
from pathlib import Path

import pytest

from tlmsim import sweep as sw
from tlmsim.cli import main
from tlmsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
# A what-if sweep past the U280's HBM: the AXI ports (32 x 14.4 GB/s) and the HBM2
# preset's burst timing (tCCD) would cap it near 480 GB/s, so the test sweeps an ideal
# memory pipe (dram: null) behind ports that keep up.
SMALL = ["workload.prefill_tokens=1", "workload.decode_tokens=1", "memory.hbm.switch.port_gbps=1000",
         "memory.hbm.dram=null"]
# Up to 5000 GB/s so the compute side binds at the top of the range and a knee appears.
BANDWIDTH = "memory.hbm.bandwidth_gbps=log:50:5000:16"


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    spec = sw.prepare(FLAGSHIP, [BANDWIDTH, *SMALL])
    rows = sw.run_sweep(spec, out, "local", jobs=2)
    return spec, out, rows


def _xs_and(rows, key):
    return [r["point"]["memory.hbm.bandwidth_gbps"] for r in rows], [r[key] for r in rows]


# ---------------------------------------------------------------- axis syntax


@pytest.mark.parametrize("item,values", [
    ("a.b=50:500:150", (50, 200, 350, 500)),
    ("a.b=0.1:0.3:0.1", (0.1, 0.2, 0.3)),
    ("a.b=log:1:1000:4", (1.0, 10.0, 100.0, 1000.0)),
    ("a.b=[int4, fp16]", ("int4", "fp16")),
    ("a.b=7", (7,)),
])
def test_axis_syntax_gives_the_documented_values(item, values):
    assert sw.parse_axis(item) == sw.Axis("a.b", values)


@pytest.mark.parametrize("item", ["a.b", "a.b=5:1:1", "a.b=log:0:10:3", "a.b=log:1:10:1.5", "a.b=1:2:0"])
def test_bad_axis_syntax_is_a_config_error(item):
    with pytest.raises(ConfigError):
        sw.parse_axis(item)


def test_points_are_the_cartesian_product_first_axis_slowest():
    axes = [sw.Axis("x", (1, 2)), sw.Axis("y", ("a", "b", "c"))]
    assert [(p["x"], p["y"]) for p in sw.points(axes)] == [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c")]


@pytest.mark.parametrize("axis,message", [
    ("memory.hbm.bandwidthz=[1,2]", "unknown field 'memory.hbm.bandwidthz'"),
    ("memory.hbm.bandwidth_gbps=1:2", "bandwidth_gbps"),
    ("memory.hbm.bandwidth_gbps=log:5:1:3", "log:5:1:3"),
])
def test_sweep_user_errors_exit_2_with_no_output(tmp_path, capsys, axis, message):
    out = tmp_path / "s"
    assert main(["sweep", str(FLAGSHIP), "--set", axis, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the flagship sweep


def test_flagship_sweep_is_monotone_and_plateaus_past_the_roofline_knee(local_sweep):
    spec, out, rows = local_sweep
    assert [r["status"] for r in rows] == ["ok"] * 16
    xs, tps = _xs_and(rows, "tokens_per_s")
    assert xs == sorted(xs) and len(set(xs)) == 16
    assert all(b >= a for a, b in zip(tps, tps[1:])), tps
    knee = sw.knee(xs, [r["bandwidth_bound_tokens_per_s"] for r in rows], [r["compute_bound_tokens_per_s"] for r in rows])
    assert knee is not None and xs[0] * 2 < knee < xs[-1] / 2
    # Below the knee the bandwidth roofline explains the rate; past it the rate is flat.
    for r, x in zip(rows, xs):
        assert r["tokens_per_s"] <= r["roofline_tokens_per_s"] * (1 + 1e-9)
        if x < knee / 1.5:
            assert r["tokens_per_s"] >= 0.9 * r["bandwidth_bound_tokens_per_s"]
            assert r["bound_by"] == "hbm"
    plateau = [t for x, t in zip(xs, tps) if x > 1.5 * knee]
    assert len(plateau) >= 3 and (max(plateau) - min(plateau)) / max(plateau) < 0.02
    assert tps[-1] > 5 * tps[0] and rows[-1]["bound_by"] != "hbm"


def test_sweep_outputs_csv_and_plots_in_grid_order(local_sweep):
    from tlmsim.sweep_cli import write_outputs

    spec, out, rows = local_sweep
    knee = write_outputs(out, spec, rows)
    csv_rows = sw.read_csv(out / "sweep.csv")
    assert [r["memory.hbm.bandwidth_gbps"] for r in csv_rows] == [r["point"]["memory.hbm.bandwidth_gbps"] for r in rows]
    assert [r["tokens_per_s"] for r in csv_rows] == pytest.approx([r["tokens_per_s"] for r in rows], rel=1e-12)
    assert "workload.prefill_tokens" not in csv_rows[0]  # fixed overrides are not columns
    assert knee is not None
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "sweep.svg").read_bytes()[:500]


def test_dask_cluster_gives_identical_rows(local_sweep, tmp_path):
    spec, _, rows = local_sweep
    dask_rows = sw.run_sweep(spec, tmp_path / "dask", "dask", jobs=2)
    assert sw.table(dask_rows, spec.axes) == sw.table(rows, spec.axes)


# ---------------------------------------------------------------- resume and failures


def test_interrupted_sweep_reruns_only_the_missing_points(local_sweep, tmp_path, monkeypatch):
    spec, _, full = local_sweep
    subset = sw.prepare(FLAGSHIP, ["memory.hbm.bandwidth_gbps=[50.0, 428.847949295, 1990.53585277, 5000.0]", *SMALL])
    out = tmp_path / "resume"

    def stop_after_two(row, done, todo):
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(subset, out, "serial", on_row=stop_after_two)
    assert len((out / sw.POINTS_FILE).read_text().splitlines()) == 2
    with open(out / sw.POINTS_FILE, "a") as f:
        f.write('{"key": "torn line from a kill')  # a kill mid-write leaves half a line
    ran = []
    real = sw.run_point
    monkeypatch.setattr(sw, "run_point", lambda raw, p: ran.append(p) or real(raw, p))
    rows = sw.run_sweep(subset, out, "serial")
    assert len(ran) == 2 and ran == sw.points(subset.axes)[2:]
    by_x = {r["point"]["memory.hbm.bandwidth_gbps"]: r for r in full}
    for r in rows:
        expected = by_x[r["point"]["memory.hbm.bandwidth_gbps"]]
        assert r["tokens_per_s"] == expected["tokens_per_s"]
    ran.clear()
    sw.run_sweep(subset, out, "serial")
    assert ran == []


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["-q", "sweep", str(FLAGSHIP), "--set", "memory.hbm.capacity_gib=[0.5, 8]", "--executor", "serial",
            "--out", str(out), *(a for s in SMALL for a in ("--set", s))]
    assert main(args) == 1
    rows = sw.read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["error", "ok"]
    assert "hbm" in rows[0]["error"] and rows[1]["tokens_per_s"] > 0
    assert "failed" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / sw.POINTS_FILE).read_text().splitlines()]
    assert [r["status"] for r in lines] == ["error", "ok"]


def test_resuming_into_a_different_sweep_is_refused(tmp_path, capsys):
    out = tmp_path / "s"
    spec = sw.prepare(FLAGSHIP, ["memory.hbm.bandwidth_gbps=[100]", *SMALL])
    out.mkdir()
    (out / sw.MANIFEST_FILE).write_text(json.dumps({"fingerprint": "other"}))
    before = sorted(p.name for p in out.iterdir())
    assert main(["sweep", str(FLAGSHIP), "--set", "memory.hbm.bandwidth_gbps=[100]", "--out", str(out),
                 *(a for s in SMALL for a in ("--set", s))]) == 2
    assert "different sweep" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert spec.fingerprint != "other"
