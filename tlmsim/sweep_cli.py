"""``tlmsim sweep``: the command-line side of sensitivity sweeps (tlmsim/sweep/)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tlmsim.engine.errors import UserError

EXIT_INTERRUPTED = 130


def add_parser(sub, common=None) -> None:
    """Register the ``sweep`` command."""
    from tlmsim.sweep import EXECUTORS, MAX_POINTS

    sweep = sub.add_parser(
        "sweep", parents=[common] if common is not None else [],
        help="simulate a grid of config variants (in parallel) and plot tokens/s vs the swept field",
        description="Run one simulation per point of the cartesian product of the --set axes; write points.jsonl "
                    "(one line per finished point: rerunning resumes), sweep.csv and sweep.png/.svg to --out. "
                    "Axis syntax: FIELD=a:b:step (linear, inclusive), FIELD=log:a:b:n (geometric), "
                    "FIELD=[x,y,z] (list) or FIELD=value (fixed). Traces are off in sweep points.")
    sweep.add_argument("config", help="YAML config, e.g. configs/u280_llama7b.yaml")
    sweep.add_argument("--set", dest="axes", action="append", default=[], metavar="FIELD=SPEC",
                       help="axis or fixed override, e.g. --set memory.hbm.bandwidth_gbps=log:50:5000:16 (repeatable)")
    # A string, not a Path: Path("") is ".", and an empty --out must be refused as such.
    sweep.add_argument("--out", help="sweep folder (default: results/<config name>-sweep); rerunning the same "
                                     "command resumes it")
    sweep.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: a process pool (default); dask: a Dask distributed cluster (--scheduler, or a "
                            "local cluster of --jobs workers); serial: in this process")
    sweep.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: CPU count)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://head:8786")
    sweep.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                       help=f"refuse a sweep of more than N points (default {MAX_POINTS:,})")
    sweep.add_argument("--allow-over-budget", action="store_true",
                       help="run points that exceed their board as what-ifs (marked in sweep.csv)")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun points recorded as failed")
    sweep.set_defaults(handler=handle)


def handle(args) -> int:
    """Run the sweep, write its outputs and print a summary naming what was written."""
    from tlmsim import sweep as sw

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give at least 1 worker")
    if args.max_points < 1:
        raise UserError(f"--max-points {args.max_points}: give at least 1")
    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    axes = list(args.axes) + (["simulation.allow_over_budget=true"] if args.allow_over_budget else [])
    spec = sw.prepare(args.config, axes, max_points=args.max_points)
    out = Path("results") / f"{Path(args.config).stem}-sweep" if args.out is None else args.out
    progress = sw.Progress(out, [a.field for a in spec.axes if a.swept])
    started = time.perf_counter()
    try:
        rows = sw.run_sweep(spec, out, args.executor, args.jobs, args.scheduler, args.retry_failed,
                            on_row=progress.row, on_start=progress.start)
        knee_x, written = write_outputs(Path(out), spec, rows)
    except KeyboardInterrupt:
        progress.close()
        # Counted in the file, not by the progress: a point can be recorded just before its callback.
        kept = None if progress.started is None else len(sw.load_points(Path(out)))
        print(interrupted_message(out, kept, spec.total), file=sys.stderr)
        return EXIT_INTERRUPTED
    wall = time.perf_counter() - started
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{spec.raw.get('name', args.config)}: {spec.total} points ({progress.todo} run now, "
          f"{len(failed)} failed) in {wall:.1f} s with --executor {args.executor} --jobs {args.jobs}")
    if knee_x is not None:
        print(f"  roofline knee at {[a for a in spec.axes if a.swept][0].field} = {knee_x:.4g}")
    for row in failed[:5]:
        print(f"  failed {row['point']}: {row['error']}")
    print(f"  wrote {out}/: {', '.join(written)}")
    return 1 if failed else 0


def interrupted_message(out, kept: int | None, total: int) -> str:
    """What an interrupt leaves behind, and how to go on."""
    from tlmsim.sweep import POINTS_FILE

    if kept is None:
        return f"interrupted before the sweep started; nothing was written to {out}"
    if not kept:
        return f"interrupted before any point finished; nothing was kept in {out}"
    return (f"interrupted: {kept} of {total} points are kept in {Path(out) / POINTS_FILE}; rerun the same command "
            f"to resume (only the missing points run)")


def write_outputs(out: Path, spec, rows: list[dict]) -> tuple[float | None, list[str]]:
    """Write sweep.csv and, if the first swept axis is numeric, the plots; returns the knee and
    the names of the sweep's files (only files that exist: a plot that was not drawn is not named)."""
    from tlmsim import sweep as sw
    from tlmsim.plots import is_number, sweep_plot

    sw.write_csv(out / sw.CSV_FILE, rows, spec.axes)
    written = [sw.CSV_FILE]
    swept = [a for a in spec.axes if a.swept]
    flat = [{**r["point"], **r} for r in rows if r["status"] == "ok" and "tokens_per_s" in r]
    knee_x = None
    if swept and flat and all(is_number(v) for v in swept[0].values):
        x = swept[0].field
        series = swept[1].field if len(swept) > 1 else None
        first = [r for r in flat if series is None or r[series] == swept[1].values[0]]
        knee_x = sw.knee([r[x] for r in first], [r["bandwidth_bound_tokens_per_s"] for r in first],
                         [r["compute_bound_tokens_per_s"] for r in first])
        title = f"{spec.raw.get('name', '')}: decode throughput vs {x}"
        plots = ["sweep.png", "sweep.svg"]
        sw.write_all_atomic([out / p for p in plots], lambda paths: sweep_plot(flat, x, paths, title, knee_x, series))
        written += plots
    return knee_x, [*written, sw.POINTS_FILE, sw.MANIFEST_FILE]
