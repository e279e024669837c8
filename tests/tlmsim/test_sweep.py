"""Sweeps: axis syntax, lazy grids, a 16-point flagship bandwidth sweep (monotone, plateau
past the roofline knee), identical rows on a Dask cluster, resume after an interruption,
failing points recorded without killing the sweep, and the sweep folder's bookkeeping
(marker, lock, invalid lines, what the summary claims). Signals: test_sweep_signals.py;
bad input: tests/bad_input/test_sweep_input.py."""

import json
import logging
import os
import time
from pathlib import Path

import pytest

from tlmsim import sweep as sw
from tlmsim.cli import main
from tlmsim.engine.errors import ConfigError, UserError
from tlmsim.output import MARKER, marker_kind, write_marker

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
# A what-if sweep past the U280's HBM: the AXI ports (32 x 14.4 GB/s) and the HBM2
# preset's burst timing (tCCD) would cap it near 480 GB/s, so the test sweeps an ideal
# memory pipe (dram: null) behind ports that keep up.
# Bandwidths beyond the U280's 460 GB/s are what-ifs: the board check would refuse them.
SMALL = ["workload.prefill_tokens=1", "workload.decode_tokens=1", "memory.hbm.switch=null",
         "memory.hbm.dram=null", "simulation.allow_over_budget=true"]
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
    axis = sw.parse_axis(item)
    assert axis.field == "a.b" and tuple(axis.values) == values and axis.size == len(values)


@pytest.mark.parametrize("item", ["a.b", "a.b=5:1:1", "a.b=log:0:10:3", "a.b=log:1:10:1.5", "a.b=1:2:0"])
def test_bad_axis_syntax_is_a_config_error(item):
    with pytest.raises(ConfigError):
        sw.parse_axis(item)


def test_points_are_the_cartesian_product_first_axis_slowest():
    axes = [sw.Axis("x", (1, 2)), sw.Axis("y", ("a", "b", "c"))]
    assert [(p["x"], p["y"]) for p in sw.points(axes)] == [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c")]
    assert [sw.point_at(axes, i) for i in range(6)] == list(sw.points(axes))


def test_grids_are_sized_arithmetically_and_never_expanded():
    started = time.perf_counter()
    axis = sw.parse_axis("a.b=0:1000:1e-12")
    huge = [sw.parse_axis("x=1:100000000:1"), sw.parse_axis("y=log:1:10:1000000000")]
    assert axis.size == 10**15 + 1 and axis.values[-1] == 1000.0 and axis.values[10**14] == pytest.approx(100.0)
    assert sw.grid_size(huge) == 10**17
    assert sw.point_at(huge, 10**17 - 1) == {"x": 100000000, "y": 10.0}
    assert next(sw.points(huge)) == {"x": 1, "y": 1.0}  # a generator: the product is never built
    # Validation samples each grid's ends, not the product.
    assert list(sw.sample_points(huge)) == [{"x": 1, "y": 1.0}, {"x": 100000000, "y": 1.0}, {"x": 1, "y": 10.0}]
    assert time.perf_counter() - started < 1


def test_a_grid_of_ints_stays_exact_and_a_float_grid_tidy():
    assert list(sw.parse_axis("a=10:20:5").values) == [10, 15, 20]
    assert all(isinstance(v, int) for v in sw.parse_axis("a=10:20:5").values)
    assert list(sw.parse_axis("a=0:0.5:0.1").values) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


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
    knee = sw.knee(xs, [r["bandwidth_bound_tokens_per_s"] for r in rows],
                   [r["compute_bound_tokens_per_s"] for r in rows])
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
    knee, written = write_outputs(out, spec, rows)
    assert written == ["sweep.csv", "sweep.png", "sweep.svg", "points.jsonl", "sweep.json"]
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
    assert len(ran) == 2 and ran == list(sw.points(subset.axes))[2:]
    assert (out / sw.POINTS_FILE).read_bytes().count(b"torn") == 0  # the torn tail was cut off
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
    write_marker(out, "sweep")
    (out / sw.MANIFEST_FILE).write_text(json.dumps({"fingerprint": "other"}))
    before = sorted(p.name for p in out.iterdir())
    assert main(["sweep", str(FLAGSHIP), "--set", "memory.hbm.bandwidth_gbps=[100]", "--out", str(out),
                 *(a for s in SMALL for a in ("--set", s))]) == 2
    assert "different sweep" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert spec.fingerprint != "other"


# ---------------------------------------------------------------- the sweep folder (no simulation)


def fake_point(raw, point):
    """A stand-in for run_point: an ok row at once."""
    return {"key": sw.point_key(point), "point": point, "status": "ok", "error": "", "prefill_ms": 1.0,
            "wall_s": 0.0}


@pytest.fixture
def fake(monkeypatch):
    """Points run by fake_point (the serial executor looks run_point up at call time)."""
    ran = []
    monkeypatch.setattr(sw, "run_point", lambda raw, p: ran.append(p) or fake_point(raw, p))
    return ran


@pytest.fixture
def sweep_log():
    """Messages logged by tlmsim.sweep at INFO and above (caught at the logger itself: the CLI
    stops tlmsim's records from propagating to the root logger, where caplog listens)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tlmsim.sweep")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def _spec(values="[100, 200, 300]"):
    return sw.prepare(FLAGSHIP, [f"memory.hbm.bandwidth_gbps={values}", *SMALL])


def test_a_new_sweep_folder_is_marked_locked_and_resumed_in_place(tmp_path, fake):
    out = tmp_path / "a" / "s"
    rows = sw.run_sweep(_spec(), out, "serial")
    assert [r["status"] for r in rows] == ["ok"] * 3 and len(fake) == 3
    assert marker_kind(out) == "sweep"
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, sw.LOCK_FILE, sw.MANIFEST_FILE, sw.POINTS_FILE])
    manifest = json.loads((out / sw.MANIFEST_FILE).read_text())
    assert manifest["points"] == 3 and manifest["axes"]["memory.hbm.bandwidth_gbps"] == {"values": [100, 200, 300],
                                                                                          "size": 3}
    fake.clear()
    sw.run_sweep(_spec(), out, "serial")  # the lock was released; nothing is left to run
    assert fake == []


def test_invalid_lines_in_points_jsonl_are_skipped_with_a_warning_and_rerun(tmp_path, fake, sweep_log):
    out = tmp_path / "s"
    sw.run_sweep(_spec(), out, "serial")
    lines = (out / sw.POINTS_FILE).read_bytes().splitlines(keepends=True)
    garbage = [b"[1, 2]\n", b'{"key": "x"}\n', b"\x00\xff binary\n", b'{"point": {}, "status": "ok"}\n']
    (out / sw.POINTS_FILE).write_bytes(lines[0] + b"".join(garbage) + lines[2] + b"{torn")
    fake.clear()
    rows = sw.run_sweep(_spec(), out, "serial")
    assert [p["memory.hbm.bandwidth_gbps"] for p in fake] == [200]  # only the point whose line was lost
    assert [r["status"] for r in rows] == ["ok"] * 3
    warnings = [m for m in sweep_log if m.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 4 invalid lines" in warnings[0]  # the torn tail is not one of them


def test_a_row_without_its_newline_is_kept(tmp_path, fake):
    out = tmp_path / "s"
    sw.run_sweep(_spec(), out, "serial")
    first, _, last = (out / sw.POINTS_FILE).read_bytes().splitlines(keepends=True)
    (out / sw.POINTS_FILE).write_bytes(first + last.rstrip(b"\n"))  # point 200 lost, 300 lacks its newline
    fake.clear()
    sw.run_sweep(_spec(), out, "serial")
    assert [p["memory.hbm.bandwidth_gbps"] for p in fake] == [200]
    lines = (out / sw.POINTS_FILE).read_bytes().splitlines()
    assert len(lines) == 3 and all(sw.state._row(line) for line in lines)  # the newline was added before appending


def test_a_sweep_interrupted_before_its_first_point_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(raw, point):
        raise KeyboardInterrupt
    monkeypatch.setattr(sw, "run_point", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(_spec(), tmp_path / "new" / "s", "serial")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()  # an empty folder given as --out is left empty again
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(_spec(), tmp_path / "empty", "serial")
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    out = tmp_path / "s"
    refusals = []

    def second_writer(row, done, todo):
        with pytest.raises(UserError, match="another sweep is writing") as err:
            sw.run_sweep(_spec(), out, "serial")
        refusals.append(str(err.value))
    monkeypatch.setattr(sw, "run_point", fake_point)
    sw.run_sweep(_spec(), out, "serial", on_row=second_writer)
    assert len(refusals) == 3 and all(f"(pid {os.getpid()})" in r for r in refusals)
    assert len((out / sw.POINTS_FILE).read_text().splitlines()) == 3  # no duplicate rows


def test_the_summary_names_only_files_it_wrote(tmp_path, capsys, fake):
    out = tmp_path / "s"
    # No decode metrics in the fake rows, so there is nothing to plot.
    assert main(["sweep", str(FLAGSHIP), "--set", "memory.hbm.bandwidth_gbps=[100, 200]", "--out", str(out),
                 "--executor", "serial"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}/: sweep.csv, points.jsonl, sweep.json" in printed and "png" not in printed
    assert not (out / "sweep.png").exists()
    assert "2 run now" in printed


def test_progress_without_a_terminal_logs_each_point_with_an_eta(sweep_log):
    progress = sw.Progress("out", ["x"])
    progress.start(4, 6)
    progress.row({"point": {"x": 1, "fixed": 2}, "status": "ok", "tokens_per_s": 3.0, "wall_s": 0.1}, 1, 4)
    first, point = sweep_log
    assert first == "sweep: 4 of 6 points to run (2 already in out)"
    assert point.startswith("  point 1/4 {'x': 1}: 3.00 tokens/s (0.1 s); ") and "elapsed, ETA" in point
