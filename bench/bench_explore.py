"""Design points per minute of ``tlmsim explore`` on LLaMA-7B: the search-throughput target.

    python bench/bench_explore.py                        # the whole 2,184-point grid, exhaustive (~9 min)
    python bench/bench_explore.py --search nsga2 --points 300

Explores LLaMA-7B designs on the U280 (format x columns x clock x HBM ports: 2,184 points;
the flagship space's workload: 16 prompt tokens, 2 decode steps) with ``--jobs`` local
worker processes and no accuracy proxy (perplexity is cached per format, not per point),
then prints the points done, the time, points per minute and the comparison with the
target of 2,000 points in 10 minutes. Every point is a full simulation, the same as
``tlmsim run`` of its config.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_POINTS, TARGET_MINUTES = 2000, 10


def space(search: str, points: int) -> dict:
    """The LLaMA-7B space (2,184 points); NSGA-II asks for ``points`` of them."""
    cols = list(range(32, 129, 8))  # 13
    clocks = [150, 175, 200, 225, 250, 275, 300]  # 7
    ports = [8, 16, 24, 32]  # 4
    formats = ["int4", "int4-2:4", "int4-1:4", "int4-2:8", "ternary", "ternary-2:4"]  # 6: 2,184 points
    return {"name": "bench", "base": str(ROOT / "configs" / "u280_llama7b.yaml"),
            "overrides": ["workload.prefill_tokens=16", "workload.decode_tokens=2"],
            "axes": [f"format={formats}", f"accelerator.pe_array.cols={cols}", f"accelerator.clock_mhz={clocks}",
                     f"memory.hbm.switch.ports_used={ports}"],
            "objectives": ["decode_tokens_per_s", "decode_j_per_token", "resource_share"],
            "accuracy": {"proxy": "none"}, "search": {"method": search, "trials": points, "seed": 0}}


def main() -> None:
    """Run the explore and print the throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", choices=["exhaustive", "nsga2"], default="exhaustive")
    parser.add_argument("--points", type=int, default=300, help="nsga2: distinct points to run")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    from tlmsim.explore import explore

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(space(args.search, args.points)))
        started = time.perf_counter()
        rows, front = explore(path, Path(tmp) / "out", jobs=args.jobs)
        elapsed = time.perf_counter() - started
    per_min = len(rows) / elapsed * 60
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average before {load_before:.2f}")
    feasible = sum(r["feasible"] for r in rows)
    print(f"{args.search}: {len(rows)} LLaMA-7B design points ({feasible} feasible, {len(front)} on the "
          f"front) with {args.jobs} workers in {elapsed:.1f} s: {per_min:.0f} points/min, "
          f"{per_min * TARGET_MINUTES:.0f} in {TARGET_MINUTES} min "
          f"(target {TARGET_POINTS}: x{per_min * TARGET_MINUTES / TARGET_POINTS:.2f})")


if __name__ == "__main__":
    main()
