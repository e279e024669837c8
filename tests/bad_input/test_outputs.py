"""--out never destroys what tlmsim did not write; inputs never lie inside --out.

Each case prepares files in a scratch folder, runs one command that must be refused,
and the `user_error` fixture checks exit 2, one line, no traceback, and that every file
that was there before is still there, byte for byte, with nothing new left behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tlmsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
FAST = ["--set", "workload.prefill_tokens=4", "--set", "workload.decode_tokens=1"]
STUDY = ROOT / "configs" / "studies" / "matmul_4096.yaml"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny model and its 2:4 compressed copy (built once)."""
    root = tmp_path_factory.mktemp("models")
    assert main(["-q", "tiny-model", str(root / "tiny")]) == 0
    assert main(["-q", "compress", str(root / "tiny"), "--nm", "2:4", "--out", str(root / "c")]) == 0
    return root


def _user_folder(path: Path) -> Path:
    """A folder of someone's own files."""
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "data.bin").write_bytes(bytes(range(256)))
    return path


def _config_in(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FLAGSHIP, folder / "my.yaml"))


def _tlmsim_output(path: Path, kind: str) -> Path:
    path.mkdir(parents=True)
    (path / ".tlmsim-output").write_text(f'{{"kind": "{kind}"}}\n')
    (path / "result.json").write_text("{}")
    return path


# ---- run ----------------------------------------------------------------------------


def test_run_refuses_a_folder_of_unrelated_files(tmp_path, user_error):
    _user_folder(tmp_path / "mine")
    user_error(["run", FLAGSHIP, "--out", tmp_path / "mine", *FAST], "was not written by tlmsim")


def test_run_refuses_the_folder_holding_its_config(tmp_path, user_error):
    cfg = _config_in(tmp_path / "work")
    user_error(["run", cfg, "--out", tmp_path / "work", *FAST], "contains the input")


def test_run_refuses_a_tlmsim_output_that_holds_its_config(tmp_path, user_error):
    out = _tlmsim_output(tmp_path / "res", "run")
    cfg = Path(shutil.copy(FLAGSHIP, out / "config.yaml"))
    user_error(["run", cfg, "--out", out, *FAST], "contains the input")


def test_run_refuses_the_model_folder_itself(tmp_path, user_error, models):
    model = shutil.copytree(models / "c", tmp_path / "model")
    user_error(["run", FLAGSHIP, "--model", model, "--out", model, *FAST], "contains the input")


def test_run_refuses_a_parent_of_the_model_folder(tmp_path, user_error, models):
    shutil.copytree(models / "c", tmp_path / "all" / "model")
    user_error(["run", FLAGSHIP, "--model", tmp_path / "all" / "model", "--out", tmp_path / "all", *FAST])


def test_run_refuses_a_plain_file(tmp_path, user_error):
    (tmp_path / "notes.txt").write_text("keep me")
    user_error(["run", FLAGSHIP, "--out", tmp_path / "notes.txt", *FAST], "is not a folder")


def test_run_refuses_a_path_below_a_plain_file(tmp_path, user_error):
    (tmp_path / "notes.txt").write_text("keep me")
    user_error(["run", FLAGSHIP, "--out", tmp_path / "notes.txt" / "sub", *FAST], "is a file")


def test_run_refuses_a_symlink_as_out(tmp_path, user_error):
    target = _user_folder(tmp_path / "real")
    (tmp_path / "link").symlink_to(target)
    user_error(["run", FLAGSHIP, "--out", tmp_path / "link", *FAST])
    assert (target / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("kind", ["compress", "tiny-model", "sweep", "study"])
def test_run_refuses_a_tlmsim_output_of_another_kind(tmp_path, user_error, kind):
    _tlmsim_output(tmp_path / "res", kind)
    user_error(["run", FLAGSHIP, "--out", tmp_path / "res", *FAST], f"holds a tlmsim {kind} output")


def test_run_refuses_a_marker_that_is_not_ours(tmp_path, user_error):
    out = _user_folder(tmp_path / "res")
    (out / ".tlmsim-output").write_text("not json at all")
    user_error(["run", FLAGSHIP, "--out", out, *FAST], "was not written by tlmsim")


@pytest.mark.parametrize("out", [".", "..", ""], ids=["dot", "dotdot", "empty"])
def test_run_refuses_cwd_parent_and_empty(tmp_path, user_error, out):
    work = tmp_path / "work"
    cfg = _config_in(work)
    (work / "notes.txt").write_text("keep me")
    # the fixture runs in tmp_path: move into work so "." is the folder of the config
    import os

    os.chdir(work)
    user_error(["run", cfg, "--out", out, *FAST])


def test_run_refuses_the_home_folder(tmp_path, user_error, monkeypatch):
    home = _user_folder(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    user_error(["run", FLAGSHIP, "--out", "~", *FAST], "home folder")


def test_run_refuses_out_before_simulating(tmp_path, user_error, monkeypatch):
    import tlmsim.simulate

    def never(*args, **kwargs):
        raise AssertionError("simulated although --out was refused")

    monkeypatch.setattr(tlmsim.simulate, "simulate", never)
    _user_folder(tmp_path / "mine")
    user_error(["run", FLAGSHIP, "--out", tmp_path / "mine", *FAST], "was not written by tlmsim")


# ---- compress and tiny-model ------------------------------------------------------------


def test_compress_refuses_its_own_source(tmp_path, user_error, models):
    src = shutil.copytree(models / "tiny", tmp_path / "tiny")
    user_error(["compress", src, "--nm", "2:4", "--out", src], "contains the input")


def test_compress_refuses_a_parent_of_its_source(tmp_path, user_error, models):
    shutil.copytree(models / "tiny", tmp_path / "m" / "tiny")
    user_error(["compress", tmp_path / "m" / "tiny", "--out", tmp_path / "m"], "contains the input")


def test_compress_refuses_a_folder_of_unrelated_files(tmp_path, user_error, models):
    _user_folder(tmp_path / "mine")
    user_error(["compress", models / "tiny", "--out", tmp_path / "mine"], "was not written by tlmsim")


def test_compress_refuses_a_plain_file(tmp_path, user_error, models):
    (tmp_path / "x.safetensors").write_bytes(b"\0" * 64)
    user_error(["compress", models / "tiny", "--out", tmp_path / "x.safetensors"], "is not a folder")


def test_compress_refuses_a_run_result(tmp_path, user_error, models):
    _tlmsim_output(tmp_path / "res", "run")
    user_error(["compress", models / "tiny", "--out", tmp_path / "res"], "holds a tlmsim run output")


@pytest.mark.parametrize("nm", ["1:3", "2:6", "0:4", "4:4", "x:4", "2:4:8"])
def test_compress_refuses_bad_patterns(tmp_path, user_error, models, nm):
    user_error(["compress", models / "tiny", "--nm", nm, "--out", tmp_path / "c"])


def test_compress_refuses_a_zero_group_size(tmp_path, user_error, models):
    user_error(["compress", models / "tiny", "--group-size", "0", "--out", tmp_path / "c"], "--group-size")


def test_tiny_model_refuses_a_folder_of_unrelated_files(tmp_path, user_error):
    _user_folder(tmp_path / "mine")
    user_error(["tiny-model", tmp_path / "mine"], "was not written by tlmsim")


def test_tiny_model_refuses_a_plain_file(tmp_path, user_error):
    (tmp_path / "model").write_text("keep me")
    user_error(["tiny-model", tmp_path / "model"], "is not a folder")


def test_tiny_model_refuses_negative_training(tmp_path, user_error):
    user_error(["tiny-model", tmp_path / "t", "--train-steps", "-1"], "--train-steps")


def test_tiny_model_replaces_its_own_output(tmp_path):
    assert main(["-q", "tiny-model", str(tmp_path / "t")]) == 0
    assert main(["-q", "tiny-model", str(tmp_path / "t")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


# ---- study ------------------------------------------------------------------------------


def test_study_refuses_a_folder_of_unrelated_files(tmp_path, user_error):
    _user_folder(tmp_path / "mine")
    user_error(["study", STUDY, "--out", tmp_path / "mine"], "was not written by tlmsim")


def test_study_refuses_the_folder_of_its_study_file(tmp_path, user_error):
    (tmp_path / "s").mkdir()
    study = Path(shutil.copy(STUDY, tmp_path / "s" / "study.yaml"))
    user_error(["study", study, "--out", tmp_path / "s"], "contains the input")
