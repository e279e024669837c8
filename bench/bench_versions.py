"""Compare two source trees on the same machine: end-to-end `tlmsim run` wall time and reuse speed.

    python bench/bench_versions.py BEFORE_TREE AFTER_TREE [--repeat N] [--set field=value ...]

Each tree is a checkout of tlmsim (e.g. ``git worktree add --detach /tmp/before 9ef8a5c``).
Runs alternate between the trees (before, after, before, ...) so that other load on the
machine hits both alike; each tree has its own warmed layer-graph cache. Measured per tree:

* ``tlmsim run CONFIG -q`` as a fresh process, cached graph: what a user waits for
  (imports, build, simulation, result, trace and plot files), as wall and CPU time;
* the same with ``--set simulation.reuse_identical_layers=false`` divided by it: how much
  steady-state reuse saves (the "reuse speed").

Prints medians and the after/before ratios, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs ``tlmsim.cli`` of the tree on PYTHONPATH only: an editable install's import hook
# (setuptools' ``__editable__`` finders) would otherwise supply modules the tree lacks.
ISOLATED_CLI = ("import runpy, sys; "
                "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]; "
                "sys.argv[0] = 'tlmsim'; runpy.run_module('tlmsim.cli', run_name='__main__')")


def run_once(tree: Path, config: str, overrides: list[str], cache: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one ``tlmsim run`` of ``tree``'s code in a fresh process (CPU time
    is what to compare on a machine that other jobs share)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TLMSIM_CACHE": str(cache)}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-c", ISOLATED_CLI, "run", config, "-q", "--out", str(Path(out) / "r")]
        for item in overrides:
            cmd += ["--set", item]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    """Run both trees alternately and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--config", default="configs/u280_llama7b.yaml")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    caches = {name: Path(tempfile.mkdtemp(prefix=f"tlmsim-bench-{name}-")) for name in trees}
    no_reuse = [*args.overrides, "simulation.reuse_identical_layers=false"]
    for name, tree in trees.items():  # warm each tree's graph cache
        run_once(tree, args.config, args.overrides, caches[name])
    walls = {(name, kind): [] for name in trees for kind in ("reuse", "no reuse")}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            walls[name, "reuse"].append(run_once(tree, args.config, args.overrides, caches[name]))
            walls[name, "no reuse"].append(run_once(tree, args.config, no_reuse, caches[name]))
    median = {key: tuple(statistics.median(v[i] for v in values) for i in (0, 1)) for key, values in walls.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average before the runs {os.getloadavg()[0]:.2f}")
    print(f"config: {args.config} {' '.join(args.overrides)}; medians of {args.repeat}, runs alternated")
    for name, tree in trees.items():
        (wall, cpu), (plain_wall, plain_cpu) = median[name, "reuse"], median[name, "no reuse"]
        print(f"{name:6} {tree}: tlmsim run wall {wall:.2f} s, CPU {cpu:.2f} s; without reuse wall "
              f"{plain_wall:.2f} s, CPU {plain_cpu:.2f} s; reuse speed-up (CPU) x{plain_cpu / cpu:.2f}")
    speedups = [median[n, "no reuse"][1] / median[n, "reuse"][1] for n in trees]
    print(f"after/before: run wall x{median['after', 'reuse'][0] / median['before', 'reuse'][0]:.2f}, "
          f"CPU x{median['after', 'reuse'][1] / median['before', 'reuse'][1]:.2f}; "
          f"reuse speed-up x{speedups[1] / speedups[0]:.2f} of before's")

if __name__ == "__main__":
    main()
