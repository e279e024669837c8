"""Bad input to ``tlmsim sweep``: oversized grids, non-finite numbers, corrupt or foreign
output folders, an unreachable Dask scheduler and a second writer each give one line and
exit 2, quickly, and leave every file as it was (the ``user_error`` contract)."""

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tlmsim.output import write_marker

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
FIELD = "memory.hbm.bandwidth_gbps"


def sweep_args(out, *axes: str, extra=()) -> list:
    """A serial sweep of FLAGSHIP over ``axes`` into ``out``."""
    args = ["sweep", FLAGSHIP, "--out", out, "--executor", "serial", *extra]
    for axis in axes:
        args += ["--set", axis]
    return args


def sweep_folder(path: Path, manifest: bytes | None = None) -> Path:
    """A folder marked as a tlmsim sweep output, with ``manifest`` as its sweep.json."""
    path.mkdir()
    write_marker(path, "sweep")
    if manifest is not None:
        (path / "sweep.json").write_bytes(manifest)
    return path


# ---------------------------------------------------------------- bounded work


@pytest.mark.parametrize("axes,fragment", [
    ([f"{FIELD}=1:100000000:1"], "100,000,000 points"),
    ([f"{FIELD}=1:10000:1", "memory.ddr.bandwidth_gbps=1:10000:1"], "(10,000 x 10,000)"),
    ([f"{FIELD}=0:1000:1e-12"], "~10^15 points"),
    ([f"{FIELD}=log:1:1000:1000000000"], "1,000,000,000 points"),
], ids=["1e8 points", "1e4 x 1e4 points", "tiny step", "log with 1e9 values"])
def test_a_grid_above_the_cap_is_refused_at_once(user_error, tmp_path, axes, fragment):
    started = time.perf_counter()
    err = user_error(sweep_args(tmp_path / "sw", *axes), fragment)
    assert time.perf_counter() - started < 2
    assert "--max-points" in err


def test_the_cap_is_a_flag(user_error, tmp_path):
    user_error(sweep_args(tmp_path / "sw", f"{FIELD}=100:300:100", extra=["--max-points", "2"]),
               "3 points, more than --max-points 2")


@pytest.mark.parametrize("spec", ["0:inf:1", "[100, .inf]", "[100, .nan]", "nan", "1e400", "[100, 1e400]",
                                  "100:1e400:1"])
def test_non_finite_numbers_in_an_axis_are_refused(user_error, tmp_path, spec):
    user_error(sweep_args(tmp_path / "sw", f"{FIELD}={spec}"), "is not a finite number")


@pytest.mark.parametrize("axes,fragment", [
    # Only the last value of the second axis breaks the URAM budget; the sample catches it.
    ([f"{FIELD}=100:500:100", "accelerator.activation_buffer.capacity_kib=256:40000:512"],
     "sweep point memory.hbm.bandwidth_gbps=100, accelerator.activation_buffer.capacity_kib=39680: on-chip buffers"),
    ([f"{FIELD}=[100, -1, 200]"], "sweep point memory.hbm.bandwidth_gbps=-1: memory.hbm.bandwidth_gbps"),
    ([f"{FIELD}=100:500:100", "memory.ddr.bandwidth_gbps=-2:10:4"], "memory.ddr.bandwidth_gbps=-2"),
], ids=["last value of a grid", "middle of a list", "first value of a grid"])
def test_a_bad_value_in_any_axis_is_caught_before_running(user_error, tmp_path, axes, fragment):
    user_error(sweep_args(tmp_path / "sw", *axes), fragment)


def test_a_field_named_twice_is_refused(user_error, tmp_path):
    user_error(sweep_args(tmp_path / "sw", f"{FIELD}=[100, 200]", f"{FIELD}=300"), "names a field twice")


@pytest.mark.parametrize("flag,fragment", [(["--jobs", "0"], "--jobs 0"), (["--max-points", "0"], "--max-points 0")])
def test_counts_below_one_are_refused(user_error, tmp_path, flag, fragment):
    user_error(sweep_args(tmp_path / "sw", f"{FIELD}=[100]", extra=flag), fragment)


# ---------------------------------------------------------------- corrupt state


@pytest.mark.parametrize("manifest", [
    b"{not json", b"[1, 2, 3]", b'{"config": "x.yaml"}', b'{"fingerprint": 12}', b"\x00\xff\xfe binary\x89PNG",
    b"", b"[" * 100000,
], ids=["not JSON", "a list", "no fingerprint", "fingerprint not text", "binary", "empty", "deeply nested"])
def test_a_corrupt_sweep_json_is_one_line(user_error, tmp_path, manifest):
    out = sweep_folder(tmp_path / "sw", manifest)
    user_error(sweep_args(out, f"{FIELD}=[100]"), f"{out / 'sweep.json'} is corrupt; delete the folder")


def test_a_sweep_json_that_is_a_folder_is_corrupt(user_error, tmp_path):
    out = sweep_folder(tmp_path / "sw")
    (out / "sweep.json").mkdir()
    user_error(sweep_args(out, f"{FIELD}=[100]"), "is corrupt")


def test_points_without_a_sweep_json_are_refused(user_error, tmp_path):
    out = sweep_folder(tmp_path / "sw")
    (out / "points.jsonl").write_text('{"key": "x"}\n')
    user_error(sweep_args(out, f"{FIELD}=[100]"), "sweep.json is missing")


def test_a_folder_of_a_different_sweep_is_refused(user_error, tmp_path):
    out = sweep_folder(tmp_path / "sw", json.dumps({"fingerprint": "0123456789abcdef"}).encode())
    (out / "points.jsonl").write_text("")
    user_error(sweep_args(out, f"{FIELD}=[100]"), "holds a different sweep")


# ---------------------------------------------------------------- output safety


def test_a_foreign_folder_is_refused_and_kept(user_error, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    user_error(sweep_args(out, f"{FIELD}=[100]"), "was not written by tlmsim")


def test_a_plain_file_is_refused(user_error, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    user_error(sweep_args(tmp_path / "notes.txt", f"{FIELD}=[100]"), "is not a folder")


def test_another_kind_of_tlmsim_output_is_refused(user_error, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    write_marker(out, "run")
    (out / "result.json").write_text("{}")
    user_error(sweep_args(out, f"{FIELD}=[100]"), "holds a tlmsim run output, not a sweep output")


def test_an_out_holding_the_config_is_refused(user_error, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    config = folder / "mine.yaml"
    shutil.copy(FLAGSHIP, config)
    user_error(["sweep", config, "--set", f"{FIELD}=[100]", "--out", folder, "--executor", "serial"],
               "contains the input")


@pytest.mark.parametrize("out,fragment", [(".", "--out . is the current folder"), ("..", "--out .. is the current "
                                          "folder or one above it"), ("", "--out is empty")])
def test_the_current_folder_or_nothing_is_refused(user_error, out, fragment):
    user_error(sweep_args(out, f"{FIELD}=[100]"), fragment)


# ---------------------------------------------------------------- executors and writers


def test_an_unreachable_dask_scheduler_is_one_line_within_seconds(user_error, tmp_path):
    started = time.perf_counter()
    user_error(sweep_args(tmp_path / "sw", f"{FIELD}=[100]",
                          extra=["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1"]),
               "cannot reach the Dask scheduler at tcp://127.0.0.1:1")
    assert time.perf_counter() - started < 10


def test_a_scheduler_without_dask_is_refused(user_error, tmp_path):
    user_error(sweep_args(tmp_path / "sw", f"{FIELD}=[100]", extra=["--scheduler", "tcp://127.0.0.1:1"]),
               "--scheduler needs --executor dask")


def test_a_second_writer_is_refused(user_error, tmp_path):
    out = sweep_folder(tmp_path / "sw")
    fd = os.open(out / ".sweep.lock", os.O_RDWR | os.O_CREAT)
    try:
        # flock locks belong to an open file: this fd holds the lock against the CLI's own open.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        user_error(sweep_args(out, f"{FIELD}=[100]"),
                   f"another sweep is writing {out} (pid {os.getpid()}); wait for it or choose another --out")
    finally:
        os.close(fd)
