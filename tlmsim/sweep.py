"""Sensitivity sweeps: one simulation per point of a grid over config fields.

A sweep is the cartesian product of axes (``--set field=SPEC``). Each finished point
is appended at once as one JSON line to ``points.jsonl`` in the output folder, so an
interrupted sweep resumes by running only the points not yet there; a point that
raises is recorded with its error and the sweep goes on. Points run through an
executor (local processes, a Dask cluster, or in this process), all calling the same
pure ``run_point(raw_config, overrides) -> row``, so every executor gives the same rows.

Axis syntax (values are parsed as YAML, like ``tlmsim run --set``):

* ``a:b:step``   linear grid a, a+step, ... up to b (inclusive)
* ``log:a:b:n``  n points spaced geometrically from a to b (inclusive)
* ``[x,y,z]``    a list
* ``x``          a single value (a fixed override)

Safety, in the order a sweep meets it:

* Bounded work. Grids are never expanded: an axis knows its size arithmetically and
  computes a value on demand, points are generated one at a time, and a sweep of more
  than ``MAX_POINTS`` points is refused before anything is built (``--max-points``).
* One writer. The output folder carries the ``sweep`` marker and is locked
  (``flock`` on ``.sweep.lock``) while a sweep writes to it.
* Corrupt state is one line, never a traceback; invalid lines of points.jsonl are
  skipped with a warning (their points simply run again).
* Interrupts (ctrl-C, or SIGTERM once the CLI maps it to KeyboardInterrupt) stop every
  worker process for good; finished points stay in points.jsonl.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tlmsim.config import apply_override, validate_config
from tlmsim.errors import ConfigError, UserError
from tlmsim.output import MARKER, check_out, marker_kind, write_marker
from tlmsim.yamlio import load_yaml_text, read_text_file

log = logging.getLogger("tlmsim.sweep")

POINTS_FILE = "points.jsonl"
MANIFEST_FILE = "sweep.json"
CSV_FILE = "sweep.csv"
LOCK_FILE = ".sweep.lock"
EXECUTORS = ("local", "dask", "serial")
# A sweep point costs seconds, so 10,000 points is hours of work; more is almost always a
# typo in a step (--max-points raises the cap on purpose).
MAX_POINTS = 10_000
# How long to try a --scheduler address before saying it cannot be reached.
DASK_CONNECT_TIMEOUT_S = 5
# How long a stopped worker gets to exit after SIGTERM before it is killed.
WORKER_STOP_TIMEOUT_S = 5
# Sweeps need metrics, not traces: tracing a step costs several times its simulation.
NO_TRACE = {"prefill": False, "decode_steps": 0}


def parse_yaml(text: str, source: str):
    """Parse one YAML document of sweep input (the one place sweeps read YAML; ConfigError
    naming ``source`` if it is not valid or not accepted, see tlmsim.yamlio)."""
    return load_yaml_text(text, source)


# ---------------------------------------------------------------- axes


class Grid(Sequence):
    """Evenly spaced values computed on demand: a grid of 10^8 values costs no memory."""

    @property
    def size(self) -> int:
        """How many values the grid has (any size: it is never expanded to count them)."""
        raise NotImplementedError

    @property
    def definition(self) -> dict:
        """The grid's defining numbers (what a fingerprint hashes)."""
        raise NotImplementedError

    def value(self, i: int):
        """The i-th value, 0 <= i < size."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        if not isinstance(i, int):
            raise TypeError("a grid is indexed by int (it has no slices)")
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(i)
        return self.value(i)


@dataclass(frozen=True, eq=True)
class LinearGrid(Grid):
    """start, start + step, ... up to stop (inclusive when the step lands on it)."""

    start: int | float
    stop: int | float
    step: int | float

    @property
    def exact(self) -> bool:
        """True when every number is an int (the values are then exact ints)."""
        return all(isinstance(v, int) for v in (self.start, self.stop, self.step))

    @property
    def size(self) -> int:
        if self.exact:
            return (self.stop - self.start) // self.step + 1
        return math.floor((self.stop - self.start) / self.step + 1e-9) + 1  # 0.1:0.3:0.1 has 3 values

    @property
    def definition(self) -> dict:
        return {"linear": [self.start, self.stop, self.step]}

    def value(self, i: int):
        x = self.start + i * self.step
        return x if self.exact else _tidy(x)


@dataclass(frozen=True, eq=True)
class LogGrid(Grid):
    """count values spaced geometrically from start to stop (both included)."""

    start: float
    stop: float
    count: int

    @property
    def size(self) -> int:
        return self.count

    @property
    def definition(self) -> dict:
        return {"log": [self.start, self.stop, self.count]}

    def value(self, i: int) -> float:
        return _tidy(self.start * (self.stop / self.start) ** (i / (self.count - 1)))


@dataclass(frozen=True)
class Axis:
    """One swept config field and its values (a tuple, or a Grid computed on demand)."""

    field: str
    values: Sequence

    @property
    def size(self) -> int:
        """Number of values (computed, not counted)."""
        return self.values.size if isinstance(self.values, Grid) else len(self.values)

    @property
    def swept(self) -> bool:
        """True if the axis has more than one value (a column of interest)."""
        return self.size > 1

    @property
    def definition(self):
        """What defines the values: a grid's numbers or the list itself."""
        return self.values.definition if isinstance(self.values, Grid) else list(self.values)


def parse_axis(item: str) -> Axis:
    """Parse ``field=SPEC`` (grid, log-grid, list or single value) into an Axis (never expanded)."""
    field, sep, spec = item.partition("=")
    shown = item if len(item) <= 80 else item[:77] + "..."  # a message stays one readable line
    if not sep or not field or not spec:
        raise ConfigError(f"--set '{shown}' must look like section.field=a:b:step, log:a:b:n, [x,y] or a value")
    try:
        values = _values(spec.strip(), f"--set '{shown}'")
    except (ValueError, ZeroDivisionError) as err:
        raise ConfigError(f"--set '{shown}': {err}") from None
    axis = Axis(field, values)
    if axis.size < 1:
        raise ConfigError(f"--set '{shown}' gives no values; check that the range is not empty")
    return axis


def _values(spec: str, source: str) -> Sequence:
    if spec.startswith("log:"):
        return _log_grid(spec[4:])
    if spec.startswith("[") and spec.endswith("]"):
        values = parse_yaml(spec, source)
        if not isinstance(values, list):
            raise ValueError(f"'{spec}' is not a list like [1, 2, 3]")
        _check_finite(values)
        return tuple(values)
    if ":" in spec and all(_is_number(p) for p in spec.split(":")):
        return _linear_grid(spec)  # (YAML alone would read "1:2" as the base-60 number 62)
    value = parse_yaml(spec, source)
    _check_finite([value])
    return (value,)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(value) -> bool:
    """False for inf, nan, and ints or numeric strings beyond the float range (1e400)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str) and _is_number(value):
        return math.isfinite(float(value))
    return True


def _check_finite(values: list) -> None:
    """Refuse non-finite numbers anywhere in parsed YAML values (walked without recursion)."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += value.values()
        elif isinstance(value, list):
            stack += value
        elif not _finite(value):
            raise ValueError(f"{value!r} is not a finite number")


def _number(text: str) -> int | float:
    """A finite int or float from ``text`` (ValueError otherwise)."""
    text = text.strip()
    if len(text) > 40:
        raise ValueError(f"'{text[:20]}...' is not a number of reasonable size")
    try:
        value = int(text)
    except ValueError:
        value = float(text)
    if not _finite(value):
        raise ValueError(f"'{text}' is not a finite number")
    return value


def _numbers(spec: str, count: int, what: str) -> list[int | float]:
    parts = spec.split(":")
    if len(parts) != count or not all(_is_number(p) for p in parts):
        raise ValueError(f"'{spec}' must be {what}")
    return [_number(p) for p in parts]


def _linear_grid(spec: str) -> LinearGrid:
    start, stop, step = _numbers(spec, 3, "start:stop:step")
    if step <= 0 or stop < start:
        raise ValueError(f"'{spec}' needs step > 0 and stop >= start")
    if not math.isfinite((stop - start) / step):
        raise ValueError(f"'{spec}' has too many values; use a larger step")
    return LinearGrid(start, stop, step)


def _log_grid(spec: str) -> LogGrid:
    start, stop, count = _numbers(spec, 3, "log:start:stop:count")
    if start <= 0 or stop <= start or not isinstance(count, int) or count < 2:
        raise ValueError(f"'log:{spec}' needs 0 < start < stop and an integer count >= 2")
    if not math.isfinite(stop / start):
        raise ValueError(f"'log:{spec}': stop / start is beyond the float range")
    return LogGrid(float(start), float(stop), count)


def _tidy(x: float) -> float:
    """Round away float noise (0.30000000000000004) so values print and hash cleanly."""
    return float(f"{x:.12g}")


# ---------------------------------------------------------------- points


def grid_size(axes: list[Axis]) -> int:
    """Number of points of the cartesian product (computed, nothing built)."""
    return math.prod(a.size for a in axes)


def point_at(axes: list[Axis], index: int) -> dict:
    """The index-th point of the product, first axis varying slowest."""
    picked = {}
    for axis in reversed(axes):
        index, i = divmod(index, axis.size)
        picked[axis.field] = axis.values[i]
    return {a.field: picked[a.field] for a in axes}


def points(axes: list[Axis]) -> Iterator[dict]:
    """Cartesian product of the axes, first axis varying slowest, one {field: value} at a time."""
    for index in range(grid_size(axes)):
        yield point_at(axes, index)


def sample_points(axes: list[Axis]) -> Iterator[dict]:
    """The points validated before a sweep runs: each axis's first and last value (every value
    of a list) with the other axes at their first value. Grids are monotone, so a range
    limit any grid value breaks, its first or last value breaks too."""
    first = {a.field: a.values[0] for a in axes}
    seen = set()
    for axis in axes:
        picks = range(axis.size) if isinstance(axis.values, tuple) else (0, axis.size - 1)
        for i in picks:
            point = {**first, axis.field: axis.values[i]}
            if point_key(point) not in seen:
                seen.add(point_key(point))
                yield point
    if not axes:
        yield first


def point_key(point: dict) -> str:
    """Canonical identity of a point (used to resume)."""
    return json.dumps(point, sort_keys=True)


def count_text(n: int) -> str:
    """A point count for a message: 12,345, or ~10^15 when it is astronomically large."""
    return f"{n:,}" if n < 10**12 else f"~10^{int(n.bit_length() * math.log10(2))}"


# ---------------------------------------------------------------- one point


def point_config(raw: dict, point: dict, source: str = "sweep point"):
    """The validated Config of ``point`` (raises ConfigError naming the field)."""
    cfg = copy.deepcopy(raw)
    for field, value in point.items():
        apply_override(cfg, f"{field}={json.dumps(value)}")
    cfg["trace"] = dict(NO_TRACE)
    return validate_config(cfg, source=source)


def run_point(raw: dict, point: dict) -> dict:
    """Simulate one point; never raises: failures come back as a row with the error."""
    from tlmsim.simulate import simulate

    started = time.perf_counter()
    try:
        cfg = point_config(raw, point)
        result, _ = simulate(cfg)
        row = {"status": "ok", "error": "", **metrics(result, cfg)}
    except Exception as err:  # noqa: BLE001  (a failing point is data, not a crash)
        log.debug("point %s failed:\n%s", point, traceback.format_exc())
        row = {"status": "error", "error": f"{type(err).__name__}: {err}".splitlines()[0]}
    return {"key": point_key(point), "point": point, **row, "wall_s": time.perf_counter() - started}


def metrics(result: dict, cfg) -> dict:
    """The flat per-point numbers written to sweep.csv."""
    pre = result["phases"]["prefill"]
    row = {"prefill_ms": pre["time_s"] * 1e3, "prefill_roofline_ms": pre["roofline_time_s"] * 1e3,
           "prefill_bound_by": pre["bounding_component"]}
    dec = result["phases"].get("decode")
    if dec:
        tokens = cfg.workload.batch * dec["steps"]
        units = {k: v for k, v in dec["demand_s"].items() if k not in cfg.memory}
        compute = max(units.values(), default=0.0)
        row.update({
            "tokens_per_s": dec["tokens_per_s"], "ms_per_token": dec["ms_per_token"],
            "bound_by": dec["bounding_component"], "roofline_bound_by": dec["roofline_bound_by"],
            "bandwidth_bound_tokens_per_s": dec["bandwidth_bound_tokens_per_s"],
            "compute_bound_tokens_per_s": tokens / compute if compute else math.inf,
            "compute_bound_by": max(units, key=units.get) if units else "none",
            "roofline_tokens_per_s": tokens / dec["roofline_time_s"],
            "bytes_per_token": sum(dec["bytes_by_memory"].values()) / tokens})
        row.update({f"busy_{c}": u["busy"] for c, u in dec["utilisation"].items()
                    if c not in ("weight_buffer", "kv_buffer", "controller")})
    return row


# ---------------------------------------------------------------- the sweep's definition


@dataclass
class SweepSpec:
    """Everything that defines a sweep: base config, fixed overrides, axes."""

    config_path: Path
    raw: dict
    axes: list[Axis]

    @property
    def total(self) -> int:
        """Number of points."""
        return grid_size(self.axes)

    def points(self) -> Iterator[dict]:
        """The points in grid order, one at a time."""
        return points(self.axes)

    @property
    def fingerprint(self) -> str:
        """Hash of the base config and axes: a resumed sweep must match it."""
        data = json.dumps({"raw": self.raw, "axes": [[a.field, a.definition] for a in self.axes]}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


def prepare(config_path: str | Path, items: list[str], max_points: int = MAX_POINTS) -> SweepSpec:
    """Parse the axes, refuse a grid above ``max_points`` and validate a sample of points before
    anything runs (user errors exit 2)."""
    from tlmsim.config import load_config

    axes = [parse_axis(item) for item in items]
    fields = [a.field for a in axes]
    if len(set(fields)) != len(fields):
        raise ConfigError(f"--set names a field twice ({', '.join(sorted({f for f in fields if fields.count(f) > 1}))})")
    total = grid_size(axes)
    if total > max_points:
        sizes = [count_text(a.size) for a in axes if a.swept]
        product = f" ({' x '.join(sizes)})" if len(sizes) > 1 else ""
        raise ConfigError(f"the sweep has {count_text(total)} points{product}, more than --max-points "
                          f"{max_points:,}; use fewer values or raise --max-points")
    load_config(config_path)  # file and YAML errors, base validation
    raw = parse_yaml(read_text_file(config_path, str(config_path)), str(config_path))
    swept = [a.field for a in axes if a.swept]
    for point in sample_points(axes):
        where = ", ".join(f"{f}={json.dumps(point[f])}" for f in swept)
        point_config(raw, point, source=f"sweep point {where}" if where else "sweep point")
    return SweepSpec(Path(config_path), raw, axes)


# ---------------------------------------------------------------- the output folder


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
        sink = open(path, "a+b")
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


# ---------------------------------------------------------------- executors
#
# Each executor is a context manager yielding ``run(todo) -> rows as they finish``. On the
# way out after an error or an interrupt it stops its workers for good: none survives the
# sweep, whatever stopped it.


@contextlib.contextmanager
def _started_ignoring_sigint():
    """Processes started in here ignore SIGINT for good: a terminal's ctrl-C reaches the whole
    process group, but only the parent acts on it (it then stops the workers), so workers
    print no tracebacks. An ignored signal stays ignored across exec and Python keeps it so,
    which covers the worker's start-up too (a pool initializer would come after its imports)
    and Dask's nannies (which have no initializer hook). The parent ignores SIGINT too for
    this moment (a process start, or a local cluster's start-up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)


@contextlib.contextmanager
def local_executor(raw: dict, jobs: int) -> Iterator[Callable[[Iterable[dict]], Iterator[dict]]]:
    """Run points on ``jobs`` local processes."""
    import multiprocessing
    from concurrent import futures
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent may hold threads (torch, tqdm) that fork would copy mid-state.
    pool = futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(point: dict):
        with _started_ignoring_sigint():  # a submit may start a worker
            return pool.submit(run_point, raw, point)
    try:
        yield lambda todo: _as_finished(submit, futures.wait, todo, 2 * jobs)
    except BrokenProcessPool:
        _stop_pool(pool)
        raise UserError("a sweep worker process died (out of memory?); finished points are kept; rerun the "
                        "same command to resume") from None
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown()


def _stop_pool(pool) -> None:
    """Stop every worker of a ProcessPoolExecutor now: SIGTERM, then SIGKILL if it lingers."""
    with _signals_deferred():
        workers = list((pool._processes or {}).values())  # no public way before Python 3.14
        for worker in workers:
            worker.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.join(WORKER_STOP_TIMEOUT_S)
            if worker.is_alive():
                worker.kill()
                worker.join(1)


@contextlib.contextmanager
def dask_executor(raw: dict, jobs: int, address: str | None = None
                  ) -> Iterator[Callable[[Iterable[dict]], Iterator[dict]]]:
    """Run points on a Dask cluster (``address``) or on a local one of ``jobs`` workers."""
    from distributed import Client, LocalCluster, wait

    before = _child_pids()
    client = cluster = None
    try:
        if address:
            client = _connect(Client, address)
            window = 2 * max(jobs, sum(client.nthreads().values()))
        else:
            # silence_logs: workers whose task is cancelled by an interrupt log warnings; not news.
            with _started_ignoring_sigint():
                cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
            client = Client(cluster)
            window = 2 * jobs
        # pure=False: identical inputs must still run (a retried point is a new run).
        yield lambda todo: _as_finished(lambda p: client.submit(run_point, raw, p, pure=False), wait, todo, window)
    finally:
        with _signals_deferred():
            if client is not None:
                client.close(timeout=WORKER_STOP_TIMEOUT_S)
            if cluster is not None:
                cluster.close(timeout=WORKER_STOP_TIMEOUT_S)
                _kill_children_since(before)  # a nanny or worker that outlived close()


def _connect(client_class, address: str):
    """A Client of the scheduler at ``address``, or one line if it does not answer in a few seconds."""
    try:
        return client_class(address, timeout=DASK_CONNECT_TIMEOUT_S)
    except (OSError, ValueError, TimeoutError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address} ({reason}); start it or drop "
                        f"--scheduler") from None


def _child_pids() -> set[int]:
    """Pids of this process's descendants."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _kill_children_since(before: set[int]) -> None:
    """Kill descendants started after ``before`` was taken (multiprocessing's resource tracker excepted)."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        if proc.pid in before:
            continue
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(proc.cmdline()):
                proc.kill()


@contextlib.contextmanager
def serial_executor(raw: dict, jobs: int = 1) -> Iterator[Callable[[Iterable[dict]], Iterator[dict]]]:
    """Run points one after the other in this process (debugging, tiny sweeps)."""
    yield lambda todo: (run_point(raw, p) for p in todo)


def _as_finished(submit, wait, todo: Iterable[dict], window: int) -> Iterator[dict]:
    """Rows as their points finish, with at most ``window`` points submitted at a time (a long
    sweep holds a few futures, not one per point); unfinished ones are cancelled on exit."""
    pending: set = set()
    try:
        for point in todo:
            pending.add(submit(point))
            if len(pending) >= window:
                done, pending = wait(pending, return_when="FIRST_COMPLETED")
                yield from (f.result() for f in done)
        while pending:
            done, pending = wait(pending, return_when="FIRST_COMPLETED")
            yield from (f.result() for f in done)
    finally:
        for future in pending:
            future.cancel()


@contextlib.contextmanager
def _signals_deferred():
    """Hold off SIGINT and SIGTERM while workers are being stopped: a second ctrl-C must not
    interrupt the clean-up and orphan them (the first interrupt is already on its way up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = [signal.SIGINT, signal.SIGTERM]
    old = {s: signal.signal(s, lambda *_: None) for s in caught}
    try:
        yield
    finally:
        for s, handler in old.items():
            if handler is not None:  # (None: a handler not installed from Python, nothing to restore)
                signal.signal(s, handler)


EXECUTOR_CONTEXTS = {"local": local_executor, "dask": dask_executor, "serial": serial_executor}


# ---------------------------------------------------------------- running a sweep


def run_sweep(spec: SweepSpec, out: Path | str, executor: str = "local", jobs: int = 2, address: str | None = None,
              retry_failed: bool = False, on_row: Callable[[dict, int, int], None] | None = None,
              on_start: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run the missing points of ``spec`` into ``out``; returns all rows in grid order.

    ``on_start(todo, total)`` is called once the folder is checked and the workers are up
    (so a refused start prints nothing but its error), ``on_row(row, done, todo)`` after
    each point is recorded."""
    on_start = on_start or (lambda todo, total: None)
    with SweepFolder(out, spec) as folder:
        done = folder.done
        if retry_failed:
            done = {k: r for k, r in done.items() if r["status"] == "ok"}
        todo = sum(point_key(p) not in done for p in spec.points())
        if not todo:
            on_start(0, spec.total)
        else:
            missing = (p for p in spec.points() if point_key(p) not in done)
            args = (address,) if executor == "dask" else ()
            with EXECUTOR_CONTEXTS[executor](spec.raw, min(jobs, todo), *args) as run, \
                    contextlib.closing(run(missing)) as rows:
                on_start(todo, spec.total)
                for i, row in enumerate(rows, start=1):
                    folder.record(row)
                    done[row["key"]] = row
                    if on_row is not None:
                        on_row(row, i, todo)
    return [done[point_key(p)] for p in spec.points()]


# ---------------------------------------------------------------- outputs


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` via a temporary sibling (same suffix, so writers pick the format) and a
    rename: a reader never sees half a file, and a failure leaves no temporary behind."""
    write_all_atomic([path], lambda tmps: write(tmps[0]))


def write_all_atomic(paths: list[Path], write: Callable[[list[Path]], None]) -> None:
    """write_atomic for several files written by one call (a plot saved as PNG and SVG)."""
    tmps = [p.with_name(f".{p.stem}.{os.getpid()}.tmp{p.suffix}") for p in paths]
    try:
        write(tmps)
        for tmp, path in zip(tmps, paths):
            tmp.replace(path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def table(rows: list[dict], axes: list[Axis]) -> tuple[list[str], list[list]]:
    """CSV header and rows: swept fields, status, then metrics (union, first-seen order)."""
    fields = [a.field for a in axes if a.swept] or [a.field for a in axes]
    skip = {"key", "point", "wall_s", "status", "error"}  # wall time differs run to run
    metric_names: list[str] = []
    for row in rows:
        metric_names += [k for k in row if k not in skip and k not in metric_names]
    header = [*fields, *metric_names, "status", "error"]
    body = [[*(r["point"][f] for f in fields), *(r.get(k, "") for k in metric_names), r["status"], r["error"]]
            for r in rows]
    return header, body


def write_csv(path: Path, rows: list[dict], axes: list[Axis]) -> None:
    """Write sweep.csv (grid order) atomically."""
    header, body = table(rows, axes)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(body)
    write_atomic(path, write)


def read_csv(path: Path) -> list[dict]:
    """Rows of a sweep.csv as dicts (numbers converted)."""
    with open(path, newline="") as f:
        return [{k: _csv_number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _csv_number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def knee(xs: Iterable[float], bandwidth_bound: Iterable[float], compute_bound: Iterable[float]) -> float | None:
    """The x where the bandwidth roofline crosses the compute roofline (log-log interpolation;
    exact when the bandwidth bound is proportional to x), or None if they do not cross."""
    pts = [(x, b, c) for x, b, c in zip(xs, bandwidth_bound, compute_bound) if x > 0 and b > 0 and 0 < c < math.inf]
    for (x0, b0, c0), (x1, b1, c1) in zip(pts, pts[1:]):
        d0, d1 = math.log(b0 / c0), math.log(b1 / c1)
        if d0 < 0 <= d1:
            t = -d0 / (d1 - d0)
            return math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
    return None


# ---------------------------------------------------------------- progress


class Progress:
    """Sweep progress: a tqdm bar on a terminal; otherwise one log line per finished point with
    points done / to do, elapsed time and ETA (so a log shows life at least once per point)."""

    def __init__(self, out: Path | str, fields: Iterable[str] = ()):
        self.out = out
        self.fields = list(fields)  # the swept fields, shown per point (fixed overrides are noise)
        self.todo = self.total = self.finished = 0
        self.started: float | None = None
        self._bar = None

    def start(self, todo: int, total: int) -> None:
        """Called once the folder is checked: how much there is to do."""
        self.todo, self.total, self.started = todo, total, time.perf_counter()
        log.info("sweep: %d of %d points to run (%d already in %s)", todo, total, total - todo, self.out)
        if todo and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=todo, unit="point", file=sys.stderr)

    def row(self, row: dict, done: int, todo: int) -> None:
        """Called after each recorded point."""
        self.finished = done
        if self._bar is not None:
            self._bar.update(1)
            if done == todo:
                self.close()
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (todo - done)
        status = f"{row.get('tokens_per_s', 0):.2f} tokens/s" if row["status"] == "ok" else row["error"]
        point = {f: v for f, v in row["point"].items() if f in self.fields} or row["point"]
        log.info("  point %d/%d %s: %s (%.1f s); %s elapsed, ETA %s", done, todo, point, status,
                 row["wall_s"], duration_text(elapsed), duration_text(eta))

    def close(self) -> None:
        """End the bar (if any) so later messages start on a clean line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def duration_text(seconds: float) -> str:
    """12 s, 3.5 min or 2.1 h."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
