"""`tlmsim study` reads its file by the config loader's rules and fails in one line."""

from __future__ import annotations

import pytest

GOOD = "name: s\nbase: {base}\nkind: matmul\nformats: [int4]\n"


@pytest.mark.parametrize("text,fragment", [
    ("name: s\nname: t\nbase: x\nkind: matmul\nformats: [int4]\n", "duplicate key"),
    ("a: &x [1]\nname: s\nbase: x\nkind: matmul\nformats: *x\n", "alias"),
    ("name: s\nbase: x\nkind: nonsense\nformats: [int4]\n", "kind"),
    ("name: s\nbase: x\nkind: matmul\nformats: []\n", "formats"),
    ("name: s\nbase: x\nkind: matmul\nformats: [int4]\nbatches: [0]\n", "batches"),
    ("name: s\nbase: x\nkind: matmul\nformats: [int4]\nshape: [4096]\n", "shape"),
    ("name: s\nbase: x\nkind: matmul\nformats: [int4]\ndecode_tokens: true\n", "decode_tokens"),
    ("name: s\nbase: x\nkind: matmul\nformats: [int4]\ncolour: red\n", "colour"),
    ("- a list\n", "(top level)"),
], ids=["duplicate key", "alias", "unknown kind", "no formats", "zero batch", "short shape", "bool as int",
        "unknown field", "not a mapping"])
def test_bad_study_files_are_one_line(tmp_path, user_error, text, fragment):
    study = tmp_path / "study.yaml"
    study.write_text(text)
    user_error(["study", study, "--out", tmp_path / "out"], fragment)


def test_a_missing_study_file_is_one_line(tmp_path, user_error):
    user_error(["study", tmp_path / "nope.yaml", "--out", tmp_path / "out"], "not found")


def test_a_binary_study_file_is_one_line(tmp_path, user_error):
    study = tmp_path / "study.yaml"
    study.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    user_error(["study", study, "--out", tmp_path / "out"])
