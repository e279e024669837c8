"""Benchmark the memory model: cost per request and the flagship with and without DRAM timing.

    python bench/bench_memory.py [--requests N] [--flagship]

Prints CPU seconds (process time, robust on a shared machine) and ratios, not pass/fail.
"""

from __future__ import annotations

import argparse
import time

import simpy

from tlmsim.config import MemoryConfig, load_config
from tlmsim.engine.component import SimContext
from tlmsim.engine.payload import Command, Transaction
from tlmsim.engine.trace import Tracer
from tlmsim.models.memory import Memory

U280_HBM = dict(kind="hbm2", channels=32, bandwidth_gbps=460, latency_ns=110, burst_bytes=32, interleave_bytes=512,
                capacity_gib=8)


def per_request_us(dram: dict | None, nbytes: int, requests: int) -> float:
    """CPU µs per sequential request of ``nbytes`` on the U280 HBM."""
    mem = Memory(SimContext(simpy.Environment(), Tracer(), "bench"), "hbm", MemoryConfig(**U280_HBM, dram=dram))
    start = time.process_time()
    for i in range(requests):
        mem.schedule(Transaction(Command.READ, (i * nbytes) % (2**32), nbytes, "b", "b", 0))
    return (time.process_time() - start) / requests * 1e6


def flagship_cpu_s(overrides: list[str]) -> float:
    """CPU seconds of one flagship simulation (layer graph loaded first, not counted)."""
    from tlmsim.models.accelerator import Accelerator
    from tlmsim.simulate import build_workload, summarize

    cfg = load_config("configs/u280_llama7b.yaml", overrides)
    workload = build_workload(cfg)
    start = time.process_time()
    acc = Accelerator(cfg, workload)
    summarize(cfg, acc, acc.run())
    return time.process_time() - start


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--flagship", action="store_true", help="also time the flagship (about a minute)")
    args = parser.parse_args()
    print("| request | ideal µs | hbm2_u280 µs |")
    print("|---|---|---|")
    for nbytes in (64, 8192, 2**20):
        ideal = per_request_us(None, nbytes, args.requests)
        timed = per_request_us({"preset": "hbm2_u280"}, nbytes, args.requests)
        print(f"| {nbytes} B | {ideal:.1f} | {timed:.1f} |")
    if args.flagship:
        ideal = flagship_cpu_s(["memory.hbm.dram=null", "memory.ddr.dram=null", "memory.hbm.switch=null"])
        timed = flagship_cpu_s([])
        print(f"flagship CPU s: ideal memory {ideal:.1f}, DRAM timing {timed:.1f} (x{timed / ideal:.2f})")


if __name__ == "__main__":
    main()
