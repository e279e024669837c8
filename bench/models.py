"""LLaMA-7B-shaped model directories with fewer decoder layers, for the layer benchmarks.

Only ``config.json`` is written (no weights): tlmsim builds the layer graph from the
config, exactly as for the shipped 7B model, so a layer here is a 7B decoder layer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "tlmsim" / "workloads" / "model_configs" / "llama-7b.json"


def llama_7b_with_layers(layers: int) -> str:
    """Path of a model directory: LLaMA-7B with ``layers`` decoder layers."""
    root = Path(os.environ.get("TLMSIM_CACHE", Path.home() / ".cache" / "tlmsim")) / "bench-models"
    path = root / f"llama-7b-{layers}-layers"
    config = {**json.loads(SHIPPED.read_text()), "num_hidden_layers": layers}
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "config.json").is_file() or json.loads((path / "config.json").read_text()) != config:
        (path / "config.json").write_text(json.dumps(config, indent=2))
    return str(path)
