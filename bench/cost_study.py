"""INT4 vs ternary PEs under one U280 budget: the widest array that fits, its tokens/s and J/token.

    python bench/cost_study.py            # ~3 min; prints the markdown table of docs/cost.md

For each PE build (the packed INT4 PE and the multiply-free ternary PE) the number of
columns grows in steps of 8 until the design leaves the U280's usable budget (80 % DSP,
70 % LUT, ...); the widest fitting array then runs LLaMA-7B dense and 2:4 in the formats
that PE runs (prefill 128 tokens, decode 8). The decoder is sized to the array
(32 weights per column and cycle). The ternary runs store lm_head ternary as well
(the multiply-free PE runs ternary weights only).
"""

from __future__ import annotations

from pathlib import Path

from tlmsim.config import load_config
from tlmsim.cost import design_cost
from tlmsim.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
BUILDS = {"INT4 packed (pack 2)": ["accelerator.pe_array.pe=int4", "accelerator.pe_array.pack=2"],
          "ternary multiply-free": ["accelerator.pe_array.pe=ternary", "accelerator.pe_array.pack=1",
                                    "workload.lm_head_format=ternary"]}
FORMATS = {"INT4 packed (pack 2)": ["int4", "int4-2:4"], "ternary multiply-free": ["ternary", "ternary-2:4"]}
RUN = ["workload.decode_tokens=8", "trace.prefill=false", "trace.decode_steps=0"]


def sized(build: list[str], cols: int, fmt: str) -> list[str]:
    """Overrides for a build with ``cols`` columns running ``fmt``."""
    return [*build, f"accelerator.pe_array.cols={cols}", f"accelerator.decoder.weights_per_cycle={32 * cols}",
            f"workload.weight_format={fmt}"]


def widest(build: list[str], fmt: str) -> int:
    """The most columns (a multiple of 8) whose design fits the board."""
    cols = 8
    while not design_cost(load_config(FLAGSHIP, sized(build, cols + 8, fmt)))["over_budget"]:
        cols += 8
    return cols


def main() -> None:
    """Print the study table."""
    print("| PE build | weights | columns that fit | MACs/cycle | DSP | LUT | prefill tok/s | decode tok/s "
          "| prefill J/token | decode J/token | decode W |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, build in BUILDS.items():
        cols = widest(build, FORMATS[name][-1])
        for fmt in FORMATS[name]:
            cfg = load_config(FLAGSHIP, [*sized(build, cols, fmt), *RUN])
            data = simulate(cfg).data
            s, cost = data["summary"], data["cost"]
            macs = 4 * cols * 16 * 2
            print(f"| {name} | {fmt} | 4 x {cols} | {macs:,} | {cost['total']['dsp']:,} "
                  f"({cost['share_of_board']['dsp']:.0%}) | {cost['total']['lut']:,} "
                  f"({cost['share_of_board']['lut']:.0%}) | {s['prefill_tokens_per_s']:.0f} "
                  f"| {s['decode_tokens_per_s']:.1f} | {s['prefill_j_per_token']:.4f} | {s['decode_j_per_token']:.3f} "
                  f"| {s['decode_power_w']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
