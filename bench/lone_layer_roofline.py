"""Table of lone-layer simulated time vs roofline bound (docs/validation.md).

    python bench/lone_layer_roofline.py [CONFIG]
"""

from __future__ import annotations

import sys

from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.workloads.phases import Workload
from tlmsim.workloads.synthetic import single_linear

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]


def lone_layer(config: str, shape: tuple[int, int], spec: str, tokens: int):
    """Simulate one linear layer alone; returns its op record."""
    overrides = [f"workload.weight_format={spec}", "placement.weights=[hbm, ddr]"]
    cfg = load_config(config, overrides)
    (step,) = Accelerator(cfg, Workload(single_linear(*shape, spec), 1, tokens, 0, 16)).run()
    return step.ops[0]


def main() -> None:
    """Print the markdown table."""
    config = sys.argv[1] if len(sys.argv) > 1 else "configs/u280_llama7b.yaml"
    print("| layer (out x in) | format | tokens | bound by | roofline µs | simulated µs | ratio |")
    print("|---|---|---|---|---|---|---|")
    for tokens in (1, 128):
        for spec in ("int4-2:4", "int4", "fp16"):
            for shape in SHAPES:
                op = lone_layer(config, shape, spec, tokens)
                sim = op.end_ps - op.start_ps
                print(f"| {shape[0]} x {shape[1]} | {spec} | {tokens} | {op.bound_by} | {op.bound_ps / 1e6:.1f} "
                      f"| {sim / 1e6:.1f} | {sim / op.bound_ps:.3f} |")


if __name__ == "__main__":
    main()
