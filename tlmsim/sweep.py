"""Sensitivity sweeps: one simulation per point of a grid over config fields.

A sweep is the cartesian product of axes (``--set field=SPEC``). Each finished point
is appended at once as one JSON line to ``points.jsonl`` in the output directory, so
an interrupted sweep resumes by running only the points not yet there; a point that
raises is recorded with its error and the sweep goes on. Points run through an
executor (local processes, a Dask cluster, or in this process), all calling the same
pure ``run_point(raw_config, overrides) -> row``, so every executor gives the same rows.

Axis syntax (values are parsed as YAML, like ``tlmsim run --set``):

* ``a:b:step``   linear grid a, a+step, ... up to b (inclusive)
* ``log:a:b:n``  n points spaced geometrically from a to b (inclusive)
* ``[x,y,z]``    a list
* ``x``          a single value (a fixed override)
"""

from __future__ import annotations

import copy
import csv
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tlmsim.config import apply_override, validate_config
from tlmsim.errors import ConfigError, UserError

log = logging.getLogger("tlmsim.sweep")

POINTS_FILE = "points.jsonl"
MANIFEST_FILE = "sweep.json"
CSV_FILE = "sweep.csv"
EXECUTORS = ("local", "dask", "serial")
# Sweeps need metrics, not traces: tracing a step costs several times its simulation.
NO_TRACE = {"prefill": False, "decode_steps": 0}


@dataclass(frozen=True)
class Axis:
    """One swept config field and its values."""

    field: str
    values: tuple

    @property
    def swept(self) -> bool:
        """True if the axis has more than one value (a column of interest)."""
        return len(self.values) > 1


def parse_axis(item: str) -> Axis:
    """Parse ``field=SPEC`` (grid, log-grid, list or single value) into an Axis."""
    field, sep, spec = item.partition("=")
    if not sep or not field or not spec:
        raise ConfigError(f"--set '{item}' must look like section.field=a:b:step, log:a:b:n, [x,y] or a value")
    try:
        values = _values(spec.strip())
    except (ValueError, ZeroDivisionError) as err:
        raise ConfigError(f"--set '{item}': {err}") from None
    if not values:
        raise ConfigError(f"--set '{item}' gives no values; check that the range is not empty")
    return Axis(field, tuple(values))


def _values(spec: str) -> list:
    if spec.startswith("log:"):
        return _log_grid(spec[4:])
    if spec.startswith("[") and spec.endswith("]"):
        values = yaml.safe_load(spec)
        if not isinstance(values, list):
            raise ValueError(f"'{spec}' is not a list like [1, 2, 3]")
        return values
    if ":" in spec and all(_is_number(p) for p in spec.split(":")):
        return _linear_grid(spec)  # (YAML alone would read "1:2" as the base-60 number 62)
    return [yaml.safe_load(spec)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(spec: str, count: int, what: str) -> list[float]:
    parts = spec.split(":")
    if len(parts) != count or not all(_is_number(p) for p in parts):
        raise ValueError(f"'{spec}' must be {what}")
    return [yaml.safe_load(p) for p in parts]


def _linear_grid(spec: str) -> list:
    start, stop, step = _numbers(spec, 3, "start:stop:step")
    if step <= 0 or stop < start:
        raise ValueError(f"'{spec}' needs step > 0 and stop >= start")
    count = math.floor((stop - start) / step + 1e-9) + 1
    exact = all(isinstance(v, int) for v in (start, stop, step))
    return [start + i * step if exact else _tidy(start + i * step) for i in range(count)]


def _log_grid(spec: str) -> list[float]:
    start, stop, count = _numbers(spec, 3, "log:start:stop:count")
    if start <= 0 or stop <= start or not isinstance(count, int) or count < 2:
        raise ValueError(f"'log:{spec}' needs 0 < start < stop and an integer count >= 2")
    return [_tidy(start * (stop / start) ** (i / (count - 1))) for i in range(count)]


def _tidy(x: float) -> float:
    """Round away float noise (0.30000000000000004) so values print and hash cleanly."""
    return float(f"{x:.12g}")


def points(axes: list[Axis]) -> list[dict]:
    """Cartesian product of the axes, first axis varying slowest, as {field: value} dicts."""
    return [dict(zip([a.field for a in axes], combo)) for combo in itertools.product(*(a.values for a in axes))]


def point_key(point: dict) -> str:
    """Canonical identity of a point (used to resume)."""
    return json.dumps(point, sort_keys=True)


# ---------------------------------------------------------------- one point


def point_config(raw: dict, point: dict):
    """The validated Config of ``point`` (raises ConfigError naming the field)."""
    cfg = copy.deepcopy(raw)
    for field, value in point.items():
        apply_override(cfg, f"{field}={json.dumps(value)}")
    cfg["trace"] = dict(NO_TRACE)
    return validate_config(cfg, source="sweep point")


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


# ---------------------------------------------------------------- executors


def run_local(raw: dict, todo: list[dict], jobs: int) -> Iterator[dict]:
    """Run points on ``jobs`` local processes; yields rows as they finish."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold threads (torch, tqdm) that fork would copy mid-state.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_point, raw, p) for p in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def run_dask(raw: dict, todo: list[dict], jobs: int, address: str | None = None) -> Iterator[dict]:
    """Run points on a Dask cluster (``address``) or on a local one of ``jobs`` workers."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None if address else LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                dashboard_address=None)
    try:
        with Client(address or cluster) as client:
            # pure=False: identical inputs must still run (a retried point is a new run).
            futures = [client.submit(run_point, raw, p, pure=False) for p in todo]
            for future in as_completed(futures):
                yield future.result()
    finally:
        if cluster is not None:
            cluster.close()


def run_serial(raw: dict, todo: list[dict], jobs: int = 1) -> Iterator[dict]:
    """Run points one after the other in this process (debugging, tiny sweeps)."""
    for p in todo:
        yield run_point(raw, p)


# ---------------------------------------------------------------- the sweep


@dataclass
class SweepSpec:
    """Everything that defines a sweep: base config, fixed overrides, axes."""

    config_path: Path
    raw: dict
    axes: list[Axis]

    @property
    def fingerprint(self) -> str:
        """Hash of the base config and axes: a resumed sweep must match it."""
        data = json.dumps({"raw": self.raw, "axes": [[a.field, list(a.values)] for a in self.axes]}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


def prepare(config_path: str | Path, items: list[str]) -> SweepSpec:
    """Parse axes and validate every point's config before anything runs (user errors exit 2)."""
    from tlmsim.config import load_config

    axes = [parse_axis(item) for item in items]
    fields = [a.field for a in axes]
    if len(set(fields)) != len(fields):
        raise ConfigError(f"--set names a field twice ({', '.join(sorted({f for f in fields if fields.count(f) > 1}))})")
    load_config(config_path)  # file and YAML errors, base validation
    raw = yaml.safe_load(Path(config_path).read_text())
    for point in points(axes):
        point_config(raw, point)
    return SweepSpec(Path(config_path), raw, axes)


def load_points(out: Path) -> dict[str, dict]:
    """Finished points already in ``out`` (a torn last line from a kill is ignored)."""
    path = out / POINTS_FILE
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["key"]] = row
    return done


def check_resumable(out: Path, spec: SweepSpec) -> None:
    """Refuse to mix points of a different sweep into ``out``."""
    manifest = out / MANIFEST_FILE
    if not manifest.is_file():
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out} exists and is not a sweep directory; choose another --out")
        return
    old = json.loads(manifest.read_text()).get("fingerprint")
    if old != spec.fingerprint:
        raise UserError(f"{out} holds a different sweep (config or --set changed); choose another --out or delete it")


def run_sweep(spec: SweepSpec, out: Path, executor: str = "local", jobs: int = 2, address: str | None = None,
              retry_failed: bool = False, on_row: Callable[[dict, int, int], None] | None = None) -> list[dict]:
    """Run the missing points of ``spec`` into ``out``; returns all rows in grid order."""
    check_resumable(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, spec, executor, jobs)
    done = load_points(out)
    if retry_failed:
        done = {k: r for k, r in done.items() if r["status"] == "ok"}
    todo = [p for p in points(spec.axes) if point_key(p) not in done]
    runner = {"local": run_local, "dask": run_dask, "serial": run_serial}[executor]
    args = (address,) if executor == "dask" else ()
    _end_torn_line(out / POINTS_FILE)
    with open(out / POINTS_FILE, "a") as sink:
        for i, row in enumerate(runner(spec.raw, todo, jobs, *args) if todo else [], start=1):
            _append(sink, row)
            done[row["key"]] = row
            if on_row is not None:
                on_row(row, i, len(todo))
    return [done[point_key(p)] for p in points(spec.axes)]


def _end_torn_line(path: Path) -> None:
    """Terminate a half-written last line (a kill mid-write) so the next point starts a line."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _append(sink, row: dict) -> None:
    # One line per point, flushed and synced: a kill loses at most the point in progress.
    sink.write(json.dumps(row) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


def _write_manifest(out: Path, spec: SweepSpec, executor: str, jobs: int) -> None:
    data = {"config": str(spec.config_path), "fingerprint": spec.fingerprint, "executor": executor, "jobs": jobs,
            "axes": {a.field: list(a.values) for a in spec.axes}, "base_config": spec.raw}
    _atomic_text(out / MANIFEST_FILE, json.dumps(data, indent=1) + "\n")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------- outputs


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)
    tmp.replace(path)


def read_csv(path: Path) -> list[dict]:
    """Rows of a sweep.csv as dicts (numbers converted)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
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


def progress_printer(total: int) -> Callable[[dict, int, int], None]:
    """A progress callback: a tqdm bar on a terminal, a log line per point otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="point", file=sys.stderr)

        def tick(row: dict, done: int, todo: int) -> None:
            bar.update(1)
            if done == todo:
                bar.close()
        return tick

    def line(row: dict, done: int, todo: int) -> None:
        status = f"{row.get('tokens_per_s', 0):.2f} tokens/s" if row["status"] == "ok" else row["error"]
        log.info("  point %d/%d %s: %s (%.1f s)", done, todo, row["point"], status, row["wall_s"])
    return line
