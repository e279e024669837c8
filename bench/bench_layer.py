"""Microbenchmark of one LLaMA-7B decoder layer: simulator cost per layer and per tile.

    python bench/bench_layer.py [CONFIG] [--steps N]

Runs the config's accelerator on a LLaMA-7B-shaped model with a single decoder layer
(bench/models.py): decode steps after a 1-token prompt, tracing and steady-state reuse
off, so everything is simulated event by event. Prints the wall time per decode step
and per tile (weights and KV), SimPy events per step, and simulated time / wall time.
"""

from __future__ import annotations

import argparse
import time

from bench_flagship import count_events
from models import llama_7b_with_layers

from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.simulate import build_workload


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/u280_llama7b.yaml")
    parser.add_argument("--steps", type=int, default=32, help="decode steps to time")
    args = parser.parse_args()
    overrides = [f"workload.model={llama_7b_with_layers(1)}", "workload.prefill_tokens=1",
                 f"workload.decode_tokens={args.steps}", "trace.prefill=false", "trace.decode_steps=0",
                 "simulation.reuse_identical_layers=false"]
    cfg = load_config(args.config, overrides)
    workload = build_workload(cfg)
    acc = Accelerator(cfg, workload)
    events = count_events(acc)
    start = time.perf_counter()
    steps = acc.run()
    wall = time.perf_counter() - start
    per_step = wall / len(steps)
    ops = workload.ops(steps[-1].step)
    layer_tiles = sum(len(acc.program.tiles(op)) for op in ops if op.layer == 0)
    other_tiles = sum(len(acc.program.tiles(op)) for op in ops if op.layer is None)
    simulated = (steps[-1].end_ps - steps[1].start_ps) / (len(steps) - 1) * 1e-12
    print(f"config: {args.config}, one LLaMA-7B decoder layer + embedding, final norm and lm_head")
    print(f"tiles per decode step: {layer_tiles} in the layer + {other_tiles} in the lm_head")
    print(f"wall per decode step: {per_step * 1e3:.1f} ms  ->  {per_step / (layer_tiles + other_tiles) * 1e6:.0f} us "
          f"per tile")
    print(f"SimPy events per decode step: {events() / len(steps):,.0f}")
    print(f"simulated time per decode step: {simulated * 1e3:.3f} ms  ->  simulated/wall = {simulated / per_step:.2e}")


if __name__ == "__main__":
    main()
