"""The shipped models' catalog: provenance for each config, exact parameter counts, the CLI listing."""

import pytest

from tlmsim.cli import main
from tlmsim.workloads import catalog
from tlmsim.workloads.hf_model import shipped_models


def test_every_shipped_config_has_a_source_and_no_source_lacks_a_config():
    sources = catalog.sources()
    assert set(sources) == set(shipped_models()) and len(sources) >= 10
    assert all(s["repo"].count("/") == 1 and s["revision"] for s in sources.values())


def llama_layer(hidden, heads, kv_heads, head_dim, intermediate) -> int:
    """Parameters of one LLaMA-style decoder layer: q, k, v, o, gate, up, down and two RMSNorms."""
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    return attention + 3 * hidden * intermediate + 2 * hidden


@pytest.mark.parametrize("name,parameters", [
    # LLaMA-7B: 32 layers, untied 32000-token table and head; 6,738,415,616 (the known HF count)
    ("llama-7b", 32 * llama_layer(4096, 32, 32, 128, 11008) + 2 * 32000 * 4096 + 4096),
    # Llama-3.2-1B: tied, so the 128256 x 2048 table counts once (1.24B)
    ("llama-3.2-1b", 16 * llama_layer(2048, 32, 8, 64, 8192) + 128256 * 2048 + 2048),
    # Mixtral-8x7B: 8 experts of 3 x 4096 x 14336 and an 8 x 4096 router per layer (46.7B; Jiang et al. 2024)
    ("mixtral-8x7b", 32 * (llama_layer(4096, 32, 8, 128, 0) + 8 * 3 * 4096 * 14336 + 8 * 4096)
     + 2 * 32000 * 4096 + 4096),
])
def test_parameter_counts_are_exact(name, parameters):
    info = catalog.model_info(name, catalog.sources()[name])
    assert info.parameters == parameters


def test_models_lists_family_size_and_native_format(monkeypatch, capsys):
    monkeypatch.setattr(catalog, "shipped_models", lambda: ["bitnet-b1.58-2b-4t", "mixtral-8x7b"])
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "family", "params"] and len(lines) == 3
    bitnet, mixtral = lines[1].split(), lines[2].split()
    assert bitnet[:3] == ["bitnet-b1.58-2b-4t", "BitNetForCausalLM", "2.41B"] and "ternary" in bitnet
    assert mixtral[:3] == ["mixtral-8x7b", "MixtralForCausalLM", "46.70B"] and "top-2" in lines[2]
