"""``tlmsim explore SPACE``: run the explorer with progress and print the ranked front."""

from __future__ import annotations

import logging
from pathlib import Path

from tlmsim.engine.errors import UserError
from tlmsim.sweep import duration_text

log = logging.getLogger("tlmsim.explore")


def run(args) -> int:
    """Explore ``args.space`` into ``args.out``; print the front, ranked, and where the files are."""
    import time

    from tlmsim.explore import explore, front_table, load_space, sweep_spec

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give at least one worker, e.g. --jobs 2")
    out = args.out if args.out is not None else Path("results") / "explore" / args.space.stem
    space = load_space(args.space)
    started = time.perf_counter()

    def progress(row: dict, done: int) -> None:
        if not args.quiet:
            status = f"{row.get('tokens_per_s', 0):.1f} tokens/s" if row["status"] == "ok" else row["error"][:80]
            log.info("  point %d (%s elapsed): %s", done, duration_text(time.perf_counter() - started), status)

    rows, front = explore(args.space, out, args.executor, args.jobs, args.scheduler, on_row=progress)
    fields = [a.field for a in sweep_spec(space, args.space).axes if a.swept]
    feasible = sum(r["feasible"] for r in rows)
    print(f"{space.name}: {len(rows)} points ({feasible} feasible), {len(front)} on the Pareto front of "
          f"{', '.join(space.objectives)}; accuracy from the {space.accuracy.proxy} proxy model, speed from "
          f"the target model")
    print(front_table(front, space, fields))
    print(f"  written to {out}/ (points.csv, pareto.csv, pareto.png, points.jsonl)")
    return 0
