"""Shared fixtures: a SimPy context, a small model graph, a small valid config."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import simpy
import yaml

from tlmsim.engine.component import SimContext
from tlmsim.engine.trace import Tracer

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"


@pytest.fixture
def ctx() -> SimContext:
    """A fresh simulation context."""
    return SimContext(simpy.Environment(), Tracer(), phase="test")


@pytest.fixture
def flagship_raw() -> dict:
    """The flagship config as a plain dict (tests modify copies of it)."""
    return copy.deepcopy(yaml.safe_load(FLAGSHIP.read_text()))


@pytest.fixture(scope="session")
def tiny_llama_graph():
    """Layer graph of a tiny LLaMA (2 layers, hidden 64) in int4-2:4."""
    from transformers import LlamaConfig

    from tlmsim.workloads.formats import parse_format
    from tlmsim.workloads.graph import build_meta_model, extract_layer_graph, layer_index

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=512)
    body, head = parse_format("int4-2:4"), parse_format("fp16")

    def info(name, out_f, in_f):
        fmt = body if layer_index(name) is not None else head
        return fmt.name, fmt.packed_nbytes(out_f, in_f)

    return extract_layer_graph(build_meta_model(cfg), info)
