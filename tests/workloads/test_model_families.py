"""Every model_type listed as known to work traces to a complete layer graph (tiny configs)."""

import networkx as nx
import pytest
import torch
from transformers import AutoConfig

from tlmsim.workloads.graph import build_meta_model, extract_layer_graph
from tlmsim.workloads.hf_model import VERIFIED_MODEL_TYPES
from tlmsim.workloads.symbols import eval_size

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=512,
            bos_token_id=0, eos_token_id=0, pad_token_id=0)


def _weight_numel(model) -> int:
    """Elements of every Linear (and GPT-2 Conv1D) weight, of every expert bank and router."""
    linear = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D")
    experts = sum(p.numel() for m in model.modules() if type(m).__name__.endswith(("Experts", "TopKRouter"))
                  for p in m.parameters(recurse=False))
    return linear + experts


@pytest.mark.parametrize("model_type", VERIFIED_MODEL_TYPES)
def test_known_model_type_traces_completely(model_type):
    model = build_meta_model(AutoConfig.for_model(model_type, **TINY))
    graph = extract_layer_graph(model, lambda name, out_f, in_f: ("fp16", out_f * in_f * 2))
    linears = [d for _, d in graph.nodes(data=True) if d["kind"] == "linear"]
    assert sum(d["in_features"] * d["out_features"] * d.get("experts", 1) for d in linears) == _weight_numel(model)
    per_layer = {}
    for _, d in graph.nodes(data=True):
        if d["layer"] is not None:
            per_layer.setdefault(d["layer"], []).append((d["kind"], d.get("vector_op")))
    assert sorted(per_layer) == [0, 1] and per_layer[0] == per_layer[1]
    kinds = [kind for kind, _ in per_layer[0]]
    assert kinds.count("kv_append") == 2 and kinds.count("attn_matmul") == 2
    assert nx.is_directed_acyclic_graph(graph)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    kv = [d for _, d in graph.nodes(data=True) if d["kind"] == "kv_append" and d["layer"] == 0]
    assert all(eval_size(d["elements"], 1, 10) % (10 * head_dim) == 0 for d in kv)  # whole heads


def test_dropout_is_a_no_op_and_leaves_no_node():
    model = build_meta_model(AutoConfig.for_model("gpt2", **TINY))
    graph = extract_layer_graph(model, lambda name, out_f, in_f: ("fp16", out_f * in_f * 2))
    assert not [n for n in graph if "drop" in n]
    # the residual path still connects: the first layer's norm reads the embeddings' sum
    assert nx.has_path(graph, "transformer.wte", "transformer.h.0.ln_1")
