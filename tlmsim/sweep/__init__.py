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

Modules, in the order a sweep uses them: ``grid`` (axes, lazy grids, points), ``spec``
(one point's config, simulation and metrics; the sweep's definition), ``state`` (the
output folder: marker, lock, manifest, points file), ``executors`` (local, Dask,
serial), ``runner`` (run_sweep, progress), ``outputs`` (atomic writes, sweep.csv, knee).
Everything is importable from ``tlmsim.sweep`` itself.
"""

from tlmsim.sweep.executors import (
                                    DASK_CONNECT_TIMEOUT_S,
                                    EXECUTOR_CONTEXTS,
                                    EXECUTORS,
                                    WORKER_STOP_TIMEOUT_S,
                                    dask_executor,
                                    local_executor,
                                    serial_executor,
)
from tlmsim.sweep.grid import (
                                    Axis,
                                    Grid,
                                    LinearGrid,
                                    LogGrid,
                                    count_text,
                                    grid_size,
                                    parse_axis,
                                    parse_yaml,
                                    point_at,
                                    point_key,
                                    points,
                                    sample_points,
)
from tlmsim.sweep.outputs import knee, read_csv, table, write_all_atomic, write_atomic, write_csv
from tlmsim.sweep.runner import Progress, duration_text, run_sweep
from tlmsim.sweep.spec import MAX_POINTS, NO_TRACE, SweepSpec, metrics, point_config, prepare, run_point
from tlmsim.sweep.state import (
                                    CSV_FILE,
                                    LOCK_FILE,
                                    MANIFEST_FILE,
                                    POINTS_FILE,
                                    SweepFolder,
                                    check_sweep_out,
                                    load_points,
                                    read_manifest,
                                    read_points,
)

__all__ = [
    "CSV_FILE", "DASK_CONNECT_TIMEOUT_S", "EXECUTORS", "EXECUTOR_CONTEXTS", "LOCK_FILE", "MANIFEST_FILE",
    "MAX_POINTS", "NO_TRACE", "POINTS_FILE", "WORKER_STOP_TIMEOUT_S", "Axis", "Grid", "LinearGrid", "LogGrid",
    "Progress", "SweepFolder", "SweepSpec", "check_sweep_out", "count_text", "dask_executor", "duration_text",
    "grid_size", "knee", "load_points", "local_executor", "metrics", "parse_axis", "parse_yaml", "point_at",
    "point_config", "point_key", "points", "prepare", "read_csv", "read_manifest", "read_points", "run_point",
    "run_sweep", "sample_points", "serial_executor", "table", "write_all_atomic", "write_atomic", "write_csv",
]
