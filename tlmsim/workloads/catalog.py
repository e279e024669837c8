"""The shipped models: what each one is (family, size, attention, experts) and where it comes from.

``model_configs/<name>.json`` is the model, ``model_configs/sources.yaml`` its provenance.
Parameter counts are exact: the model is built on the meta device (no weights) and its
parameters are summed, a tied table once. That needs torch, so it is imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from tlmsim.workloads.model_source import SHIPPED, resolve_model, shipped_models

SOURCES = SHIPPED / "sources.yaml"


@dataclass(frozen=True)
class ModelInfo:
    """One shipped model, as ``tlmsim models`` lists it."""

    name: str
    architecture: str  # the transformers class, i.e. the family
    parameters: int  # exact, a tied embedding counted once
    layers: int
    hidden: int
    attention: str  # e.g. "32 heads / 8 KV heads, window 4096"
    experts: str  # "-" or "8, top-2"
    tied: bool
    native_format: str | None
    repo: str
    revision: str


def sources() -> dict[str, dict]:
    """Provenance of every shipped config (sources.yaml)."""
    return yaml.safe_load(SOURCES.read_text())


def model_info(name: str, source: dict) -> ModelInfo:
    """Describe shipped model ``name`` (builds it on the meta device)."""
    from tlmsim.workloads.graph import build_meta_model, quiet_transformers
    from tlmsim.workloads.hf_model import hf_config

    config = hf_config(resolve_model(name))
    with quiet_transformers():
        model = build_meta_model(config)
    parameters = sum(p.numel() for p in model.parameters())  # shared (tied) parameters appear once
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return ModelInfo(name, (config.architectures or [type(model).__name__])[0], parameters,
                     config.num_hidden_layers, config.hidden_size, _attention(config), _experts(config), tied,
                     source.get("native_format"), source["repo"], source["revision"])


def catalog() -> list[ModelInfo]:
    """Every shipped model, by name."""
    known = sources()
    return [model_info(name, known[name]) for name in shipped_models()]


def _attention(config) -> str:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    text = f"{heads} heads" + (f" / {kv} KV heads" if kv != heads else "")
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True) is not False:
        text += f", window {window}"
    return text


def _experts(config) -> str:
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    return f"{experts}, top-{config.num_experts_per_tok}" if experts else "-"


def format_catalog(models: list[ModelInfo]) -> str:
    """The table ``tlmsim models`` prints."""
    header = ("name", "family", "params", "layers", "hidden", "attention", "experts", "tied", "native", "source")
    rows = [(m.name, m.architecture, f"{m.parameters / 1e9:.2f}B", str(m.layers), str(m.hidden), m.attention,
             m.experts, "yes" if m.tied else "no", m.native_format or "-", f"{m.repo} @ {m.revision}")
            for m in models]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])
