"""Output folders that never destroy what tlmsim did not write.

Every folder tlmsim writes carries a marker file, ``.tlmsim-output``, naming the
command that wrote it. An existing ``--out`` is replaced only when its marker says it
is a tlmsim output of the same kind; anything else (a user's folder, a plain file, a
different kind of output) is refused with one line and exit 2. Inputs (the config, the
model folder, a compress source) may never lie inside the output. A finished folder
replaces the old one by renames, so a reader sees the old folder or the new one, and a
crash or signal mid-write leaves the old one untouched and no temporary folder behind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from tlmsim.engine.errors import UserError

MARKER = ".tlmsim-output"
KINDS = ("run", "compress", "tiny-model", "sweep", "study", "validate")


@functools.cache  # constant for the life of the process
def tlmsim_version() -> str:
    """The installed tlmsim version (from the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlmsim")
    except PackageNotFoundError:
        return "unknown"


def marker_kind(folder: Path) -> str | None:
    """The kind of tlmsim output ``folder`` is, or None if it is not one."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if kind in KINDS else None


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as a tlmsim output of ``kind``."""
    if kind not in KINDS:  # a marker check_out would not recognise would lock the folder against rewriting
        raise ValueError(f"unknown output kind {kind!r}; add it to tlmsim.output.KINDS")
    data = {"kind": kind, "written_by": f"tlmsim {tlmsim_version()}"}
    (Path(folder) / MARKER).write_text(json.dumps(data) + "\n")


def check_out(out: Path, kind: str, inputs: Iterable[Path | str] = ()) -> Path:
    """Refuse an ``--out`` that would destroy something tlmsim did not write; returns it resolved."""
    if str(out).strip() == "":
        raise UserError("--out is empty; give the folder to write, e.g. --out results/x")
    target = Path(out).expanduser().resolve()
    if target == Path(target.anchor) or target == Path.home().resolve():
        raise UserError(f"--out {out} is a root or home folder; give a folder of its own, e.g. --out results/x")
    for item in inputs:
        src = Path(item).expanduser().resolve()
        if src == target or target in src.parents:
            raise UserError(f"--out {out} contains the input {item}; choose an --out outside it")
        if src in target.parents and src.is_file():
            raise UserError(f"--out {out} lies inside the input file {item}; choose another --out")
    ancestor = next(p for p in target.parents if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"cannot write --out {out}: {ancestor} is a file; choose another --out")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UserError(f"--out {out} exists and is not a folder; choose another --out or move it away")
    if target.is_dir():
        found = marker_kind(target)
        if found is None and any(target.iterdir()):
            raise UserError(f"--out {out} exists and was not written by tlmsim; choose another --out "
                            f"(tlmsim replaces only its own output folders)")
        if found is not None and found != kind:
            raise UserError(f"--out {out} holds a tlmsim {found} output, not a {kind} output; choose another --out")
    return target


@contextlib.contextmanager
def atomic_dir(out: Path, kind: str, inputs: Iterable[Path | str] = ()):
    """Yield a temporary sibling of ``out``; on success it replaces ``out``, on any failure it vanishes."""
    target = check_out(out, kind, inputs)
    # The name is chosen before anything exists, so a signal at any point leaves nothing behind.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        _make_temporary(tmp, out)
        yield tmp
        write_marker(tmp, kind)
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_result_dir(out: Path, writers: dict[str, Callable[[Path], None]], kind: str = "run",
                     inputs: Iterable[Path | str] = ()) -> None:
    """Create ``out`` with one file per writer, all of them or none."""
    with atomic_dir(out, kind, inputs) as tmp:
        for name, write in writers.items():
            write(tmp / name)


def _make_temporary(tmp: Path, out: Path) -> None:
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(mode=0o755)
    except OSError as err:
        raise UserError(f"cannot write --out {out} ({err.strerror}); choose another --out") from None


def _replace(tmp: Path, target: Path) -> None:
    """Swap ``tmp`` in for ``target`` (an old tlmsim output of the same kind, or nothing)."""
    if not target.exists():
        tmp.rename(target)
        return
    old = target.with_name(f".{target.name}.old.{os.getpid()}")
    moved = False
    try:
        target.rename(old)
        moved = True
        tmp.rename(target)
    except BaseException:
        if moved and not target.exists():
            old.rename(target)  # put the old output back rather than lose it
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data) -> None:
    """Pretty JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=1) + "\n")


def write_table_dir(out: Path, kind: str, inputs: Iterable[Path | str], stem: str, rows: list[dict],
                    columns: list[str], markdown: str) -> None:
    """Create ``out`` with ``<stem>.csv`` (``rows`` in ``columns``) and ``<stem>.md``, all or nothing."""
    import csv

    with atomic_dir(out, kind, inputs) as tmp:
        with open(tmp / f"{stem}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        (tmp / f"{stem}.md").write_text(markdown + "\n")
