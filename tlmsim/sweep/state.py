"""A sweep's output folder: marker, lock, sweep.json (the manifest) and points.jsonl.

One writer at a time (``flock`` on .sweep.lock); corrupt state is one line; invalid
lines of points.jsonl are skipped with a warning (their points simply run again).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

from tlmsim.engine.errors import UserError
from tlmsim.output import MARKER, check_out, marker_kind, write_marker
from tlmsim.sweep.grid import point_key
from tlmsim.sweep.outputs import write_atomic
from tlmsim.sweep.spec import SweepSpec

log = logging.getLogger("tlmsim.sweep")

POINTS_FILE = "points.jsonl"
MANIFEST_FILE = "sweep.json"
CSV_FILE = "sweep.csv"
LOCK_FILE = ".sweep.lock"


def check_sweep_out(out: Path | str, spec: SweepSpec) -> Path:
    """Refuse an --out that is not (and cannot become) a sweep folder of its own; returns it resolved."""
    if str(out).strip() == "":
        raise UserError("--out is empty; give the sweep a folder, e.g. --out results/x-sweep")
    target = Path(out).expanduser().resolve()
    if Path.cwd().resolve().is_relative_to(target):
        raise UserError(f"--out {out} is the current folder or one above it; give the sweep a folder of its "
                        f"own, e.g. --out results/x-sweep")
    inputs = [spec.config_path]
    workload = spec.raw.get("workload")
    model = workload.get("model") if isinstance(workload, dict) else None
    if isinstance(model, str) and Path(model).expanduser().exists():
        inputs.append(Path(model))  # a local model folder is an input too
    return check_out(out, "sweep", inputs=inputs)


def read_manifest(path: Path) -> dict:
    """sweep.json as a dict with a fingerprint (one line if it is anything else)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str):
        raise UserError(f"{path} is corrupt; delete the folder or choose another --out")
    return data


def load_points(out: Path) -> dict[str, dict]:
    """Finished points already in ``out``, keyed by point (see read_points)."""
    return read_points(Path(out) / POINTS_FILE)[0]


def read_points(path: Path) -> tuple[dict[str, dict], int]:
    """The valid rows of points.jsonl by key (a later row wins) and where its complete lines end.

    A torn last line (a kill mid-write) is ignored silently; any other invalid line (not
    JSON, not a row) is skipped with a warning: its point just runs again."""
    data = path.read_bytes() if path.exists() else b""  # (a folder in its place raises OSError)
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    done: dict[str, dict] = {}
    invalid = 0
    for line in lines:
        row = _row(line)
        if row is None:
            invalid += line.strip() != b""
        else:
            done[row["key"]] = row
    end = len(data) - len(tail)
    row = _row(tail)
    if row is not None:  # a whole row that only lacks its newline
        done[row["key"]] = row
        end = len(data)
    if invalid:
        log.warning("warning: %s: skipped %d invalid line%s (not sweep rows); their points run again",
                    path, invalid, "s" if invalid > 1 else "")
    return done, end


def _row(line: bytes) -> dict | None:
    """The sweep row on ``line``, or None if the line is not one."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None
    valid = (isinstance(row, dict) and isinstance(row.get("point"), dict) and row.get("key") == point_key(row["point"])
             and row.get("status") in ("ok", "error") and isinstance(row.get("error"), str)
             and (row["status"] == "error" or isinstance(row.get("prefill_ms"), (int, float))))
    return row if valid else None


class SweepFolder:
    """A sweep's output folder, held by one writer: created or resumed, locked, checked, appended to.

    Entering checks ``out`` (check_sweep_out), creates it if needed with the ``sweep``
    marker, takes the lock, checks sweep.json against the spec and reads the finished
    points (``done``). If the sweep fails before it records a point, everything this run
    added is removed again, so a refused or interrupted start leaves nothing behind."""

    def __init__(self, out: Path | str, spec: SweepSpec):
        self.out = out
        self.spec = spec
        self.path = check_sweep_out(out, spec)
        self.done: dict[str, dict] = {}
        self.recorded = 0
        self._created: Path | None = None  # the topmost folder this run created
        self._added: list[Path] = []  # files this run created in an existing folder
        self._lock_fd: int | None = None
        self._sink = None
        self._points_end = 0

    def __enter__(self) -> SweepFolder:
        self._make()
        try:
            self._lock()
            self._claim()
            self._check_state()
        except BaseException:
            if self._lock_fd is not None:  # undo only while holding the lock: else it is another writer's
                self._undo()
                self._unlock()
            raise
        return self

    def __exit__(self, kind, err, tb) -> None:
        if self._sink is not None:
            self._sink.close()
        if err is not None and not self.recorded:
            self._undo()
        self._unlock()

    def record(self, row: dict) -> None:
        """Append one finished point, flushed and synced: a kill loses at most the points in progress."""
        if self._sink is None:
            self._sink = self._open_points()
        # Counted before the write: once a row may be on disk, an interrupt must not undo the folder.
        self.recorded += 1
        self._sink.write((json.dumps(row) + "\n").encode())
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self.done[row["key"]] = row

    def _make(self) -> None:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._created = missing[-1] if missing else None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create --out {self.out} ({err.strerror}); choose another --out") from None

    def _lock(self) -> None:
        """Take the folder's lock without waiting; a second writer gets one line naming the first."""
        path = self.path / LOCK_FILE
        existed = path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserError(f"cannot lock {path} ({err.strerror}); choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = "".join(c for c in os.read(fd, 64).decode(errors="replace") if c.isdigit()) or "unknown"
            os.close(fd)
            raise UserError(f"another sweep is writing {self.out} (pid {holder}); wait for it or choose "
                            f"another --out") from None
        self._lock_fd = fd
        if not existed:
            self._added.append(path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _claim(self) -> None:
        """Mark a new (or empty) folder as a sweep folder."""
        if marker_kind(self.path) == "sweep":
            return
        if any(p.name != LOCK_FILE for p in self.path.iterdir()):  # filled since check_sweep_out looked
            raise UserError(f"--out {self.out} exists and was not written by tlmsim; choose another --out")
        write_marker(self.path, "sweep")
        self._added.append(self.path / MARKER)

    def _check_state(self) -> None:
        """Refuse a folder of a different sweep or with a corrupt sweep.json; read the finished points."""
        manifest = self.path / MANIFEST_FILE
        points_file = self.path / POINTS_FILE
        if manifest.exists() or manifest.is_symlink():
            if read_manifest(manifest)["fingerprint"] != self.spec.fingerprint:
                raise UserError(f"{self.out} holds a different sweep (config or --set changed); choose another "
                                f"--out or delete it")
        elif points_file.exists():
            raise UserError(f"{manifest} is missing, so {points_file} cannot be trusted; delete the folder or "
                            f"choose another --out")
        else:
            _write_manifest(manifest, self.spec)
            self._added.append(manifest)
        try:
            self.done, self._points_end = read_points(points_file)
        except OSError as err:
            raise UserError(f"cannot read {points_file} ({err.strerror}); delete the folder or choose another "
                            f"--out") from None

    def _open_points(self):
        """points.jsonl for appending, with a torn last line (a kill mid-write) cut off first."""
        path = self.path / POINTS_FILE
        if not path.exists():
            self._added.append(path)
        # The handle outlives this method: it becomes self._sink, closed by close().
        sink = open(path, "a+b")  # noqa: SIM115
        if os.fstat(sink.fileno()).st_size > self._points_end:
            sink.truncate(self._points_end)
        if self._points_end:
            sink.seek(self._points_end - 1)
            if sink.read(1) != b"\n":
                sink.write(b"\n")  # a whole last row without its newline
        return sink

    def _undo(self) -> None:
        """Remove what this run added (it recorded no point, so nothing is lost)."""
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
            return
        for path in reversed(self._added):
            with contextlib.suppress(OSError):
                path.unlink()


def _write_manifest(path: Path, spec: SweepSpec) -> None:
    data = {"config": str(spec.config_path), "fingerprint": spec.fingerprint, "points": spec.total,
            "axes": {a.field: {"values": a.definition, "size": a.size} for a in spec.axes}, "base_config": spec.raw}
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=1) + "\n"))
