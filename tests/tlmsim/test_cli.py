"""The tlmsim command: results on success; one line, exit 2 and no output on user errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tlmsim.cli import main

ROOT = Path(__file__).resolve().parents[2]

FLAGSHIP = str(ROOT / "configs" / "u280_llama7b.yaml")
FAST = ["--set", "workload.prefill_tokens=8", "--set", "workload.decode_tokens=2"]


def test_run_writes_all_results_and_the_resolved_config(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["-q", "run", FLAGSHIP, "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".tlmsim-output", "config.yaml", "result.json", "timeline.png",
                                                    "trace.json"]
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["workload"]["decode_tokens"] == 2
    assert result["phases"]["decode"]["tokens_per_s"] > 0
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trace = json.loads((out / "trace.json").read_text())
    assert {"X", "C", "M"} <= {e["ph"] for e in trace["traceEvents"]}
    assert "decode :" in capsys.readouterr().out


def test_rerunning_the_saved_config_gives_the_same_result(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["-q", "run", FLAGSHIP, "--out", str(first), *FAST]) == 0
    assert main(["-q", "run", str(first / "config.yaml"), "--out", str(second)]) == 0
    a, b = (json.loads((d / "result.json").read_text()) for d in (first, second))
    assert a["phases"] == b["phases"]


@pytest.mark.parametrize("args,message", [
    (["run", "missing.yaml"], "config file missing.yaml not found"),
    (["run", FLAGSHIP, "--set", "accelerator.pe_array.colz=3"], "unknown field 'accelerator.pe_array.colz'"),
    (["run", FLAGSHIP, "--set", "workload.weight_format=fp16"], "add 'ddr' to placement.weights"),
    (["run", FLAGSHIP, "--set", "accelerator.weight_buffer.bank_kib=1"], "weight_buffer.bank_kib is too small"),
])
def test_user_errors_print_one_line_exit_2_and_leave_no_output(tmp_path, capsys, args, message):
    out = tmp_path / "res"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_help_is_available():
    proc = subprocess.run([sys.executable, "-m", "tlmsim.cli", "run", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--out" in proc.stdout


def test_run_draws_the_chosen_window_and_saves_the_bottleneck_report(tmp_path, capsys):
    out = tmp_path / "res"
    tiny = ["--set", "workload.prefill_tokens=1", "--set", "workload.decode_tokens=1"]
    assert main(["-q", "run", FLAGSHIP, "--out", str(out), *tiny, "--timeline-window", "layer:0", "--svg"]) == 0
    assert (out / "timeline.svg").read_bytes().lstrip()[:5] in (b"<?xml", b"<svg ")
    result = json.loads((out / "result.json").read_text())
    steps = result["bottlenecks"]["steps"]
    assert [s["step"] for s in steps] == [0, 1]
    for s in steps:  # the critical path covers the step: exposed times add up to it
        assert sum(op["exposed_s"] for op in s["ops"]) == pytest.approx(s["time_s"], rel=1e-9)
    assert steps[1]["bound_by"] == result["phases"]["decode"]["roofline_bound_by"]
    assert "critical path" in capsys.readouterr().out


@pytest.mark.parametrize("window,message", [("layer:x", "--timeline-window 'layer:x'"),
                                            ("step:5", "step 5 is not traced")])
def test_bad_timeline_window_exits_2_before_simulating(tmp_path, capsys, window, message):
    assert main(["run", FLAGSHIP, "--out", str(tmp_path / "r"), "--timeline-window", window]) == 2
    assert message in capsys.readouterr().err and list(tmp_path.iterdir()) == []
