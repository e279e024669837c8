"""``tlmsim sweep``: the command-line side of sensitivity sweeps (tlmsim/sweep.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tlmsim.errors import UserError


def add_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep", help="simulate a grid of config variants (in parallel) and plot tokens/s vs the swept field",
        description="Run one simulation per point of the cartesian product of the --set axes; write points.jsonl "
                    "(one line per finished point: rerunning resumes), sweep.csv and sweep.png/.svg to --out. "
                    "Axis syntax: FIELD=a:b:step (linear, inclusive), FIELD=log:a:b:n (geometric), "
                    "FIELD=[x,y,z] (list) or FIELD=value (fixed). Traces are off in sweep points.")
    sweep.add_argument("config", help="YAML config, e.g. configs/u280_llama7b.yaml")
    sweep.add_argument("--set", dest="axes", action="append", default=[], metavar="FIELD=SPEC",
                       help="axis or fixed override, e.g. --set memory.hbm.bandwidth_gbps=log:50:5000:16 (repeatable)")
    sweep.add_argument("--out", type=Path, help="sweep directory (default: results/<config name>-sweep)")
    sweep.add_argument("--executor", choices=["local", "dask", "serial"], default="local",
                       help="local: a process pool (default); dask: a Dask distributed cluster (--scheduler, or a "
                            "local cluster of --jobs workers); serial: in this process")
    sweep.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: CPU count)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://head:8786")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun points recorded as failed")
    sweep.set_defaults(handler=handle)


def handle(args) -> int:
    from tlmsim import sweep as sw

    if args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    spec = sw.prepare(args.config, args.axes)
    out = args.out or Path("results") / f"{Path(args.config).stem}-sweep"
    sw.check_resumable(out, spec)
    total = len(sw.points(spec.axes))
    done_before = len(sw.load_points(out))
    started = time.perf_counter()
    try:
        rows = sw.run_sweep(spec, out, args.executor, args.jobs, args.scheduler, args.retry_failed,
                            on_row=sw.progress_printer(total - min(done_before, total)))
    except KeyboardInterrupt:
        print(f"interrupted: finished points are kept in {out}/{sw.POINTS_FILE}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    wall = time.perf_counter() - started
    knee_x = write_outputs(out, spec, rows)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{spec.raw.get('name', args.config)}: {total} points ({total - done_before} run now, "
          f"{len(failed)} failed) in {wall:.1f} s with --executor {args.executor} --jobs {args.jobs}")
    if knee_x is not None:
        print(f"  roofline knee at {spec.axes[0].field if spec.axes else ''} = {knee_x:.4g}")
    for row in failed[:5]:
        print(f"  failed {row['point']}: {row['error']}")
    print(f"  results: {out}/ (sweep.csv, sweep.png, sweep.svg, points.jsonl)")
    return 1 if failed else 0


def write_outputs(out: Path, spec, rows: list[dict]) -> float | None:
    """Write sweep.csv and, if the first swept axis is numeric, the plots; returns the knee."""
    from tlmsim import sweep as sw
    from tlmsim.plots import is_number, sweep_plot

    sw.write_csv(out / sw.CSV_FILE, rows, spec.axes)
    swept = [a for a in spec.axes if a.swept]
    flat = [{**r["point"], **r} for r in rows if r["status"] == "ok" and "tokens_per_s" in r]
    if not swept or not flat or not all(is_number(v) for v in swept[0].values):
        return None
    x = swept[0].field
    series = swept[1].field if len(swept) > 1 else None
    first = [r for r in flat if series is None or r[series] == swept[1].values[0]]
    knee_x = sw.knee([r[x] for r in first], [r["bandwidth_bound_tokens_per_s"] for r in first],
                     [r["compute_bound_tokens_per_s"] for r in first])
    title = f"{spec.raw.get('name', '')}: decode throughput vs {x}"
    sweep_plot(flat, x, [out / "sweep.png", out / "sweep.svg"], title, knee_x, series)
    return knee_x
