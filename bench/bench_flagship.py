"""Benchmark the flagship run: wall time, events, simulated/wall ratio, peak memory.

    python bench/bench_flagship.py [CONFIG] [--repeat N] [--set field=value ...]

Issue 8's target run (decode 128 tokens after a 512-token prompt, < 10 s, < 1 GiB):

    python bench/bench_flagship.py --set workload.prefill_tokens=512 --set workload.decode_tokens=128

Prints ratios, not pass/fail: compare before/after a change on the same machine.
The layer-graph cache is warmed first so the numbers measure the simulator itself;
the cold extraction time is printed separately. The accelerator is built here rather
than through ``simulate`` because counting SimPy events needs its environment; what the
run produced is read from ``summarize``'s result, as everywhere else.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import time

from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.simulate import build_workload, summarize


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/u280_llama7b.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)

    start = time.perf_counter()
    workload = build_workload(cfg)  # extracts (or loads the cached) layer graph
    graph_s = time.perf_counter() - start

    walls, events = [], 0
    for _ in range(args.repeat):
        acc = None
        gc.collect()  # the previous run's objects go before the next one is built (peak memory)
        start = time.perf_counter()
        acc = Accelerator(cfg, workload)
        counted = count_events(acc)
        steps = acc.run()
        result = summarize(cfg, acc, steps)
        walls.append(time.perf_counter() - start)
        events = counted()
    simulated_s = sum(p["time_s"] for p in result["phases"].values())
    wall = statistics.median(walls)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"config: {args.config} {' '.join(args.overrides)}")
    print(f"steps: {len(steps)} (prefill {cfg.workload.prefill_tokens} tokens, decode {cfg.workload.decode_tokens})")
    print(f"layer graph load: {graph_s:.2f} s (cached after the first run)")
    target = (cfg.workload.prefill_tokens, cfg.workload.decode_tokens) == (512, 128)
    print(f"simulation wall: median {wall:.2f} s of {args.repeat} (min {min(walls):.2f}, max {max(walls):.2f})"
          + (f"  ->  {wall / 10:.2f} of issue 8's 10 s budget for 512 + 128 tokens" if target else ""))
    print(f"events: {events:,}  ->  {events / wall:,.0f} events/s")
    print(f"simulated time: {simulated_s * 1e3:.2f} ms  ->  simulated/wall = {simulated_s / wall:.2e}")
    print(f"peak memory (RSS): {peak_mib:.0f} MiB  ->  {peak_mib / 1024:.2f} of the 1 GiB budget")
    reuse = result["reuse"]
    print(f"steady-state reuse: {reuse['layers_skipped']} decoder layers and {reuse['tiles_skipped']} tiles "
          f"skipped (simulation.reuse_identical_layers={cfg.simulation.reuse_identical_layers})")
    print(f"results: decode {result['phases'].get('decode', {}).get('tokens_per_s', 0):.2f} tokens/s, "
          f"prefill {result['phases']['prefill']['time_s'] * 1e3:.2f} ms")


def count_events(acc: Accelerator):
    """Count SimPy events processed by wrapping ``env.step``."""
    env, count = acc.env, [0]
    step = env.step

    def counting_step():
        count[0] += 1
        step()

    env.step = counting_step
    return lambda: count[0]


if __name__ == "__main__":
    main()
