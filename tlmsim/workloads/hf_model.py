"""Find a model's config (shipped name or local folder) and build its layer graph.

Nothing is downloaded: a name refers to a config JSON shipped in
``tlmsim/workloads/model_configs/``, a folder to a local HF model (``config.json``), and a
compressed model folder also has ``manifest.json`` with each layer's packed format
and exact byte count (see ``model_source.py`` for how a name is told from a folder).

``layer_graph`` is the entry point. With a cache hit (``graph_cache.py``) it reads
only the config and manifest bytes and the cache file, and imports neither torch nor
transformers; only a miss builds the transformers config, checks that the model is a
causal LM of a sane size, and traces it (``graph.py``). Every problem with the model
is a one-line ``ModelError`` (a ``ConfigError``) naming the file or module and the fix.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from tlmsim.engine.errors import ConfigError
from tlmsim.workloads import graph_cache
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.model_source import (  # noqa: F401  (re-exported for callers of this module)
    SHIPPED,
    ModelError,
    ModelSource,
    one_line,
    resolve_model,
    shipped_models,
)
from tlmsim.workloads.module_map import assign_weights
from tlmsim.workloads.symbols import layer_index

# model_type values whose tiny configs trace to a complete graph (tests/workloads/test_model_families.py)
VERIFIED_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "gpt2", "gpt_neox",
    "opt", "falcon", "olmo", "olmo2", "granite", "stablelm", "starcoder2", "cohere",
    "bitnet", "mixtral", "olmoe", "qwen2_moe", "qwen3_moe",
)

# Size caps, checked before the model is built (docs/cache.md). The trace costs about
# 0.1 s per decoder layer, so MAX_LAYERS keeps it under half a minute; the largest
# published LLMs have ~130 layers, hidden size ~25k, vocabularies ~260k, 2T parameters.
MAX_LAYERS = 256
MAX_WIDTH = 131_072  # hidden_size and per-layer widths
MAX_INTERMEDIATE = 1_048_576
MAX_VOCAB = 4_194_304
MAX_WEIGHT_BYTES = 4 * 10**12  # fp16 weights, i.e. 2T parameters
MAX_GRAPH_BYTES = 10**9  # simulator memory for the layer graph
NODES_PER_LAYER = 40  # LLaMA has 20 graph nodes per decoder layer; allow twice that
BYTES_PER_NODE = 10_000  # peak Python memory per node while tracing LLaMA-7B was ~9 KB

_CODE = (  # the sources that shape a graph: their digest is part of the cache key
    "graph.py", "symbols.py", "hf_model.py", "formats.py", "manifest.py", "model_source.py", "module_map.py")


def layer_graph(model: str, weight_format: str, lm_head_format: str = "fp16", group_size: int = 128) -> nx.DiGraph:
    """Layer graph of ``model`` with every linear's weight format and packed bytes.

    The traced graph does not depend on the formats, so one cache entry serves them all;
    the formats (or a compressed model's manifest) are applied on every load.
    ``graph.graph["model_source"]`` records which config was used (kind, path, sha256)."""
    source = resolve_model(model)
    manifest, manifest_sha256 = _manifest(source)  # validated on every run: the cache must not hide a broken model
    inputs = cache_inputs(source)
    graph = graph_cache.load(inputs)
    if graph is None:
        graph = _extract(source)
        graph_cache.store(inputs, graph)
    label = f"workload.model {source.name} (model_type '{graph.graph['model_type']}')"
    assign_weights(graph, _weight_info(label, manifest, weight_format, lm_head_format, group_size))
    graph.graph["source"] = "manifest" if manifest is not None else "config"
    graph.graph["model_source"] = {**source.record(), "manifest_sha256": manifest_sha256}
    return graph


def cache_inputs(source: ModelSource) -> dict:
    """Everything a traced layer graph depends on, as plain data (the cache key)."""
    return {
        "config_sha256": source.config_sha256,
        "code_sha256": _code_digest(),
        "torch": _dist_version("torch"),  # read from metadata: importing torch takes seconds
        "transformers": _dist_version("transformers"),
    }


def cache_path(model: str, *formats) -> Path:
    """The cache file ``layer_graph`` reads and writes for ``model`` (whatever the formats)."""
    return graph_cache.cache_path(cache_inputs(resolve_model(model)))


@functools.cache  # constant for the life of the process
def _code_digest() -> str:
    """sha256 of the extraction code: a changed extractor never reuses an old graph."""
    h = hashlib.sha256()
    for name in _CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()


@functools.cache  # constant for the life of the process
def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _manifest(source: ModelSource) -> tuple[dict | None, str | None]:
    """The checked layer records of a compressed model folder and the manifest's sha256."""
    if source.kind != "local":
        return None, None
    folder = source.path
    if (folder / "packed.safetensors").is_file() and not (folder / "manifest.json").is_file():
        raise ModelError(f"workload.model {source.name} has packed.safetensors but no manifest.json; "
                         f"recompress it with tlmsim compress")
    if not (folder / "manifest.json").is_file():
        return None, None
    from tlmsim.workloads.manifest import load_manifest

    try:
        digest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
        records = load_manifest(folder)
    except OSError as err:
        raise ModelError(f"workload.model {source.name}: cannot read {folder / 'manifest.json'} "
                         f"({err.strerror or err}); check its permissions") from None
    except ModelError as err:
        raise ModelError(f"workload.model {source.name}: {err}") from None
    return records, digest


# ---- building the graph (a cache miss) --------------------------------------------------


def load_hf_config(model: str):
    """The checked transformers config for a shipped name or a local model folder."""
    return hf_config(resolve_model(model))


def hf_config(source: ModelSource):
    """The transformers config of ``source``: a causal LM of a size the simulator can hold."""
    from transformers import CONFIG_MAPPING

    from tlmsim.workloads.graph import quiet_transformers

    label = f"workload.model {source.name}"
    model_type = source.config["model_type"]
    check_causal_lm(model_type, label)
    try:
        with quiet_transformers():
            config = CONFIG_MAPPING[model_type].from_dict(copy.deepcopy(source.config))
    except Exception as err:  # transformers validates fields with many exception types
        raise ModelError(f"{label}: {source.config_file} is not a valid '{model_type}' config "
                         f"({type(err).__name__}: {one_line(err)}); fix or regenerate it") from None
    check_model_size(config, label)
    return config


def check_causal_lm(model_type: str, label: str) -> None:
    """Refuse model types transformers does not know, and models that are not causal LMs."""
    import transformers
    from transformers.models.auto import modeling_auto
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    known = ", ".join(VERIFIED_MODEL_TYPES)
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ModelError(f"{label}: model_type '{model_type}' is unknown to transformers "
                         f"{transformers.__version__}; tlmsim simulates causal LMs such as {known}")
    # Encoders (BERT, RoBERTa, ...) and encoder-decoders have a "causal LM" class too: their
    # decoder half. tlmsim models decoder-only generation, so they are refused.
    halves = set(modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES) | set(
        modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES) | {"bert-generation"}
    if model_type not in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type in halves:
        raise ModelError(f"{label}: model_type '{model_type}' is not a causal (decoder-only) language "
                         f"model; tlmsim simulates only causal LMs, e.g. {known}")


@dataclass(frozen=True)
class SizeEstimate:
    """What a model would cost the simulator, estimated from its config alone."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int

    @property
    def graph_nodes(self) -> int:
        return self.layers * NODES_PER_LAYER + 8

    @property
    def graph_bytes(self) -> int:
        return self.graph_nodes * BYTES_PER_NODE

    @property
    def weight_bytes(self) -> int:
        """fp16 bytes of embeddings, lm_head and the decoder layers' linears (dense MHA: an upper bound)."""
        per_layer = 4 * self.hidden * self.hidden + 3 * self.hidden * self.intermediate
        return 2 * (2 * self.vocab * self.hidden + self.layers * per_layer)


def check_model_size(config, label: str) -> SizeEstimate:
    """Refuse, before building it, a model too large for the simulator (see the caps above)."""
    hidden = _positive(config, "hidden_size", label)
    mlp_field = _intermediate_field(config)
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 1
    size = SizeEstimate(
        layers=_positive(config, "num_hidden_layers", label),
        hidden=hidden,
        intermediate=(_positive(config, mlp_field, label) if mlp_field else 4 * hidden) * experts,  # every expert
        vocab=_positive(config, "vocab_size", label),
    )
    _positive(config, "num_attention_heads", label)
    over = [(what, value, limit) for what, value, limit in (
        ("num_hidden_layers", size.layers, MAX_LAYERS), ("hidden_size", size.hidden, MAX_WIDTH),
        ("intermediate_size", size.intermediate, MAX_INTERMEDIATE), ("vocab_size", size.vocab, MAX_VOCAB),
        ("layer graph bytes", size.graph_bytes, MAX_GRAPH_BYTES), ("weight bytes", size.weight_bytes, MAX_WEIGHT_BYTES),
    ) if value > limit]
    if over:
        what, value, limit = over[0]
        raise ModelError(
            f"{label}: {what} = {value:,} exceeds the simulator's limit of {limit:,} (estimated: layer graph "
            f"{_bytes(size.graph_bytes)} for {size.graph_nodes:,} nodes, limit {_bytes(MAX_GRAPH_BYTES)}; "
            f"weights {_bytes(size.weight_bytes)} in fp16, limit {_bytes(MAX_WEIGHT_BYTES)}); "
            f"check the model's config.json")
    return size


def _intermediate_field(config) -> str | None:
    """Name of the MLP width field (it differs between families), or None if absent."""
    for name in ("intermediate_size", "n_inner", "ffn_dim"):
        if getattr(config, name, None) is not None:
            return name
    return None


def _positive(config, field: str, label: str) -> int:
    value = getattr(config, field, None)
    if type(value) is not int or value <= 0:
        raise ModelError(f"{label}: config field {field} = {value!r} must be a positive integer; fix config.json")
    return value


def _bytes(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def _extract(source: ModelSource) -> nx.DiGraph:
    """Trace the model of ``source`` (a cache miss); every failure is one ModelError line."""
    from tlmsim.workloads.graph import ExtractionError, build_meta_model, extract_layer_graph

    config = hf_config(source)
    label = f"workload.model {source.name} (model_type '{config.model_type}', {_architecture(config)})"
    try:
        model = build_meta_model(config)
    except Exception as err:  # the model's own constructor rejects the config
        raise ModelError(f"{label}: transformers cannot build the model from {source.config_file} "
                         f"({type(err).__name__}: {one_line(err)}); fix the config") from None
    try:
        return extract_layer_graph(model)
    except ExtractionError as err:
        raise ModelError(f"{label}: {err}; model types known to work: {', '.join(VERIFIED_MODEL_TYPES)}") from None


def _architecture(config) -> str:
    """The model class the config names (its family), e.g. BitNetForCausalLM."""
    names = getattr(config, "architectures", None) or [f"{type(config).__name__.removesuffix('Config')}ForCausalLM"]
    return names[0]


def _weight_info(label: str, manifest, weight_format: str, lm_head_format: str, group_size: int):
    """``weight_info(module, out, in)``: format and packed bytes from the manifest, or from the formats
    (decoder layers in ``weight_format``, the rest in ``lm_head_format``)."""
    body = parse_format(weight_format, group_size)
    head = parse_format(lm_head_format, group_size)

    def weight_info(name: str, out_features: int, in_features: int) -> tuple[str, int]:
        if manifest is not None:
            return manifest_weight_info(manifest, name, out_features, in_features)
        fmt = body if layer_index(name) is not None else head
        try:
            return fmt.name, fmt.packed_nbytes(out_features, in_features)
        except ValueError as err:  # N:M groups that do not divide the layer's width
            raise ConfigError(f"{label}: layer {name} [{out_features}x{in_features}] cannot be stored as "
                              f"{fmt.name} ({err}); choose another weight format") from None
    return weight_info


def manifest_weight_info(manifest: dict, name: str, out_features: int, in_features: int) -> tuple[str, int]:
    """Format and packed bytes of one layer, as recorded in a compressed model's manifest."""
    record = manifest.get(name)
    if record is None:
        raise ConfigError(f"manifest.json has no entry for layer '{name}'; recompress the model with tlmsim compress")
    if (record.out_features, record.in_features) != (out_features, in_features):
        raise ConfigError(f"manifest.json says {name} is {record.out_features}x{record.in_features} but the "
                          f"model config gives {out_features}x{in_features}; recompress the model")
    return record.fmt.name, record.packed_nbytes
