"""Models and the layer-graph cache: planted, swapped, damaged and unwritable cache files;
local folders versus shipped names; unsupported, non-causal, oversized and broken model
configs; corrupt compressed-model files. Every user mistake is one line, exit 2.

Every test points TLMSIM_CACHE at its own folder (outside ``tmp_path``, which the
``user_error`` fixture watches), so the user's cache is never touched.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import logging
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlmsim.cli import main
from tlmsim.workloads import graph_cache, hf_model
from tlmsim.workloads.compressed_model import compress_model
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.hf_model import cache_path, layer_graph, resolve_model
from tlmsim.workloads.module_map import assign_weights
from tlmsim.workloads.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
FORMATS = ("int4-2:4", "fp16", 128)  # the flagship's workload formats
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
        "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


# ---- helpers and fixtures -------------------------------------------------------------


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch) -> Path:
    """A private, empty TLMSIM_CACHE for each test (outside tmp_path)."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TLMSIM_CACHE", str(root))
    monkeypatch.setattr(graph_cache, "_warned", set())
    return root


def model_dir(path: Path, config=None, **changes) -> Path:
    """A folder holding only config.json: ``config`` as is, or TINY with ``changes``."""
    path.mkdir(parents=True, exist_ok=True)
    data = config if config is not None else {**TINY, **changes}
    (path / "config.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def run_args(model, tmp_path: Path) -> list[str]:
    """A short flagship run on ``model``."""
    return ["run", str(FLAGSHIP), "--model", str(model), "--out", str(tmp_path / "out"),
            "--set", "workload.decode_tokens=1", "--set", "workload.prefill_tokens=4"]


def same_graph(a, b) -> bool:
    """Nodes (in order, with attributes), edges and graph attributes are all equal."""
    attrs = lambda g: {k: v for k, v in g.graph.items() if k != "model_source"}  # noqa: E731
    return (list(a.nodes(data=True)) == list(b.nodes(data=True))
            and list(a.edges(data=True)) == list(b.edges(data=True)) and attrs(a) == attrs(b))


def weight_bytes(graph) -> int:
    return sum(d["weight_nbytes"] for _, d in graph.nodes(data=True) if d["kind"] == "linear")


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tlmsim.cache"]


@pytest.fixture(scope="module")
def llama_fresh():
    """LLaMA-7B's traced graph (format-free, as cached), freshly extracted, traced once for the module."""
    return hf_model._extract(resolve_model("llama-7b"))


def with_formats(traced):
    """What layer_graph makes of a traced graph: the flagship's formats applied."""
    graph = copy.deepcopy(traced)
    assign_weights(graph, hf_model._weight_info("llama-7b", None, *FORMATS))
    graph.graph["source"] = "config"
    return graph


@pytest.fixture
def extractions(monkeypatch, llama_fresh) -> list[str]:
    """Record each extraction; LLaMA-7B's is served from ``llama_fresh`` (tracing it takes seconds)."""
    calls, real = [], hf_model._extract

    def extract(source, *args):
        calls.append(source.name)
        return copy.deepcopy(llama_fresh) if source.name == "llama-7b" else real(source, *args)

    monkeypatch.setattr(hf_model, "_extract", extract)
    return calls


def no_extraction(monkeypatch) -> None:
    """From now on a cache miss fails the test."""
    def fail(*args):
        raise AssertionError("the graph was extracted, not loaded from the cache")
    monkeypatch.setattr(hf_model, "_extract", fail)


def rewrite(path: Path, edit_header=None, edit_payload=None, fix_checksum=True) -> None:
    """Rewrite a valid cache file with an edited header and/or payload."""
    head, _, payload = gzip.decompress(path.read_bytes()).partition(b"\n")
    header = json.loads(head)
    if edit_payload:
        payload = edit_payload(payload)
    if fix_checksum:
        header["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    if edit_header:
        edit_header(header)
    path.write_bytes(gzip.compress(json.dumps(header).encode() + b"\n" + payload))


class PlantedCode:
    """Unpickling this runs a shell command (what a planted pickle cache file could do)."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


# ---- (a) planted pickles never execute ---------------------------------------------------


@pytest.mark.parametrize("wrapping", ["raw pickle", "gzipped pickle"])
def test_a_planted_pickle_is_never_executed_and_llama_is_simulated(tmp_path, extractions, llama_fresh, caplog,
                                                                    wrapping):
    sentinel = tmp_path / "pwned"
    planted = pickle.dumps(PlantedCode(sentinel))
    path = cache_path("llama-7b", *FORMATS)
    path.parent.mkdir(parents=True)
    path.write_bytes(planted if wrapping == "raw pickle" else gzip.compress(planted))
    path.with_name(path.name.replace(graph_cache.SUFFIX, ".pickle")).write_bytes(planted)  # the old cache name
    graph = layer_graph("llama-7b", *FORMATS)
    assert not sentinel.exists()
    assert same_graph(graph, with_formats(llama_fresh)) and graph.number_of_nodes() == 645
    assert extractions == ["llama-7b"] and "rebuilding it" in cache_warnings(caplog)[0]
    assert gzip.decompress(path.read_bytes()).startswith(b'{"format": "tlmsim-layer-graph"')


def test_a_planted_pickle_is_never_executed_by_a_run(tmp_path):
    sentinel = tmp_path / "pwned"
    tiny = model_dir(tmp_path / "tiny")
    path = cache_path(str(tiny), *FORMATS)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(PlantedCode(sentinel)))
    assert main(["-q", *run_args(tiny, tmp_path)]) == 0
    assert not sentinel.exists()
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["weights"]["total_bytes"] == weight_bytes(layer_graph(str(tiny), *FORMATS))


# ---- (b) a swapped file is detected ------------------------------------------------------


def test_a_cache_file_of_another_model_copied_onto_llamas_is_rebuilt(tmp_path, extractions, llama_fresh, caplog,
                                                                      monkeypatch):
    tiny = model_dir(tmp_path / "tiny")
    layer_graph(str(tiny), *FORMATS)
    llama_path = cache_path("llama-7b", *FORMATS)
    shutil.copyfile(cache_path(str(tiny), *FORMATS), llama_path)
    graph = layer_graph("llama-7b", *FORMATS)
    assert graph.number_of_nodes() == 645 and graph.graph["num_layers"] == 32
    assert weight_bytes(graph) == weight_bytes(with_formats(llama_fresh))
    assert any("built from other inputs" in w for w in cache_warnings(caplog))
    no_extraction(monkeypatch)
    assert same_graph(layer_graph("llama-7b", *FORMATS), with_formats(llama_fresh))  # the rebuilt file is a hit


# ---- (c) damaged files are rebuilt, then hit -----------------------------------------------


DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "random bytes": lambda p: p.write_bytes(random.Random(0).randbytes(4096)),
    "gzip of text": lambda p: p.write_bytes(gzip.compress(b"hello\nworld")),
    "header only": lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes()).partition(b"\n")[0])),
    "payload edited": lambda p: rewrite(p, edit_payload=lambda b: b.replace(b'"num_layers":2', b'"num_layers":3'),
                                        fix_checksum=False),
    "unknown tag": lambda p: rewrite(p, edit_payload=lambda b: b.replace(b'{"sym":', b'{"pickle":', 1)),
    "other version": lambda p: rewrite(p, edit_header=lambda h: h.update(tlmsim_version="0.0.1")),
    "a folder": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_cache_file_is_rebuilt_with_a_warning_then_hit(tmp_path, caplog, monkeypatch, damage):
    tiny = str(model_dir(tmp_path / "tiny"))
    fresh = layer_graph(tiny, *FORMATS)
    path = cache_path(tiny, *FORMATS)
    DAMAGE[damage](path)
    caplog.clear()
    assert same_graph(layer_graph(tiny, *FORMATS), fresh)
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1 and ("rebuilding it" in warnings[0] or "cannot write" in warnings[0]), warnings
    if damage != "a folder":  # a folder in the way cannot be replaced: that run stays uncached
        no_extraction(monkeypatch)
        caplog.clear()
        assert same_graph(layer_graph(tiny, *FORMATS), fresh)
        assert cache_warnings(caplog) == []


# ---- (d) an unwritable cache runs uncached -------------------------------------------------


@pytest.mark.parametrize("where", ["under a file", "is a file"])
def test_an_unwritable_cache_runs_uncached_with_one_warning(tmp_path, monkeypatch, caplog, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLMSIM_CACHE", str(blocker / "cache" if where == "under a file" else blocker))
    tiny = str(model_dir(tmp_path / "tiny"))
    first = layer_graph(tiny, *FORMATS)
    second = layer_graph(tiny, *FORMATS)
    assert same_graph(first, second) and first.graph["num_layers"] == 2
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1 and "running without the cache" in warnings[0]
    assert blocker.read_text() == "not a folder"


def test_a_run_with_an_unwritable_cache_succeeds(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("TLMSIM_CACHE", str(blocker / "cache"))
    assert main(["-q", *run_args(model_dir(tmp_path / "tiny"), tmp_path)]) == 0
    assert (tmp_path / "out" / "result.json").is_file()


# ---- the cache format itself ---------------------------------------------------------------


def test_llama_loaded_from_the_cache_equals_a_fresh_extraction(llama_fresh, extractions, monkeypatch):
    layer_graph("llama-7b", *FORMATS)  # a miss: writes the file
    no_extraction(monkeypatch)
    assert same_graph(layer_graph("llama-7b", *FORMATS), with_formats(llama_fresh))


def test_a_cache_file_is_gzipped_json_with_a_checked_header(tmp_path):
    tiny = str(model_dir(tmp_path / "tiny"))
    layer_graph(tiny, *FORMATS)
    head, _, payload = gzip.decompress(cache_path(tiny, *FORMATS).read_bytes()).partition(b"\n")
    header = json.loads(head)
    assert header["format"] == "tlmsim-layer-graph" and header["format_version"] == graph_cache.FORMAT_VERSION
    assert header["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert header["inputs"]["config_sha256"] == hashlib.sha256((Path(tiny) / "config.json").read_bytes()).hexdigest()
    assert {"torch", "transformers", "code_sha256"} <= set(header["inputs"])
    assert "weight_format" not in header["inputs"]  # the traced graph is format-free: formats apply on load
    assert json.loads(payload)["nodes"][0][0] == "model.embed_tokens"


def test_one_cache_file_serves_every_weight_format(tmp_path, monkeypatch):
    tiny = str(model_dir(tmp_path / "tiny"))
    dense = layer_graph(tiny, "fp16")
    no_extraction(monkeypatch)
    sparse = layer_graph(tiny, *FORMATS)
    assert cache_path(tiny, "fp16") == cache_path(tiny, *FORMATS)
    q = "model.layers.0.self_attn.q_proj"
    assert dense.nodes[q]["weight_nbytes"] == 64 * 64 * 2  # fp16
    assert sparse.nodes[q]["weight_nbytes"] == 64 * (32 * 6 // 8 + 1 * 2)  # 2:4 INT4: 32 kept x 6 bits + 1 scale


def test_a_cache_hit_imports_neither_torch_nor_transformers(tmp_path):
    tiny = str(model_dir(tmp_path / "tiny"))
    layer_graph(tiny, *FORMATS)
    code = (f"import sys; from tlmsim.workloads.hf_model import layer_graph; "
            f"layer_graph({tiny!r}, *{FORMATS!r}); "
            f"print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_changed_config_is_a_new_cache_entry(tmp_path):
    folder = model_dir(tmp_path / "tiny")
    first = layer_graph(str(folder), *FORMATS)
    model_dir(folder, num_hidden_layers=3)
    assert layer_graph(str(folder), *FORMATS).graph["num_layers"] == 3
    assert first.graph["num_layers"] == 2


# ---- (e) local folders always win over shipped names ------------------------------------------


@pytest.mark.parametrize("spelling", ["llama-7b", "./llama-7b"])
def test_a_local_folder_named_like_a_shipped_model_is_used(tmp_path, monkeypatch, spelling):
    model_dir(tmp_path / "llama-7b")
    monkeypatch.chdir(tmp_path)
    source = resolve_model(spelling)
    assert source.kind == "local"
    assert source.config_sha256 == hashlib.sha256((tmp_path / "llama-7b" / "config.json").read_bytes()).hexdigest()
    graph = layer_graph(spelling, *FORMATS)
    assert graph.graph["num_layers"] == 2 and graph.graph["model_source"]["kind"] == "local"


def test_a_run_with_model_llama_7b_uses_the_local_folder(tmp_path, monkeypatch):
    model_dir(tmp_path / "llama-7b")
    monkeypatch.chdir(tmp_path)
    assert main(["-q", *run_args("llama-7b", tmp_path)]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["weights"]["total_bytes"] < 10**6  # the tiny model, not LLaMA-7B's 2.7 GB


def test_a_shipped_name_without_a_folder_is_the_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = resolve_model("llama-7b")
    assert source.kind == "shipped" and source.path.name == "llama-7b.json"
    assert source.record()["config_sha256"] == hashlib.sha256(source.path.read_bytes()).hexdigest()


def test_a_home_relative_path_is_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    model_dir(tmp_path / "m")
    assert resolve_model("~/m").path == tmp_path / "m"


@pytest.mark.parametrize("model,fragment", [
    ("./nope", "no such folder"),
    ("nope/", "no such folder"),
    ("llama-9000", "is neither a shipped model"),
    ("empty", "config.json not found"),
    ("file.txt", "is a file, not a model folder"),
], ids=["missing relative path", "missing path with a slash", "unknown name", "folder without config.json",
        "a file"])
def test_model_names_and_paths_that_do_not_resolve(tmp_path, user_error, model, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    user_error(run_args(model, tmp_path), fragment)


# ---- (f) configs the simulator cannot use --------------------------------------------------------


BAD_CONFIGS = [
    ("not JSON", "{ model_type: llama", "is not valid JSON"),
    ("not UTF-8", b"\xff\xfe{}", "is not valid JSON"),
    ("a list", [1, 2], "holds a JSON list, not an object"),
    ("no model_type", {k: v for k, v in TINY.items() if k != "model_type"}, "has no model_type"),
    ("unknown model_type", {**TINY, "model_type": "nosuchmodel"}, "'nosuchmodel' is unknown to transformers"),
    ("BERT encoder", {**TINY, "model_type": "bert"}, "'bert' is not a causal (decoder-only)"),
    ("T5 encoder-decoder", {"model_type": "t5"}, "'t5' is not a causal (decoder-only)"),
    ("100000 layers", {**TINY, "num_hidden_layers": 100_000}, "num_hidden_layers = 100,000 exceeds"),
    ("hidden 10**7", {**TINY, "hidden_size": 10**7, "num_attention_heads": 1}, "hidden_size = 10,000,000 exceeds"),
    ("vocab 10**9", {**TINY, "vocab_size": 10**9}, "vocab_size = 1,000,000,000 exceeds"),
    ("zero layers", {**TINY, "num_hidden_layers": 0}, "num_hidden_layers"),
    ("layers as text", {**TINY, "num_hidden_layers": "many"}, "num_hidden_layers"),
    ("a norm with no mapping", {**TINY, "model_type": "nemotron", "head_dim": 16},
     "module 'model.layers.0.input_layernorm' of type NemotronLayerNorm1P has weights but no hardware mapping"),
    ("dims equal to the trace sizes", {**TINY, "hidden_size": 56, "num_attention_heads": 7, "num_key_value_heads": 7},
     "collide with the trace sizes"),
    ("widths not a multiple of M", {**TINY, "hidden_size": 66, "num_attention_heads": 3, "num_key_value_heads": 3},
     "cannot be stored as int4-2:4"),
    ("odd rotary dimension", {**TINY, "hidden_size": 68}, "RoPE requires an even rotary dimension"),
]


@pytest.mark.parametrize("case,config,fragment", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_model_configs_the_simulator_refuses(tmp_path, user_error, case, config, fragment):
    folder = tmp_path / "model"
    folder.mkdir()
    raw = config if isinstance(config, (bytes, str)) else json.dumps(config)
    (folder / "config.json").write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    started = time.perf_counter()
    err = user_error(run_args(folder, tmp_path), fragment)
    assert time.perf_counter() - started < 5, "refused too slowly"
    if "cannot be traced" in fragment or "no hardware mapping" in fragment:
        assert "model types known to work: llama" in err
    if "no hardware mapping" in fragment:  # the family is named too
        assert "(model_type 'nemotron', NemotronForCausalLM)" in err


def test_absurd_sizes_report_the_estimate_and_the_limit(tmp_path, user_error):
    folder = model_dir(tmp_path / "model", num_hidden_layers=100_000, hidden_size=8192, vocab_size=10**6)
    err = user_error(run_args(folder, tmp_path), "limit of 256")
    assert "layer graph 40.0 GB for 4,000,008 nodes, limit 1.0 GB" in err and "TB in fp16, limit 4.0 TB" in err


def test_dropout_models_trace(tmp_path):
    gpt2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 256, "n_positions": 512,
            "bos_token_id": 0, "eos_token_id": 0}
    graph = layer_graph(str(model_dir(tmp_path / "gpt2", gpt2)), *FORMATS)
    assert graph.graph["model_type"] == "gpt2" and not [n for n in graph if "drop" in n]


# ---- (g) compressed-model files --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="module")
def compressed(tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compressed") / "c"
    out.mkdir()
    compress_model(tiny_model, parse_format("int4-2:4", 64), out)
    return out


def _index(folder: Path, weight_map) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _drop_a_tensor(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["model.layers.0.mlp.down_proj.weight"]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _manifest_entry(folder: Path, value) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["layers"]["model.layers.0.mlp.up_proj"] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))


FILE_DAMAGE = {
    "corrupt model.safetensors": (lambda d: (d / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0garbage"),
                                  "model.safetensors is corrupt"),
    "truncated model.safetensors": (lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:200]), "model.safetensors is corrupt"),
    "corrupt index": (lambda d: (d / "model.safetensors.index.json").write_text("{oops"),
                      "model.safetensors.index.json is corrupt"),
    "index without weight_map": (lambda d: (d / "model.safetensors.index.json").write_text("[]"),
                                 "model.safetensors.index.json is corrupt"),
    "missing shard": (lambda d: _index(d, {"lm_head.weight": "model-00002-of-00002.safetensors"}),
                      "model-00002-of-00002.safetensors not found"),
    "shard outside the folder": (lambda d: _index(d, {"lm_head.weight": "../../etc/passwd"}), "bad shard name"),
}
RUN_ONLY = {
    "corrupt packed.safetensors": (lambda d: (d / "packed.safetensors").write_bytes(os.urandom(64)),
                                   "packed.safetensors is corrupt"),
    "corrupt manifest": (lambda d: (d / "manifest.json").write_bytes(b"\x00\x01"), "manifest.json is not valid JSON"),
    "manifest entry with text numbers": (lambda d: _manifest_entry(d, {"out_features": "256"}), "bad entry"),
    "manifest entry not an object": (lambda d: _manifest_entry(d, [1, 2]), "bad entry"),
}


@pytest.mark.parametrize("case", {**FILE_DAMAGE, **RUN_ONLY}, ids=list({**FILE_DAMAGE, **RUN_ONLY}))
def test_run_on_a_compressed_folder_with_a_broken_file(tmp_path, user_error, compressed, case):
    damage, fragment = {**FILE_DAMAGE, **RUN_ONLY}[case]
    folder = shutil.copytree(compressed, tmp_path / "model")
    damage(folder)
    user_error(run_args(folder, tmp_path), fragment)


COMPRESS_ONLY = {
    "no weights at all": (lambda d: (d / "model.safetensors").unlink(), "holds no HF model weights"),
    "a tensor missing": (_drop_a_tensor, "model.layers.0.mlp.down_proj.weight"),
    "config not JSON": (lambda d: (d / "config.json").write_text("{"), "config.json is not valid JSON"),
    "an encoder": (lambda d: (d / "config.json").write_text(json.dumps({"model_type": "bert"})), "not a causal"),
    "no tokenizer": (lambda d: [p.unlink() for p in d.glob("tokenizer*")], "no usable tokenizer"),
}


@pytest.mark.parametrize("case", {**FILE_DAMAGE, **COMPRESS_ONLY}, ids=list({**FILE_DAMAGE, **COMPRESS_ONLY}))
def test_compress_of_a_folder_with_a_broken_file(tmp_path, user_error, tiny_model, case):
    damage, fragment = {**FILE_DAMAGE, **COMPRESS_ONLY}[case]
    folder = shutil.copytree(tiny_model, tmp_path / "model")
    damage(folder)
    user_error(["compress", folder, "--nm", "2:4", "--out", tmp_path / "c"], fragment)


@pytest.mark.parametrize("nm,fragment", [
    ("1:3", "M=3 is not a power of two"),
    ("3:6", "M=6 is not a power of two"),
    ("1:256", "not a multiple of M=256"),
])
def test_compress_refuses_an_n_m_pattern_it_cannot_apply(tmp_path, user_error, tiny_model, nm, fragment):
    user_error(["compress", tiny_model, "--nm", nm, "--out", tmp_path / "c"], fragment)


def test_compress_model_raises_config_errors_not_os_errors(tmp_path, tiny_model):
    from tlmsim.engine.errors import ConfigError

    folder = shutil.copytree(tiny_model, tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="model.safetensors is corrupt"):
        compress_model(folder, parse_format("int4-2:4"), tmp_path / "out")


def test_logging_of_a_cache_warning_is_one_line(tmp_path, caplog):
    tiny = str(model_dir(tmp_path / "tiny"))
    layer_graph(tiny, *FORMATS)
    cache_path(tiny, *FORMATS).write_bytes(b"junk\nmore junk")
    with caplog.at_level(logging.WARNING, logger="tlmsim.cache"):
        layer_graph(tiny, *FORMATS)
    (warning,) = cache_warnings(caplog)
    assert "\n" not in warning and warning.startswith("warning: graph cache: ")
