"""One error path: usage mistakes, OS errors, internal bugs, broken pipes and signals
each end in one line (or none), never a traceback, never a half-written result."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlmsim.cli import EXIT_INTERNAL_ERROR, main

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
FAST = ["--set", "workload.prefill_tokens=4", "--set", "workload.decode_tokens=1"]


# ---- usage mistakes: one line, not argparse's usage block ------------------------------


@pytest.mark.parametrize("args,fragment", [
    (["run"], "the following arguments are required: config"),
    (["run", FLAGSHIP, "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required"),
    (["compress", "x", "--bits", "3", "--out", "y"], "argument --bits: invalid choice: '3'"),
    (["compress", "x", "--group-size", "many", "--out", "y"], "argument --group-size: invalid int value"),
    (["sweep", FLAGSHIP, "--jobs", "two"], "argument --jobs: invalid int value"),
    (["tiny-model"], "the following arguments are required: out"),
], ids=["run without config", "unknown option", "unknown command", "no command", "bad --bits",
        "bad --group-size", "bad --jobs", "tiny-model without out"])
def test_usage_mistakes_are_one_line(user_error, args, fragment):
    user_error(args, fragment)


def test_version_and_quiet_after_the_subcommand(tmp_path, capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tlmsim ")
    assert main(["run", str(FLAGSHIP), "-q", "--out", str(tmp_path / "r"), *FAST]) == 0
    out = capsys.readouterr()
    assert "decode :" in out.out and out.err == ""


# ---- OS errors the user can fix: one line, exit 2, nothing left ------------------------


@pytest.mark.parametrize("code,name", [(errno.ENOSPC, "No space left on device"),
                                       (errno.EROFS, "Read-only file system"),
                                       (errno.EDQUOT, "Disk quota exceeded")])
def test_a_full_or_read_only_disk_while_writing_is_one_line(user_error, monkeypatch, tmp_path, code, name):
    import tlmsim.output

    def fail(path, data):
        raise OSError(code, name, str(path))

    monkeypatch.setattr(tlmsim.output, "write_json", fail)
    user_error(["run", FLAGSHIP, "--out", tmp_path / "r", *FAST], name)


def test_a_full_disk_keeps_the_previous_result(user_error, monkeypatch, tmp_path):
    import tlmsim.output

    assert main(["-q", "run", str(FLAGSHIP), "--out", str(tmp_path / "r"), *FAST]) == 0

    def fail(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(tlmsim.output, "write_json", fail)
    user_error(["run", FLAGSHIP, "--out", tmp_path / "r", *FAST], "No space left on device")
    assert json.loads((tmp_path / "r" / "result.json").read_text())["phases"]  # the old result, whole


# ---- internal bugs: one line that says so and where the traceback went -------------------


def test_an_internal_bug_is_one_line_with_a_traceback_file(tmp_path, capsys, monkeypatch):
    import tlmsim.simulate

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug deep inside")

    monkeypatch.setattr(tlmsim.simulate, "simulate", bug)
    assert main(["run", str(FLAGSHIP), "--out", str(tmp_path / "r"), *FAST]) == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "Traceback" not in err
    crash = Path(err.split("full traceback in ")[1].split(";")[0])
    assert "ZeroDivisionError: a bug deep inside" in crash.read_text() and "Traceback" in crash.read_text()
    assert not (tmp_path / "r").exists()
    crash.unlink()


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import tlmsim.simulate

    monkeypatch.setattr(tlmsim.simulate, "simulate", lambda *a, **k: 1 / 0)
    assert main(["run", str(FLAGSHIP), "--debug", "--out", str(tmp_path / "r"), *FAST]) == EXIT_INTERNAL_ERROR
    assert "Traceback" in capsys.readouterr().err


# ---- pipes and signals (real processes) ---------------------------------------------------


def _tlmsim(*args) -> list[str]:
    return [sys.executable, "-m", "tlmsim.cli", *map(str, args)]


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    # `| true` has closed the pipe long before the summary is printed: a certain EPIPE.
    cmd = " ".join(_tlmsim("run", FLAGSHIP, "--out", tmp_path / "r", *FAST)) + " | true"
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr
    assert (tmp_path / "r" / "result.json").is_file()  # the results were written before the summary


@pytest.mark.slow
def test_sigterm_mid_write_leaves_the_old_result_and_no_temporary(tmp_path):
    out = tmp_path / "r"
    assert main(["-q", "run", str(FLAGSHIP), "--out", str(out), *FAST]) == 0
    before = (out / "result.json").read_bytes()
    # A fully traced run takes a while to write (trace.json, timeline.png): stop it then.
    proc = subprocess.Popen(_tlmsim("run", FLAGSHIP, "--out", out, *FAST, "--set", "trace.decode_steps=1",
                                    "--timeline-window", "all", "--svg"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = _wait_for(lambda: [p for p in tmp_path.iterdir() if p.name.endswith(".partial")], proc)
    assert partial, "the run never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no .partial, no .old
    assert (out / "result.json").read_bytes() == before


def _wait_for(found, proc, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if result := found():
            return result
        time.sleep(0.005)
    return None


def test_sigterm_while_simulating_leaves_nothing(tmp_path):
    proc = subprocess.Popen(_tlmsim("run", FLAGSHIP, "--out", tmp_path / "r", "--set", "workload.decode_tokens=4000"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
