"""Regenerate the model x format table of docs/models.md: every shipped model on the flagship
accelerator (configs/u280_llama7b.yaml), in fp16, 2:4 INT4 and ternary.

Placement spills weights and embeddings to the DDR4 when HBM is full (as
configs/u280_llama7b_fp16.yaml does); the job is a 128-token prompt and 8 decode steps.

    PYTHONPATH=. python bench/models_table.py > /tmp/table.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from tlmsim.config import load_config
from tlmsim.engine.errors import CapacityError
from tlmsim.simulate import simulate
from tlmsim.workloads.hf_model import shipped_models

FLAGSHIP = Path(__file__).resolve().parents[1] / "configs" / "u280_llama7b.yaml"
FORMATS = ("fp16", "int4-2:4", "ternary")
JOB = ["workload.prefill_tokens=128", "workload.decode_tokens=8", "trace.prefill=false", "trace.decode_steps=0",
       "placement.weights=[hbm, ddr]", "placement.embeddings=[hbm, ddr]"]


def row(model: str, fmt: str) -> str:
    """One table row: stored weights, decode tokens/s, its bound and what limits it."""
    cfg = load_config(FLAGSHIP, [f"workload.model={model}", f"workload.weight_format={fmt}", *JOB])
    try:
        data = simulate(cfg).data
    except CapacityError as err:
        return f"| {model} | {fmt} | - | does not fit: {str(err).split(';')[0]} | | |"
    weights = data["weights"]
    stored = (weights["total_bytes"] + weights["embedding_bytes"]) / 1e9
    decode = data["phases"]["decode"]
    where = ", ".join(f"{m} {b / 1e9:.1f}" for m, b in weights["allocated_bytes_by_memory"].items() if b)
    return (f"| {model} | {fmt} | {stored:.2f} ({where}) | {decode['tokens_per_s']:.1f} | "
            f"{decode['bandwidth_bound_tokens_per_s']:.1f} | {decode['bounding_component']} |")


def main() -> None:
    print("| model | weight format | weights GB (placed GB per memory) | decode tokens/s | "
          "bandwidth bound tokens/s | bottleneck |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model in shipped_models():
        for fmt in FORMATS:
            print(row(model, fmt))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
