"""Write a run's result directory atomically: all files or nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tlmsim.errors import UserError


def write_result_dir(out: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Create ``out`` with one file per writer, via a temporary sibling and a rename."""
    with atomic_dir(out) as tmp:
        for name, write in writers.items():
            write(tmp / name)


@contextlib.contextmanager
def atomic_dir(out: Path):
    """Yield a temporary sibling of ``out``; on success it becomes ``out``, on failure it vanishes."""
    out = Path(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as err:
        raise UserError(f"cannot write under {parent} ({err.strerror}); choose another --out") from None
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def write_json(path: Path, data) -> None:
    """Pretty JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=1) + "\n")
