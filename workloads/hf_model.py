"""Find a model's config (shipped name or local directory) and build its layer graph.

Nothing is downloaded: a name refers to a config JSON shipped in
``workloads/model_configs/``, a directory to a local HF model (``config.json``), and a
compressed model directory also has ``manifest.json`` with each layer's packed format
and exact byte count.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import networkx as nx

from tlmsim.errors import ConfigError
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.graph import build_meta_model, extract_layer_graph, layer_index

SHIPPED = Path(__file__).parent / "model_configs"


def shipped_models() -> list[str]:
    """Names of the model configs shipped with tlmsim."""
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def load_hf_config(model: str):
    """The transformers config for a shipped name or a local model directory."""
    from transformers import AutoConfig

    path = Path(model)
    if (SHIPPED / f"{model}.json").is_file():
        data = json.loads((SHIPPED / f"{model}.json").read_text())
        return AutoConfig.for_model(**data)
    if path.is_dir() and (path / "config.json").is_file():
        try:
            return AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"workload.model {model}: config.json cannot be read ({err}); "
                              f"fix or regenerate the model directory") from None
    raise ConfigError(f"workload.model '{model}' is neither a shipped model ({', '.join(shipped_models())}) "
                      f"nor a directory with config.json; fix the name or path")


def layer_graph(model: str, weight_format: str, lm_head_format: str = "fp16", group_size: int = 128) -> nx.DiGraph:
    """Layer graph of ``model`` with every linear's weight format and packed bytes.

    Tracing a 7B model takes seconds, so graphs are cached on disk under a key that
    covers everything they depend on (model config, formats, manifest, this code).
    """
    hf_config = load_hf_config(model)
    manifest = _manifest(model)  # validated on every run: the cache must not hide a broken model
    key = _cache_key(hf_config, model, weight_format, lm_head_format, group_size)
    cached = _cache_dir() / f"{key}.pickle"
    if cached.is_file():
        return pickle.loads(cached.read_bytes())
    graph = _extract(hf_config, manifest, weight_format, lm_head_format, group_size)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(graph))
    tmp.replace(cached)  # atomic: a concurrent reader never sees half a file
    return graph


def _extract(hf_config, manifest, weight_format: str, lm_head_format: str, group_size: int) -> nx.DiGraph:
    body = parse_format(weight_format, group_size)
    head = parse_format(lm_head_format, group_size)

    def weight_info(name: str, out_features: int, in_features: int) -> tuple[str, int]:
        if manifest is not None:
            return manifest_weight_info(manifest, name, out_features, in_features)
        fmt = body if layer_index(name) is not None else head
        return fmt.name, fmt.packed_nbytes(out_features, in_features)

    graph = extract_layer_graph(build_meta_model(hf_config), weight_info)
    graph.graph["source"] = "manifest" if manifest is not None else "config"
    return graph


def _cache_dir() -> Path:
    return Path(os.environ.get("TLMSIM_CACHE", Path.home() / ".cache" / "tlmsim")) / "graphs"


def _cache_key(hf_config, model: str, *formats) -> str:
    import torch
    import transformers

    h = hashlib.sha256()
    h.update(hf_config.to_json_string().encode())
    h.update(repr(formats).encode())
    manifest = Path(model) / "manifest.json"
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for source in ("graph.py", "hf_model.py", "formats.py"):
        h.update((Path(__file__).parent / source).read_bytes())
    h.update(f"{torch.__version__} {transformers.__version__}".encode())
    return h.hexdigest()[:32]


def _manifest(model: str):
    path = Path(model)
    if (path / "packed.safetensors").is_file() and not (path / "manifest.json").is_file():
        raise ConfigError(f"workload.model {model} has packed.safetensors but no manifest.json; "
                          f"recompress it with tlmsim compress")
    if not (path.is_dir() and (path / "manifest.json").is_file()):
        return None
    from tlmsim.workloads.compressed_model import load_manifest

    try:
        return load_manifest(path)
    except ValueError as err:  # missing/corrupt files, shape mismatch: the user's to fix
        raise ConfigError(f"workload.model {model}: {err}") from None


def manifest_weight_info(manifest: dict, name: str, out_features: int, in_features: int) -> tuple[str, int]:
    """Format and packed bytes of one layer, as recorded in a compressed model's manifest."""
    record = manifest.get(name)
    if record is None:
        raise ConfigError(f"manifest.json has no entry for layer '{name}'; recompress the model with tlmsim compress")
    if (record.out_features, record.in_features) != (out_features, in_features):
        raise ConfigError(f"manifest.json says {name} is {record.out_features}x{record.in_features} but the "
                          f"model config gives {out_features}x{in_features}; recompress the model")
    return record.fmt.name, record.packed_nbytes
