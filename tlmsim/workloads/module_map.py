"""Which hardware ops a model's modules become: data tables, and the graph rewrites they drive.

The graph extractor (``graph.py``) makes one node per call of a leaf module. What that
node is comes from the tables here, not from code per model family:

* ``VECTOR_MODULES``: leaf modules the vector unit runs (norms, activations, RoPE);
* ``COMPOSITE_MODULES``: leaf modules that are several ops in a row, e.g. a mixture-of-
  experts bank (gate/up matmul, activation, down matmul) or a top-k router (matmul,
  softmax); each ``linear``/``experts`` part names the parameter that is its weight;
* ``FUSED_LINEARS``: linears that stack several real matrices (Phi-3's ``qkv_proj`` and
  ``gate_up_proj``, GPT-2's ``c_attn``), split into those matrices' real shapes;
* ``NO_OP_MODULES``: identities at inference (dropout).

A new family usually needs a table row, not a code path. The rewrites work on the
plain-data graph (no torch), so they are tested on hand-built graphs.
"""

from __future__ import annotations

import networkx as nx

from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.symbols import Sym

COMPOSITE = "composite"  # kind of a traced node that expand_composites() replaces by its parts

VECTOR_MODULES = {  # leaf module class name suffix -> vector-unit op
    "RMSNorm": "rmsnorm", "LayerNorm": "layernorm", "RotaryEmbedding": "rope_table",
    "SiLU": "activation", "SiLUActivation": "activation", "GELU": "activation", "GELUActivation": "activation",
    "GELUTanh": "activation", "ReLU": "activation", "ReLU6": "activation", "LeakyReLU": "activation",
    "Tanh": "activation", "Sigmoid": "activation", "Hardswish": "activation", "MishActivation": "activation",
    "ReLUSquaredActivation": "activation",  # BitNet b1.58's ReLU^2 (hidden_act "relu2")
    "LaplaceActivation": "activation", "SqrtSoftplusActivation": "activation",
}

# Leaf module class name suffix -> its ops in data-flow order:
#   ("matmul", param)       a linear op with the module's own [out, in] parameter ``param``
#   ("experts", param)      the same for a bank of experts, ``param`` is [experts, out, in]; a token
#                           uses ``num_experts_per_tok`` of them (phases.py streams only those)
#   ("vector_unit", op)     a vector-unit op over the previous part's outputs
COMPOSITE_MODULES = {
    "TopKRouter": (("matmul", "weight"), ("vector_unit", "softmax")),  # Mixtral, OLMoE, Qwen2-/3-MoE: softmax + top-k
    "Experts": (("experts", "gate_up_proj"), ("vector_unit", "activation"), ("experts", "down_proj")),
}

# Fused linear (leaf attribute name) -> the matrices stacked along its outputs, each with its
# share in units of the config: "heads" = num_attention_heads, "kv_heads" = num_key_value_heads.
_QKV = (("q_proj", "heads"), ("k_proj", "kv_heads"), ("v_proj", "kv_heads"))
FUSED_LINEARS = {
    "qkv_proj": _QKV,  # Phi-3
    "c_attn": _QKV,  # GPT-2 (Conv1D)
    "query_key_value": _QKV,  # GPT-NeoX, Falcon
    "W_pack": _QKV,  # Baichuan
    "gate_up_proj": (("gate_proj", "one"), ("up_proj", "one")),  # Phi-3
}

NO_OP_MODULES = ("Dropout", "Identity")  # identities at inference: no node, data flows through


def vector_op_of(cls: str) -> str | None:
    """The vector-unit op of a leaf module class, or None."""
    return next((op for suffix, op in VECTOR_MODULES.items() if cls.endswith(suffix)), None)


def composite_of(cls: str) -> tuple | None:
    """The op parts of a composite leaf module class, or None."""
    return next((parts for suffix, parts in COMPOSITE_MODULES.items() if cls.endswith(suffix)), None)


# ---- rewrites of the traced graph --------------------------------------------------------


def expand_composites(graph: nx.DiGraph) -> None:
    """Replace every node holding ``parts`` by a chain of its parts (inputs to the first,
    outputs from the last)."""
    for node in [n for n, d in graph.nodes(data=True) if "parts" in d]:
        parts = graph.nodes[node]["parts"]
        names = [f"{node}.{p['module'].rsplit('.', 1)[-1] if p['kind'] != OpKind.VECTOR else p['vector_op']}"
                 for p in parts]
        _replace(graph, node, list(zip(names, parts)), chain=True)


def split_fused_linears(graph: nx.DiGraph, heads: int, kv_heads: int) -> None:
    """Split each fused linear into its stacked matrices (same inputs and consumers; each part
    remembers its rows of the fused tensor); left whole if its width does not divide as expected."""
    units = {"heads": heads, "kv_heads": kv_heads, "one": 1}
    for node, data in list(graph.nodes(data=True)):
        spec = FUSED_LINEARS.get(data["module"].rsplit(".", 1)[-1])
        if data["kind"] != OpKind.LINEAR or spec is None or "experts" in data:
            continue
        shares = [units[unit] for _, unit in spec]
        if data["out_features"] % sum(shares):
            continue
        width = data["out_features"] // sum(shares)
        parent = data["module"].rsplit(".", 1)[0]
        parts, first = [], 0
        for (suffix, _), share in zip(spec, shares):
            parts.append((f"{parent}.{suffix}", {**data, "out_features": share * width, "fused_in": data["module"],
                                                 "fused_out_features": data["out_features"], "fused_first": first}))
            first += share * width
        if not any(name in graph for name, _ in parts):
            _replace(graph, node, parts, chain=False)


def assign_weights(graph: nx.DiGraph, weight_info) -> None:
    """Give every linear its weight format and packed bytes: ``weight_info(module, out, in)``.

    An expert bank stores each expert as its own matrix (all of them are placed); a part of
    a fused linear gets its exact share (by rows) of the fused tensor as stored."""
    for _, data in graph.nodes(data=True):
        if data["kind"] != OpKind.LINEAR:
            continue
        if "fused_in" in data:
            total = data["fused_out_features"]
            fmt, nbytes = weight_info(data["fused_in"], total, data["in_features"])
            first = data["fused_first"]
            nbytes = _share(nbytes, first + data["out_features"], total) - _share(nbytes, first, total)
        else:
            fmt, nbytes = weight_info(data["module"], data["out_features"], data["in_features"])
            nbytes *= data.get("experts", 1)
        data.update(weight_format=fmt, weight_nbytes=nbytes)


def mark_sliding_windows(graph: nx.DiGraph, window_of_layer: dict[int, int]) -> None:
    """Bound the KV reads and cache of each sliding-window layer's attention to its window."""
    for _, data in graph.nodes(data=True):
        window = window_of_layer.get(data["layer"])
        if window and data["kind"] in (OpKind.ATTN_MATMUL, OpKind.KV_APPEND):
            data["window"] = window


def sliding_windows(cfg) -> dict[int, int]:
    """Decoder layer -> attention window, for the layers that attend to a sliding window only."""
    window = getattr(cfg, "sliding_window", None)
    if not window or getattr(cfg, "use_sliding_window", True) is False:
        return {}
    types = getattr(cfg, "layer_types", None)
    layers = range(cfg.num_hidden_layers)
    return {i: window for i in layers if types is None or types[i] == "sliding_attention"}


def mark_tied(graph: nx.DiGraph, table: str | None, head: str | None) -> None:
    """Record that the embedding node ``table`` reads the lm_head node ``head``'s weight."""
    if table in graph and head in graph:
        graph.nodes[table]["tied_to"] = head


def renumber(graph: nx.DiGraph) -> None:
    """Make ``order`` 0..N-1 again after rewrites (ties broken by insertion)."""
    for i, node in enumerate(sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])):
        graph.nodes[node]["order"] = i


def _replace(graph: nx.DiGraph, node: str, parts: list[tuple[str, dict]], chain: bool) -> None:
    """Put ``parts`` (name, attrs) where ``node`` was, in a chain or side by side."""
    preds, succs, order = list(graph.predecessors(node)), list(graph.successors(node)), graph.nodes[node]["order"]
    graph.remove_node(node)
    step = 1 / (len(parts) + 1)  # orders stay between node's neighbours until renumber()
    previous = None
    for i, (name, attrs) in enumerate(parts):
        graph.add_node(name, **{**attrs, "order": order + i * step})
        sources = [previous] if chain and previous else preds
        graph.add_edges_from((src, name) for src in sources)
        if not chain or i == len(parts) - 1:
            graph.add_edges_from((name, dst) for dst in succs)
        previous = name


def _share(total: int, part: int, parts: int) -> int:
    return total * part // parts


def part_attrs(kind: str, what: str, module: str, layer: int | None, rows: Sym, params: dict,
               top_k: int, previous: dict | None) -> dict:
    """Attributes of one part of a composite module (``params``: parameter name -> shape)."""
    base = {"kind": str(OpKind.VECTOR if kind == "vector_unit" else OpKind.LINEAR), "layer": layer}
    if kind == "vector_unit":
        width = previous["out_features"] * previous.get("experts_per_token", 1)
        return {**base, "module": module, "vector_op": what, "elements": rows * Sym(width)}
    shape = params[what]
    attrs = {**base, "module": f"{module}.{what}", "in_features": shape[-1], "out_features": shape[-2], "rows": rows}
    if kind == "experts":
        attrs.update(experts=shape[0], experts_per_token=top_k)
    return attrs
