"""How simulation wall time scales with decode tokens, prompt length and layers.

    python bench/bench_scaling.py [CONFIG]

Prints wall seconds and ratios; linear scaling means the ratio of wall times equals the
ratio of the scaled quantity. The layer graph is loaded (cached) once beforehand.
"""

from __future__ import annotations

import sys
import time

from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.simulate import build_workload


def wall(config: str, overrides: list[str], graph=None) -> float:
    """Wall seconds of one simulation (graph extraction excluded)."""
    cfg = load_config(config, overrides)
    workload = build_workload(cfg, graph)
    start = time.perf_counter()
    Accelerator(cfg, workload).run()
    return time.perf_counter() - start


def _series(config: str, name: str, values: list[int], make) -> None:
    base = None
    for value in values:
        seconds = wall(config, make(value))
        base = base or (value, seconds)
        print(f"{name:>16} {value:6d}: {seconds:7.2f} s   x{seconds / base[1]:5.2f} wall for x{value / base[0]:5.2f} {name}")


def main() -> None:
    """Run the three scaling series."""
    config = sys.argv[1] if len(sys.argv) > 1 else "configs/u280_llama7b.yaml"
    _series(config, "decode tokens", [4, 8, 16],
            lambda v: ["workload.prefill_tokens=1", f"workload.decode_tokens={v}"])
    _series(config, "prompt tokens", [64, 128, 256],
            lambda v: [f"workload.prefill_tokens={v}", "workload.decode_tokens=0"])
    _series(config, "KV length", [128, 512, 1024],
            lambda v: [f"workload.prefill_tokens={v}", "workload.decode_tokens=4", "trace.prefill=false"])


if __name__ == "__main__":
    main()
