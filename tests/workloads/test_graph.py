"""Layer graph extracted from real transformers models (meta device, no weights)."""

import networkx as nx
import pytest
import torch

from tlmsim.workloads.graph import Sym, UnsupportedModuleError, build_meta_model, eval_size, extract_layer_graph
from tlmsim.workloads.hf_model import layer_graph, load_hf_config


@pytest.fixture(scope="module")
def llama7b():
    return layer_graph("llama-7b", "int4-2:4")


def _linears(graph):
    return {n: d for n, d in graph.nodes(data=True) if d["kind"] == "linear"}


def test_llama7b_linear_weights_equal_the_models_linear_parameters(llama7b):
    model = build_meta_model(load_hf_config("llama-7b"))
    expected = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    linears = _linears(llama7b)
    assert len(linears) == 32 * 7 + 1
    assert sum(d["in_features"] * d["out_features"] for d in linears.values()) == expected


def test_every_decoder_layer_has_the_same_ops(llama7b):
    per_layer = {}
    for _, d in llama7b.nodes(data=True):
        if d["layer"] is not None:
            per_layer.setdefault(d["layer"], []).append((d["kind"], d.get("vector_op")))
    assert len(per_layer) == 32
    assert all(ops == per_layer[0] for ops in per_layer.values())
    kinds = [k for k, _ in per_layer[0]]
    assert kinds.count("attn_matmul") == 2 and kinds.count("kv_append") == 2 and kinds.count("linear") == 7


def test_dataflow_edges_follow_the_model(llama7b):
    assert nx.is_directed_acyclic_graph(llama7b)
    p = "model.layers.3."
    assert list(llama7b.predecessors(p + "self_attn.q_proj")) == [p + "input_layernorm"]
    assert set(llama7b.predecessors(p + "mlp.down_proj")) == {p + "mlp.elementwise"}
    assert llama7b.has_edge(p + "self_attn.kv_append", p + "self_attn.matmul")


def test_attention_sizes_are_symbolic_in_tokens_and_kv(llama7b):
    scores = llama7b.nodes["model.layers.0.self_attn.matmul"]
    context = llama7b.nodes["model.layers.0.self_attn.matmul_1"]
    assert (scores["groups"], scores["rows"], scores["k"], scores["n"]) == (32, Sym(1, 1), Sym(128), Sym(1, 0, 1))
    assert (context["k"], context["n"]) == (Sym(1, 0, 1), Sym(128))
    # the K cache of one layer holds kv x 32 heads x 128 dims
    assert eval_size(llama7b.nodes["model.layers.0.self_attn.kv_append"]["elements"], 1, 640) == 640 * 4096


def test_lm_head_runs_on_the_last_token_only(llama7b):
    assert llama7b.nodes["lm_head"]["rows"] == Sym(1)
    assert llama7b.nodes["lm_head"]["weight_format"] == "fp16"


def test_weight_bytes_come_from_the_format(llama7b):
    q = llama7b.nodes["model.layers.0.self_attn.q_proj"]
    # 2:4 INT4: 2048 kept per row x (4 value + 2 index bits) + 16 scales of 16 bits per row
    assert q["weight_nbytes"] == 4096 * (2048 * 6 // 8 + 16 * 2)


def test_grouped_query_attention_reads_only_the_kv_heads(tiny_llama_graph):
    kv = tiny_llama_graph.nodes["model.layers.0.self_attn.kv_append"]
    scores = tiny_llama_graph.nodes["model.layers.0.self_attn.matmul"]
    assert eval_size(kv["elements"], 1, 10) == 10 * 2 * 16  # 2 KV heads of 16 dims
    assert scores["groups"] == 4  # computed for all 4 query heads


def test_a_leaf_module_with_weights_and_no_mapping_is_a_clear_error():
    from transformers import LlamaConfig

    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(128))

        def forward(self, x):
            return x * self.scale

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                      vocab_size=256)
    model = build_meta_model(cfg)
    with torch.device("meta"):
        model.model.layers[0].mlp.act_fn = Gate()
    with pytest.raises(UnsupportedModuleError, match="model.layers.0.mlp.act_fn' of type Gate has weights"):
        extract_layer_graph(model, lambda n, o, i: ("fp16", o * i * 2))
