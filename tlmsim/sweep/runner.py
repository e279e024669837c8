"""Running a sweep: the missing points through an executor into the folder, with progress."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tlmsim.sweep.executors import EXECUTOR_CONTEXTS
from tlmsim.sweep.grid import point_key
from tlmsim.sweep.spec import SweepSpec
from tlmsim.sweep.state import SweepFolder

log = logging.getLogger("tlmsim.sweep")


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
