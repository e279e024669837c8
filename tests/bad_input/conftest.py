"""The contract every bad-input test checks: exit 2, one line on stderr, no traceback,
no partial output, and every file that existed before still there, byte for byte."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tlmsim.cli import main


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (relative) with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if not p.is_symlink()}


@dataclass
class Outcome:
    """What one CLI call did."""

    code: int
    out: str
    err: str


@pytest.fixture
def user_error(tmp_path, capsys, monkeypatch):
    """``user_error(args, fragment)``: run the CLI in ``tmp_path`` and check the bad-input contract.

    New files are allowed only where ``allow_new`` says (a glob relative to tmp_path);
    everything present before must be unchanged."""
    monkeypatch.chdir(tmp_path)

    def check(args: list[str], fragment: str | None = None, allow_new: tuple[str, ...] = ()) -> str:
        before = snapshot(tmp_path)
        code = main([str(a) for a in args])
        got = capsys.readouterr()
        after = snapshot(tmp_path)
        assert code == 2, got.err
        assert got.err.startswith("error: ") and got.err.count("\n") == 1, got.err
        assert "Traceback" not in got.err + got.out
        for path, data in before.items():
            assert path in after, f"{path} was removed"
            assert after[path] == data, f"{path} was changed"
        new = [p for p in after if p not in before and not any(Path(p).match(g) for g in allow_new)]
        assert not new, f"left behind: {new}"
        if fragment is not None:
            assert fragment in got.err, got.err
        return got.err

    return check
