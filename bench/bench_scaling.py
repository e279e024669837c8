"""How simulation wall time scales with decoder layers, decode tokens and sequence length.

    python bench/bench_scaling.py [CONFIG]

Prints wall seconds and ratios; linear scaling means the ratio of wall times equals the
ratio of the scaled quantity. Every series runs with steady-state reuse off (everything
simulated: the cost must grow linearly, not worse) and on (the default). Layer graphs
are extracted (or loaded from the cache) before timing.
"""

from __future__ import annotations

import sys
import time

from models import llama_7b_with_layers

from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.simulate import build_workload

QUIET = ["trace.prefill=false", "trace.decode_steps=0"]


def wall(config: str, overrides: list[str], reuse: bool) -> float:
    """Wall seconds of one simulation (graph extraction excluded)."""
    cfg = load_config(config, [*overrides, *QUIET, f"simulation.reuse_identical_layers={str(reuse).lower()}"])
    workload = build_workload(cfg)
    start = time.perf_counter()
    Accelerator(cfg, workload).run()
    return time.perf_counter() - start


def _series(config: str, name: str, values: list[int], make) -> None:
    for reuse in (False, True):
        base = None
        for value in values:
            seconds = wall(config, make(value), reuse)
            base = base or (value, seconds)
            print(f"{name:>14} {value:5d} (reuse {'on ' if reuse else 'off'}): {seconds:7.2f} s   "
                  f"x{seconds / base[1]:5.2f} wall for x{value / base[0]:5.2f} {name}", flush=True)


def main() -> None:
    """Run the scaling series."""
    config = sys.argv[1] if len(sys.argv) > 1 else "configs/u280_llama7b.yaml"
    _series(config, "layers", [4, 8, 16, 32],
            lambda v: [f"workload.model={llama_7b_with_layers(v)}", "workload.prefill_tokens=1",
                       "workload.decode_tokens=8"])
    _series(config, "decode tokens", [8, 16, 32, 64],
            lambda v: ["workload.prefill_tokens=1", f"workload.decode_tokens={v}"])
    _series(config, "prompt tokens", [64, 128, 256, 512],
            lambda v: [f"workload.prefill_tokens={v}", "workload.decode_tokens=0"])
    _series(config, "KV length", [128, 256, 512, 1024],
            lambda v: [f"workload.prefill_tokens={v}", "workload.decode_tokens=8"])


if __name__ == "__main__":
    main()
