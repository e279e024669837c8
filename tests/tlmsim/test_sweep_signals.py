"""Real ``tlmsim sweep`` processes: SIGTERM (or a terminal's ctrl-C) mid-sweep stops every
worker for good, quietly, and the rerun completes only the missing points; two sweeps on
one --out never both write."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tiers import ci_subset

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
VALUES = [100, 200, 300, 400, 500, 600, 700, 800]
TINY = ["--set", "workload.decode_tokens=2", "--set", "workload.prefill_tokens=8", "--allow-over-budget",
        "--set", f"memory.hbm.bandwidth_gbps={VALUES}"]
# The CLI as the user runs it; tlmsim/cli.py makes SIGTERM raise KeyboardInterrupt like
# SIGINT does, so both take the same way out.
CLI = [sys.executable, "-m", "tlmsim.cli"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of the sweep processes: one graph cache for every test here (the first
    run traces the llama-7b graph, ~10 s)."""
    cache = tmp_path_factory.getbasetemp() / "tlmsim-cache"
    cache.mkdir(exist_ok=True)
    return {**os.environ, "TLMSIM_CACHE": str(cache)}


def _rows(out: Path) -> list[dict]:
    path = out / "points.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pids: list[int]) -> list[int]:
    """The pids that still run (a zombie has exited: it only waits for its parent to reap it)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _sigterm(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)


def _ctrl_c(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # a terminal sends it to the whole process group


# CI sends SIGTERM (20-30 s a case); ctrl-C to the process group runs with TLMSIM_FULL=1.
@pytest.mark.parametrize("stop", ci_subset([_sigterm, _ctrl_c], {_sigterm}),
                         ids=["SIGTERM to the sweep", "ctrl-C to its process group"])
def test_an_interrupt_stops_every_worker_and_the_rerun_completes_only_the_missing_points(tmp_path, env, stop):
    out = tmp_path / "sw"
    cmd = [*CLI, "sweep", str(FLAGSHIP), *TINY, "--jobs", "2", "--out", str(out)]
    with open(tmp_path / "stderr.txt", "w") as err:
        # A session of its own: the process group a ctrl-C goes to is the sweep's, not pytest's.
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        try:
            _wait_for(lambda: len(_rows(out)) >= 1, 300, proc, "the first point was recorded")
            children = psutil.Process(proc.pid).children(recursive=True)
            workers = [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]
            children = [c.pid for c in children]
            stop(proc)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 130, stderr
    assert "rerun the same command to resume" in stderr.splitlines()[-1], stderr
    assert "Traceback" not in stderr, stderr
    assert len(workers) == 2, "the pool's two workers should have been running"
    deadline = time.monotonic() + 10
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(children) == [], "worker processes survived the sweep"
    assert [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial")) or ".tmp." in p.name] == []
    kept = len(_rows(out))
    assert 1 <= kept < len(VALUES), "SIGTERM came too late to test a resume"
    assert f"{kept} of {len(VALUES)} points are kept" in stderr

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(VALUES)} points ({len(VALUES) - kept} run now, 0 failed)" in rerun.stdout
    rows = _rows(out)
    assert len(rows) == len(VALUES) and len({r["key"] for r in rows}) == len(VALUES)  # only the missing ones ran


def test_a_second_sweep_on_the_same_out_is_refused_while_the_first_writes(tmp_path, env):
    out = tmp_path / "sw"
    cmd = [*CLI, "sweep", str(FLAGSHIP), *TINY[:4], "--set",
           "memory.hbm.bandwidth_gbps=[100, 200]", "--executor", "serial", "--out", str(out)]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lock = out / ".sweep.lock"
        _wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), 120, first,
                  "the first sweep took the lock")
        first.send_signal(signal.SIGSTOP)  # hold it mid-sweep, so the overlap is certain
        second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        first.send_signal(signal.SIGCONT)
        assert second.returncode == 2
        assert second.stderr == (f"error: another sweep is writing {out} (pid {first.pid}); wait for it or "
                                 f"choose another --out\n")
        stdout, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0 and "2 points (2 run now, 0 failed)" in stdout
    rows = _rows(out)
    assert len(rows) == 2 and len({r["key"] for r in rows}) == 2  # no duplicate rows
