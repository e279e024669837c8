"""Result directories appear whole or not at all."""

import pytest

from tlmsim.output import write_result_dir


def test_a_failing_writer_leaves_no_directory(tmp_path):
    def boom(path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_result_dir(tmp_path / "res", {"a.txt": lambda p: p.write_text("a"), "b.txt": boom})
    assert list(tmp_path.iterdir()) == []


def test_an_existing_result_is_replaced_whole(tmp_path):
    write_result_dir(tmp_path / "res", {"old.txt": lambda p: p.write_text("old")})
    write_result_dir(tmp_path / "res", {"new.txt": lambda p: p.write_text("new")})
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["res"]
