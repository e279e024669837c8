"""Perplexity of fp16 and compressed causal LMs on the corpus shipped with the repo.

``python -m tlmsim.workloads.perplexity --model tiny`` trains the tiny byte-level LLaMA
on the calibration part of the corpus and prints a markdown table of perplexity on the
held-out part for each format; ``--model smollm2`` does the same for SmolLM2-135M
(slow: ~40 s to load, then each format is compressed and evaluated in turn).

The corpus (``tlmsim/workloads/corpus/``) is split by characters: the first 80 % is the
calibration/training part, the last 20 % the evaluation part.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
from pathlib import Path

import torch

from tlmsim.workloads.compressed_model import activation_norms, compress_module
from tlmsim.workloads.formats import parse_format

CORPUS = Path(__file__).parent / "corpus" / "genesis_37_50_kjv.txt"
CALIBRATION_FRACTION = 0.8
SETTINGS = ("fp16", "int4", "int4-2:4", "int4-1:4", "int4-2:8", "ternary", "ternary-2:4")


def load_corpus(split: str = "all") -> str:
    """The shipped public-domain corpus: 'all', 'calibration' (first 80 %) or 'eval' (rest)."""
    text = CORPUS.read_text(encoding="utf-8")
    cut = int(len(text) * CALIBRATION_FRACTION)
    parts = {"all": text, "calibration": text[:cut], "eval": text[cut:]}
    if split not in parts:
        raise ValueError(f"unknown corpus split {split!r}; use 'all', 'calibration' or 'eval'")
    return parts[split]


@torch.no_grad()
def perplexity(model, tokenizer, text: str, window: int = 256, stride: int = 256) -> float:
    """exp(mean next-token loss) over sliding windows; each token is scored once, with up
    to window - stride tokens of earlier context (the usual HF recipe)."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    total, counted, scored_until = 0.0, 0, 0
    for start in range(0, ids.numel() - 1, stride):
        chunk = ids[start : start + window]
        labels = chunk.clone()
        labels[: max(0, scored_until - start)] = -100  # context only: already scored
        n_scored = int((labels[1:] != -100).sum())
        if n_scored == 0:
            break
        total += float(model(input_ids=chunk[None], labels=labels[None]).loss) * n_scored
        counted, scored_until = counted + n_scored, start + chunk.numel()
    return math.exp(total / counted)


def evaluate_formats(
    model, tokenizer, specs=SETTINGS, criterion: str = "magnitude", group_size: int = 128, window: int = 256,
    stride: int = 256,
) -> dict[str, float]:
    """Perplexity on the eval split after compressing a copy of `model` to each format."""
    eval_text = load_corpus("eval")
    norms = activation_norms(model, tokenizer, [load_corpus("calibration")]) if criterion == "wanda" else None
    results = {}
    for spec in specs:
        compressed = copy.deepcopy(model)
        compress_module(compressed, parse_format(spec, group_size), criterion, norms)
        results[spec] = perplexity(compressed, tokenizer, eval_text, window, stride)
        del compressed
    return results


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per format, one column per criterion."""
    criteria = list(results)
    lines = ["| format | " + " | ".join(f"ppl ({c})" for c in criteria) + " |", "|---" * (len(criteria) + 1) + "|"]
    for spec in results[criteria[0]]:
        lines.append(f"| {spec} | " + " | ".join(f"{results[c][spec]:.2f}" for c in criteria) + " |")
    return "\n".join(lines)


def _load(model_name: str, train_steps: int):
    """(model, tokenizer) for 'tiny' (trained on the calibration split), 'smollm2' or a folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tlmsim.workloads.tiny_model import build_tiny_model, load_smollm2

    if model_name == "smollm2":
        return load_smollm2()
    folder = model_name
    if model_name == "tiny":
        folder = build_tiny_model(tempfile.mkdtemp(prefix="tiny-llama-"), train_text=load_corpus("calibration"),
                                  steps=train_steps)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the perplexity table of the chosen model for each format."""
    parser = argparse.ArgumentParser(prog="python -m tlmsim.workloads.perplexity", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny', 'smollm2', or a saved HF model folder")
    parser.add_argument("--formats", default=",".join(SETTINGS), help="comma-separated format specs")
    parser.add_argument("--criteria", default="magnitude,wanda", help="comma-separated pruning criteria")
    parser.add_argument("--group-size", type=int, default=128, help="kept weights per INT scale")
    parser.add_argument("--window", type=int, default=256, help="tokens per forward pass")
    parser.add_argument("--stride", type=int, default=256, help="tokens between window starts")
    parser.add_argument("--train-steps", type=int, default=300, help="training steps for the tiny model")
    args = parser.parse_args(argv)
    try:
        model, tokenizer = _load(args.model, args.train_steps)
        specs = [spec.strip() for spec in args.formats.split(",")]
        results = {c: evaluate_formats(model, tokenizer, specs, c, args.group_size, args.window, args.stride)
                   for c in args.criteria.split(",")}
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
