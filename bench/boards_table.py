"""Every board config runs its LLaMA-7B-class workload: the board table of docs/cost.md.

    python bench/boards_table.py            # ~1 min; prints the markdown table

Runs ``configs/boards/*.yaml`` as they are (prefill 128 tokens, decode 8, no trace) and
prints, per board, the design's resources against the board, its speed and energy.
"""

from __future__ import annotations

from pathlib import Path

from tlmsim.config import load_config
from tlmsim.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
RUN = ["workload.decode_tokens=8", "trace.prefill=false", "trace.decode_steps=0"]
ORDER = ["u280", "u55c", "u250", "v80", "kv260", "zcu102"]


def _share(cost: dict, key: str) -> str:
    share = cost["share_of_board"][key]  # None: the board has none of it (the ZCU102's URAM)
    return f"{cost['total'][key]:,.0f}" + (f" ({share:.0%})" if share is not None else "")


def row(path: Path) -> str:
    """One markdown row: the board's design and what it does."""
    cfg = load_config(path, RUN)
    data = simulate(cfg).data
    s, cost, pe = data["summary"], data["cost"], cfg.accelerator.pe_array
    array = f"{pe.pe} {pe.rows}x{pe.cols}" + (f" pack {pe.pack}" if pe.pack > 1 else "")
    return (f"| {cost['board']} | {cfg.workload.weight_format} | {array} @ {cfg.accelerator.clock_mhz:.0f} MHz "
            f"| {_share(cost, 'dsp')} | {_share(cost, 'lut')} | {_share(cost, 'bram36')} | {_share(cost, 'uram')} "
            f"| {s['prefill_tokens_per_s']:.0f} | {s['decode_tokens_per_s']:.1f} ({s['decode_bottleneck']}) "
            f"| {s['decode_j_per_token']:.3f} | {s['decode_power_w']:.1f} |")


def main() -> None:
    """Print the table."""
    print("| board | weights | array @ clock | DSP | LUT | BRAM36 | URAM | prefill tok/s | decode tok/s (bottleneck) "
          "| decode J/token | decode W |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for board in ORDER:
        print(row(ROOT / "configs" / "boards" / f"{board}_llama7b.yaml"), flush=True)


if __name__ == "__main__":
    main()
