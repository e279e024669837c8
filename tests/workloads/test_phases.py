"""Prefill and decode steps: sizes follow tokens, KV length and batch."""

from tlmsim.workloads.phases import Workload


def _ops(graph, step):
    return {op.name: op for op in Workload(graph, 2, 16, 3, 16).ops(step)}


def test_steps_grow_the_kv_cache_by_one_token(tiny_llama_graph):
    steps = Workload(tiny_llama_graph, 2, 16, 3, 16).steps()
    assert [(s.phase, s.tokens, s.kv) for s in steps] == [
        ("prefill", 16, 16), ("decode", 1, 17), ("decode", 1, 18), ("decode", 1, 19)]


def test_decode_attention_reads_the_whole_kv_cache(tiny_llama_graph):
    wl = Workload(tiny_llama_graph, 2, 16, 3, 16)
    step = wl.steps()[2]
    ops = {op.name: op for op in wl.ops(step)}
    scores = ops["model.layers.1.self_attn.matmul"]
    # batch 2 x 2 KV heads x 16 dims x 18 entries x 2 bytes
    assert scores.operand_bytes == 2 * 2 * 16 * 18 * 2
    assert (scores.groups, scores.rows, scores.k, scores.n) == (8, 1, 16, 18)
    append = ops["model.layers.1.self_attn.kv_append"]
    assert append.write_bytes == 2 * 2 * 16 * 1 * 2


def test_prefill_linears_process_all_tokens_but_lm_head_only_the_last(tiny_llama_graph):
    wl = Workload(tiny_llama_graph, 2, 16, 3, 16)
    ops = {op.name: op for op in wl.ops(wl.steps()[0])}
    assert ops["model.layers.0.mlp.up_proj"].rows == 32
    assert ops["lm_head"].rows == 2


def test_dependencies_point_backwards(tiny_llama_graph):
    wl = Workload(tiny_llama_graph, 1, 4, 1, 16)
    for i, op in enumerate(wl.ops(wl.steps()[1])):
        assert all(d < i for d in op.deps)
