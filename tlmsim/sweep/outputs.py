"""Sweep outputs: atomic writes, sweep.csv, and the roofline knee."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from tlmsim.sweep.grid import Axis


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
