"""Bytes one decode step moves, derived by hand from the public model configs, for the model
features that change them: grouped-query attention, tied embeddings, mixture of experts,
sliding-window attention and BitNet b1.58's ternary weights.

Each expectation is written from the config's numbers (see the shipped JSON files) and the
storage formulas of docs/compression.md, not read back from the simulator. A step's bytes
are its ops' streamed operands plus gathers and KV writes; the accelerator moves exactly
these (checked against full runs in tests/tlmsim/test_shipped_models.py).
"""

import pytest

from tlmsim.workloads.hf_model import layer_graph
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Workload, embedding_table_bytes

FP16 = 2  # bytes per value


def decode_step(model: str, fmt: str, batch: int = 1, prefill: int = 128):
    """The ops of the first decode step (KV length prefill + 1), fp16 KV cache."""
    workload = Workload(layer_graph(model, fmt), batch, prefill, 1, kv_bits=16)
    return workload, workload.ops(workload.steps()[1])


def step_bytes(ops) -> int:
    return sum(op.operand_bytes + op.read_bytes + op.write_bytes for op in ops)


def dense_layer_bytes(hidden, heads, kv_heads, head_dim, intermediate, per_matrix) -> int:
    """Weights of one LLaMA-style decoder layer: q, k, v, o and gate, up, down."""
    shapes = [(heads * head_dim, hidden), (kv_heads * head_dim, hidden), (kv_heads * head_dim, hidden),
              (hidden, heads * head_dim), (intermediate, hidden), (intermediate, hidden), (hidden, intermediate)]
    return sum(per_matrix(out, inp) for out, inp in shapes)


def kv_bytes(kv_heads, head_dim, entries) -> int:
    """K and V of one layer for ``entries`` tokens, fp16."""
    return 2 * entries * kv_heads * head_dim * FP16


def fp16(out, inp):
    return out * inp * FP16


def test_gqa_llama3_8b_reads_only_its_8_kv_heads():
    # Llama-3-8B: hidden 4096, 32 layers, 32 query heads, 8 KV heads of 128, MLP 14336, vocab 128256
    _, ops = decode_step("llama-3-8b", "fp16")
    layer = dense_layer_bytes(4096, 32, 8, 128, 14336, fp16) + kv_bytes(8, 128, 129) + kv_bytes(8, 128, 1)
    expected = 32 * layer + 128256 * 4096 * FP16 + 4096 * FP16  # + lm_head + one embedding row
    assert step_bytes(ops) == expected
    read = sum(op.operand_bytes for op in ops if op.kind is OpKind.ATTN_MATMUL)
    assert read == 32 * kv_bytes(8, 128, 129)  # a quarter of what 32 KV heads would read


def test_tied_llama32_1b_stores_its_table_once_and_gathers_from_the_lm_head():
    # Llama-3.2-1B: hidden 2048, 16 layers, 32 heads / 8 KV heads of 64, MLP 8192, vocab 128256, tied
    workload, ops = decode_step("llama-3.2-1b", "fp16")
    graph = workload.graph
    head = 128256 * 2048 * FP16
    stored = sum(d["weight_nbytes"] for _, d in graph.nodes(data=True) if d["kind"] == OpKind.LINEAR)
    tables = sum(embedding_table_bytes(d) for _, d in graph.nodes(data=True) if d["kind"] == OpKind.EMBEDDING)
    params = 16 * dense_layer_bytes(2048, 32, 8, 64, 8192, fp16) // FP16 + 128256 * 2048  # 1.236e9, once
    assert stored + tables == params * FP16 and tables == 0
    layer = dense_layer_bytes(2048, 32, 8, 64, 8192, fp16) + kv_bytes(8, 64, 129) + kv_bytes(8, 64, 1)
    assert step_bytes(ops) == 16 * layer + head + 2048 * FP16
    gather = next(op for op in ops if op.kind is OpKind.EMBEDDING)
    assert gather.operand_tensor == "lm_head" and gather.read_bytes == 2048 * FP16


def int4_2of4(out, inp):
    """2:4 INT4, 128 kept weights per fp16 scale: per row inp/2 kept x (4 value + 2 index bits) + scales."""
    kept = inp // 2
    return out * (kept * 6 // 8 + -(-kept // 128) * FP16)


# Mixtral-8x7B: hidden 4096, MLP 14336, 8 experts, top-2, 32 layers, 32 heads / 8 KV heads of 128
MIXTRAL_EXPERT = int4_2of4(2 * 14336, 4096) + int4_2of4(4096, 14336)  # gate_up [28672x4096] + down


def mixtral_step(batch: int, distinct: float) -> int:
    """Bytes of one Mixtral decode step streaming ``distinct`` experts per layer (expected value)."""
    attention = (int4_2of4(4096, 4096) * 2 + int4_2of4(1024, 4096) * 2
                 + batch * (kv_bytes(8, 128, 129) + kv_bytes(8, 128, 1)))
    router = int4_2of4(8, 4096)
    experts = (round(distinct * 8 * int4_2of4(2 * 14336, 4096) / 8)
               + round(distinct * 8 * int4_2of4(4096, 14336) / 8))
    return 32 * (attention + router + experts) + 32000 * 4096 * FP16 + batch * 4096 * FP16


@pytest.mark.parametrize("batch,distinct", [
    (1, 2.0),  # one token: exactly its top-2 experts
    (8, 8 * (1 - (1 - 2 / 8) ** 8)),  # uniform routing: E (1 - (1 - k/E)^B) = 7.1991 distinct experts
])
def test_mixtral_streams_the_expected_distinct_experts(batch, distinct):
    workload, ops = decode_step("mixtral-8x7b", "int4-2:4", batch=batch)
    assert step_bytes(ops) == mixtral_step(batch, distinct)
    placed = sum(d.get("weight_nbytes", 0) for n, d in workload.graph.nodes(data=True) if ".experts." in n)
    assert placed == 32 * 8 * MIXTRAL_EXPERT  # every expert is placed
    down = next(op for op in ops if op.name == "model.layers.0.mlp.experts.down_proj")
    assert down.macs == batch * 2 * 4096 * 14336  # each token's 2 experts, no more


def test_mixtral_at_batch_1_streams_a_quarter_of_its_experts():
    _, ops = decode_step("mixtral-8x7b", "int4-2:4")
    streamed = sum(op.operand_bytes for op in ops if ".experts." in op.name)
    assert streamed == 32 * 2 * MIXTRAL_EXPERT


def test_mistral_sliding_window_bounds_kv_reads_and_cache_past_4096_tokens():
    # Mistral-7B: 32 layers, 8 KV heads of 128, sliding_window 4096
    for prefill, attended in ((4000, 4001), (4999, 4096), (8191, 4096)):
        workload, ops = decode_step("mistral-7b", "fp16", prefill=prefill)
        read = sum(op.operand_bytes for op in ops if op.kind is OpKind.ATTN_MATMUL)
        assert read == 32 * kv_bytes(8, 128, attended)
        scores = next(op for op in ops if op.name == "model.layers.0.self_attn.matmul")
        assert scores.n == attended  # each query attends to the window only
    cache = "model.layers.0.self_attn.kv_append"
    assert workload.kv_cache_bytes(cache, 8192) == 4096 * 8 * 128 * FP16  # the cache holds one window
    assert workload.kv_write_offset(cache, 5000) == (5000 - 4096) * 8 * 128 * FP16  # a ring buffer


def ternary(out, inp):
    """BitNet b1.58: 2 bits per weight, one fp16 absmean scale per tensor (formats.py, docs/compression.md)."""
    return out * inp * 2 // 8 + FP16


def test_bitnet_2b4t_streams_ternary_weights_and_a_tied_fp16_head():
    # BitNet b1.58 2B4T: hidden 2560, 30 layers, 20 heads / 5 KV heads of 128, MLP 6912, vocab 128256, tied
    workload, ops = decode_step("bitnet-b1.58-2b-4t", "ternary")
    layer = dense_layer_bytes(2560, 20, 5, 128, 6912, ternary) + kv_bytes(5, 128, 129) + kv_bytes(5, 128, 1)
    assert step_bytes(ops) == 30 * layer + 128256 * 2560 * FP16 + 2560 * FP16
    decoder = sum(op.operand_bytes for op in ops if op.kind is OpKind.LINEAR and op.layer is not None)
    assert decoder == 30 * dense_layer_bytes(2560, 20, 5, 128, 6912, ternary)  # 0.52 GB for 2.08e9 weights
    norms = [op.name for op in ops if op.layer == 0 and op.vector_op == "rmsnorm"]
    assert norms == ["model.layers.0.input_layernorm", "model.layers.0.self_attn.attn_sub_norm",
                     "model.layers.0.post_attention_layernorm", "model.layers.0.mlp.ffn_sub_norm"]
