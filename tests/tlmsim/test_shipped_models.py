"""Every shipped model runs on the flagship accelerator (configs/u280_llama7b.yaml with
``--model NAME``), or is refused with a capacity error that names the fix.

Which models must fit is predicted here from their packed weights and KV cache against
the HBM's capacity, not listed by hand. Runs are short (8-token prompt, 1 decode step);
the graphs come from the shared graph cache.
"""

import json
from pathlib import Path

import pytest
from tiers import ci_subset

from tlmsim.cli import main
from tlmsim.config import load_config
from tlmsim.engine.errors import CapacityError
from tlmsim.models.memory import addressable_bytes
from tlmsim.simulate import build_workload, simulate
from tlmsim.workloads.hf_model import shipped_models
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import embedding_table_bytes

FLAGSHIP = Path(__file__).resolve().parents[2] / "configs" / "u280_llama7b.yaml"
SHORT = ["workload.prefill_tokens=8", "workload.decode_tokens=1", "trace.prefill=false", "trace.decode_steps=0"]


def _needed_bytes(workload) -> int:
    """Weights, embedding tables and the final KV cache: what must fit in HBM (before alignment)."""
    graph, final_kv = workload.graph, workload.prefill_tokens + workload.decode_tokens
    nodes = graph.nodes(data=True)
    return (sum(d["weight_nbytes"] for _, d in nodes if d["kind"] == OpKind.LINEAR)
            + sum(embedding_table_bytes(d) for _, d in nodes if d["kind"] == OpKind.EMBEDDING)
            + sum(workload.kv_cache_bytes(n, final_kv) for n, d in nodes if d["kind"] == OpKind.KV_APPEND))


# CI runs one model per family feature (GQA, tied embeddings, sliding window, MoE, ternary
# BitNet, GPT-2-style fused QKV and LayerNorm, Phi-3 fused gate-up); TLMSIM_FULL=1 runs all.
IN_CI = {"llama-7b", "llama-3-8b", "llama-3.2-1b", "mistral-7b", "mixtral-8x7b", "bitnet-b1.58-2b-4t", "gpt2-xl",
         "phi-3-mini-4k"}


@pytest.mark.parametrize("name", ci_subset(shipped_models(), IN_CI))
def test_shipped_model_runs_on_the_flagship_or_is_refused_with_the_fix(name):
    cfg = load_config(FLAGSHIP, [f"workload.model={name}", *SHORT])
    workload = build_workload(cfg)
    need, room = _needed_bytes(workload), addressable_bytes(cfg.memory["hbm"])
    if need > room:
        with pytest.raises(CapacityError, match=r"add 'ddr' to placement\.weights"):
            simulate(cfg, workload.graph)
        return
    run = simulate(cfg, workload.graph)
    decode = run.data["phases"]["decode"]
    ops = workload.ops(workload.steps()[1])
    assert sum(decode["bytes_per_step"].values()) == sum(o.operand_bytes + o.read_bytes + o.write_bytes for o in ops)
    assert decode["tokens_per_s"] > 0 and run.data["weights"]["total_bytes"] < room


def test_mixtral_fits_once_ddr_may_hold_weights_and_tables():
    overrides = ["workload.model=mixtral-8x7b", "placement.weights=[hbm, ddr]", "placement.embeddings=[hbm, ddr]",
                 *SHORT]
    run = simulate(load_config(FLAGSHIP, overrides))
    assert run.data["weights"]["allocated_bytes_by_memory"]["ddr"] > 0
    assert run.data["phases"]["decode"]["tokens_per_s"] > 0


def test_run_with_model_flag_names_the_model_in_the_result(tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "run", str(FLAGSHIP), "--model", "smollm2-135m", "--out", str(out),
                 *[arg for o in SHORT for arg in ("--set", o)]]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["model"]["name"] == "smollm2-135m" and result["model"]["kind"] == "shipped"
    assert result["weights"]["embedding_bytes"] == 0  # tied: the lm_head's table is the only copy
