"""Output folders: all files or none, and never the loss of a folder tlmsim did not write."""

import pytest

from tlmsim.engine.errors import UserError
from tlmsim.output import MARKER, atomic_dir, check_out, marker_kind, write_result_dir


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_failing_writer_leaves_nothing(tmp_path):
    def boom(path):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_result_dir(tmp_path / "res", {"a.txt": lambda p: p.write_text("a"), "b.txt": boom})
    assert list(tmp_path.iterdir()) == []


def test_an_existing_result_is_replaced_whole(tmp_path):
    write_result_dir(tmp_path / "res", {"old.txt": lambda p: p.write_text("old")})
    write_result_dir(tmp_path / "res", {"new.txt": lambda p: p.write_text("new")})
    assert _names(tmp_path / "res") == [MARKER, "new.txt"]
    assert marker_kind(tmp_path / "res") == "run"
    assert _names(tmp_path) == ["res"]  # no .old or .partial sibling left


def test_a_folder_tlmsim_did_not_write_is_refused_and_kept(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="was not written by tlmsim"):
        write_result_dir(mine, {"result.json": lambda p: p.write_text("{}")})
    assert (mine / "thesis.tex").read_text() == "years of work" and _names(mine) == ["thesis.tex"]


def test_an_empty_folder_may_be_used(tmp_path):
    (tmp_path / "empty").mkdir()
    write_result_dir(tmp_path / "empty", {"a.txt": lambda p: p.write_text("a")})
    assert _names(tmp_path / "empty") == [MARKER, "a.txt"]


def test_a_plain_file_is_never_turned_into_a_folder(tmp_path):
    (tmp_path / "notes").write_text("keep me")
    with pytest.raises(UserError, match="is not a folder"):
        write_result_dir(tmp_path / "notes", {"a.txt": lambda p: p.write_text("a")})
    assert (tmp_path / "notes").read_text() == "keep me"


def test_an_output_of_another_kind_is_refused(tmp_path):
    write_result_dir(tmp_path / "res", {"a.txt": lambda p: p.write_text("a")}, kind="compress")
    with pytest.raises(UserError, match="holds a tlmsim compress output"):
        write_result_dir(tmp_path / "res", {"a.txt": lambda p: p.write_text("b")}, kind="run")
    assert (tmp_path / "res" / "a.txt").read_text() == "a"


@pytest.mark.parametrize("where", ["same", "inside"])
def test_an_input_may_not_lie_inside_the_output(tmp_path, where):
    out = tmp_path / "res"
    write_result_dir(out, {"config.yaml": lambda p: p.write_text("x")})
    source = out if where == "same" else out / "config.yaml"
    with pytest.raises(UserError, match="contains the input"):
        check_out(out, "run", [source])
    assert (out / "config.yaml").read_text() == "x"


@pytest.mark.parametrize("out", ["", "/", "~"])
def test_empty_root_and_home_are_refused(out):
    with pytest.raises(UserError):
        check_out(out, "run")


def test_an_interrupt_mid_write_keeps_the_old_output_and_no_temporary(tmp_path):
    out = tmp_path / "res"
    write_result_dir(out, {"a.txt": lambda p: p.write_text("old")})
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, "run") as tmp:
        (tmp / "a.txt").write_text("half")
        raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "old" and _names(tmp_path) == ["res"]
