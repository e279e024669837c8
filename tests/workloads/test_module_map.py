"""The module tables' graph rewrites and the MoE routing model, on hand-built graphs and numbers."""

import math

import networkx as nx
import pytest

from tlmsim.workloads import module_map
from tlmsim.workloads.routing import expected_distinct_experts, routed_matmul
from tlmsim.workloads.symbols import Sym


def _fused_graph() -> nx.DiGraph:
    """norm -> qkv_proj (fused, 12 heads + 2 x 4 KV heads of 8) -> rope."""
    graph = nx.DiGraph()
    graph.add_node("norm", order=0, kind="vector", module="m.norm", layer=0)
    graph.add_node("m.attn.qkv_proj", order=1, kind="linear", module="m.attn.qkv_proj", layer=0,
                   in_features=96, out_features=(12 + 2 * 4) * 8, rows=Sym(1, 1))
    graph.add_node("rope", order=2, kind="vector", module="m.attn", layer=0)
    graph.add_edges_from([("norm", "m.attn.qkv_proj"), ("m.attn.qkv_proj", "rope")])
    return graph


def test_a_fused_qkv_splits_into_its_real_shapes_with_the_same_neighbours():
    graph = _fused_graph()
    module_map.split_fused_linears(graph, heads=12, kv_heads=4)
    module_map.renumber(graph)
    parts = ["m.attn.q_proj", "m.attn.k_proj", "m.attn.v_proj"]
    assert [graph.nodes[p]["out_features"] for p in parts] == [96, 32, 32]
    assert all(list(graph.predecessors(p)) == ["norm"] and list(graph.successors(p)) == ["rope"] for p in parts)
    assert sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"]) == ["norm", *parts, "rope"]
    assert [graph.nodes[n]["order"] for n in ["norm", *parts, "rope"]] == [0, 1, 2, 3, 4]


def test_the_parts_of_a_fused_linear_share_its_stored_bytes_exactly():
    graph = _fused_graph()
    module_map.split_fused_linears(graph, heads=12, kv_heads=4)
    fused = 160 * 96 * 3 // 8 + 1  # an odd total: 3-bit values and one byte of padding
    module_map.assign_weights(graph, lambda name, out, inp: ("x", fused if name == "m.attn.qkv_proj" else -1))
    shares = [graph.nodes[p]["weight_nbytes"] for p in ("m.attn.q_proj", "m.attn.k_proj", "m.attn.v_proj")]
    # boundaries floor(5761 x 96/160) = 3456 and floor(5761 x 128/160) = 4608: the padding byte goes last
    assert shares == [3456, 1152, 1153] and sum(shares) == fused


def test_a_fused_linear_whose_width_does_not_divide_stays_whole():
    graph = _fused_graph()
    graph.nodes["m.attn.qkv_proj"]["out_features"] = 161
    module_map.split_fused_linears(graph, heads=12, kv_heads=4)
    assert "m.attn.qkv_proj" in graph and "m.attn.q_proj" not in graph


def test_a_composite_node_becomes_a_chain_of_its_parts():
    graph = nx.DiGraph()
    graph.add_node("in", order=0, kind="vector", module="in", layer=0)
    parts, previous = [], None
    for kind, what in module_map.COMPOSITE_MODULES["Experts"]:
        previous = module_map.part_attrs(kind, what, "m.experts", 0, Sym(1, 1),
                                         {"gate_up_proj": (8, 32, 16), "down_proj": (8, 16, 16)}, 2, previous)
        parts.append(previous)
    graph.add_node("m.experts", order=1, kind=module_map.COMPOSITE, module="m.experts", layer=0, parts=parts)
    graph.add_node("out", order=2, kind="vector", module="out", layer=0)
    graph.add_edges_from([("in", "m.experts"), ("m.experts", "out")])
    module_map.expand_composites(graph)
    chain = ["in", "m.experts.gate_up_proj", "m.experts.activation", "m.experts.down_proj", "out"]
    assert all(graph.has_edge(a, b) for a, b in zip(chain, chain[1:])) and graph.number_of_edges() == 4
    up = graph.nodes["m.experts.gate_up_proj"]
    assert (up["experts"], up["experts_per_token"], up["out_features"], up["in_features"]) == (8, 2, 32, 16)
    assert graph.nodes["m.experts.activation"]["elements"] == Sym(32 * 2, 1)  # 2 experts' outputs per token


def test_sliding_windows_follow_layer_types_and_use_sliding_window():
    class Cfg:
        sliding_window, num_hidden_layers, layer_types = 512, 3, ["sliding_attention", "full_attention",
                                                                   "sliding_attention"]
    assert module_map.sliding_windows(Cfg()) == {0: 512, 2: 512}
    Cfg.layer_types = None
    assert module_map.sliding_windows(Cfg()) == {0: 512, 1: 512, 2: 512}
    Cfg.use_sliding_window = False  # Qwen2's switch
    assert module_map.sliding_windows(Cfg()) == {}


@pytest.mark.parametrize("experts,k,tokens,expected", [
    (8, 2, 1, 2.0),  # one token uses exactly its top-k
    (8, 2, 2, 8 * (1 - 0.75**2)),  # 3.5: two tokens overlap with probability k/E per expert
    (8, 8, 5, 8.0),  # top-E: every expert
    (64, 8, 1000, 64.0),  # many tokens: every expert
])
def test_expected_distinct_experts_under_uniform_routing(experts, k, tokens, expected):
    assert expected_distinct_experts(experts, k, tokens) == pytest.approx(expected, rel=1e-12)


def test_expected_distinct_experts_matches_a_seeded_simulation_of_uniform_routing():
    import numpy as np

    rng = np.random.default_rng(0)
    draws = [len({e for _ in range(8) for e in rng.choice(8, size=2, replace=False)}) for _ in range(20000)]
    assert np.mean(draws) == pytest.approx(expected_distinct_experts(8, 2, 8), abs=0.02)  # 7.199


def test_a_routed_bank_streams_the_expected_bytes_and_does_each_pairs_work_once():
    routed = routed_matmul(experts=8, top_k=2, out_features=100, bank_bytes=8000, tokens=8)
    distinct = 8 * (1 - 0.75**8)
    assert routed.operand_bytes == round(distinct * 1000) and routed.n == math.ceil(distinct) * 100
    assert routed.rows * math.ceil(distinct) == 8 * 2  # 16 token-expert pairs over 8 experts
    with pytest.raises(ValueError, match="top-k 9"):
        expected_distinct_experts(8, 9, 1)
