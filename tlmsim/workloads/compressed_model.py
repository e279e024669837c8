"""Compress a Hugging Face causal LM and save it with its packed weights and a manifest.

``compress_model`` prunes (N:M) and quantizes every ``nn.Linear`` inside the decoder
layers; embeddings and ``lm_head`` stay fp16. It writes to ``out_dir``:

* the model with the dequantized weights as ordinary HF safetensors (float32, because
  an INT4 code times an fp16 scale is not always an fp16 number; pruned weights are
  exact zeros), so ``AutoModelForCausalLM.from_pretrained(out_dir)`` loads and runs it;
* ``packed.safetensors``: per recorded layer, uint8 arrays ``<name>.values``,
  ``.indices``, ``.scales``, ``.zeros`` in the layout of ``packing.py``;
* ``manifest.json``: per layer its shape, format fields and packed byte count (taken
  from the packed arrays), plus the tool name and version.

``load_manifest`` (in ``manifest.py``, re-exported here) reads the manifest back and
checks it against both safetensors files. Every problem with the input or output files
is a one-line ``ModelError`` (a ``ConfigError``) naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from tlmsim.workloads.formats import WeightFormat, parse_format
from tlmsim.workloads.manifest import (  # noqa: F401  (re-exported: the loading half lives there)
    ARRAYS,
    INDEX,
    MANIFEST,
    PACKED,
    SINGLE,
    LayerRecord,
    hf_weight_shapes,
    load_manifest,
    safetensors_shapes,
    tool_version,
)
from tlmsim.workloads.model_source import ModelError, one_line, read_config_json
from tlmsim.workloads.packing import PackedWeight, pack_quantized
from tlmsim.workloads.pruning import Criterion, prune_mask
from tlmsim.workloads.quantization import QuantizedWeight, quantize

FP16 = parse_format("fp16")
_DECODER_LAYER = re.compile(r"(^|\.)layers\.\d+\.")


# ---- compressing in memory -------------------------------------------------------------


def decoder_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """All nn.Linear modules inside the decoder layers (not lm_head), by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and _DECODER_LAYER.search(name)
    }


def fp16_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Embedding and lm_head weights, which stay fp16, by module name."""
    names = {id(module): name for name, module in model.named_modules()}
    found = {}
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            found[names[id(module)]] = module.weight
    return found


def compress_weight(
    weight: torch.Tensor, fmt: WeightFormat, criterion: Criterion = "magnitude", act_norm: torch.Tensor | None = None
) -> QuantizedWeight:
    """Prune a weight [out, in] N:M (if the format is sparse), then quantize the kept weights."""
    mask = prune_mask(weight, fmt.n, fmt.m, criterion, act_norm) if fmt.sparse else None
    return quantize(weight, fmt, mask)


@torch.no_grad()
def compress_module(
    model: torch.nn.Module,
    fmt: WeightFormat,
    criterion: Criterion = "magnitude",
    act_norms: dict[str, torch.Tensor] | None = None,
) -> dict[str, tuple[LayerRecord, PackedWeight]]:
    """Compress `model` in place (weights become their dequantized values); return the
    record and packed arrays of every decoder linear, embedding and lm_head."""
    result = {}
    for name, linear in decoder_linears(model).items():
        norm = None if act_norms is None else act_norms[name]
        result[name] = _compress_parameter(name, linear.weight, fmt, criterion, norm)
    for name, weight in fp16_weights(model).items():
        result[name] = _compress_parameter(name, weight, FP16, "magnitude", None)
    return result


def _compress_parameter(name, weight, fmt, criterion, act_norm) -> tuple[LayerRecord, PackedWeight]:
    qw = compress_weight(weight.detach().float(), fmt, criterion, act_norm)
    weight.copy_(qw.dequantize().to(weight.dtype))
    packed = pack_quantized(qw)
    out_features, in_features = weight.shape
    return LayerRecord(name, out_features, in_features, fmt, packed.nbytes), packed


@torch.no_grad()
def activation_norms(
    model, tokenizer, texts: list[str], seq_len: int = 256, max_tokens: int = 4096
) -> dict[str, torch.Tensor]:
    """Per decoder linear, the L2 norm of each input channel over calibration tokens (Wanda)."""
    sums, hooks = {}, []
    for name, linear in decoder_linears(model).items():
        sums[name] = torch.zeros(linear.in_features)
        hooks.append(linear.register_forward_pre_hook(_accumulate_squares(sums, name)))
    try:
        for window in _calibration_windows(tokenizer, texts, seq_len, max_tokens):
            model(input_ids=window[None, :])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: total.sqrt() for name, total in sums.items()}


def _accumulate_squares(sums: dict[str, torch.Tensor], name: str):
    def hook(module, inputs):
        x = inputs[0].detach().float()
        sums[name] += x.reshape(-1, x.shape[-1]).pow(2).sum(dim=0)

    return hook


def _calibration_windows(tokenizer, texts: list[str], seq_len: int, max_tokens: int) -> list[torch.Tensor]:
    """Token windows of at most seq_len from the texts, max_tokens in total."""
    ids = torch.cat([tokenizer(text, return_tensors="pt").input_ids[0] for text in texts])[:max_tokens]
    if ids.numel() == 0:
        raise ValueError("calibration texts are empty; Wanda needs some text to measure activations")
    return list(ids.split(seq_len))


# ---- saving and loading -----------------------------------------------------------------


def compress_model(
    model_dir: str | Path,
    fmt: WeightFormat,
    out_dir: str | Path,
    criterion: Criterion = "magnitude",
    calibration_texts: list[str] | None = None,
) -> dict[str, LayerRecord]:
    """Compress the HF model in `model_dir` to `out_dir` (model, packed arrays, manifest).
    Wanda calibrates on `calibration_texts`, by default the shipped corpus."""
    model_dir = Path(model_dir)
    check_nm(fmt)
    check_input_folder(model_dir)
    model, tokenizer = _load_input_model(model_dir)
    check_format_fits(model, fmt)
    norms = None
    if criterion == "wanda":
        norms = activation_norms(model, tokenizer, calibration_texts or [_default_calibration_text()])
    layers = compress_module(model, fmt, criterion, norms)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_packed(out_dir, layers)
    write_manifest(out_dir, layers, fmt, criterion)
    return {name: record for name, (record, _) in layers.items()}


def check_nm(fmt: WeightFormat) -> None:
    """N:M sparsity needs M a power of two: the PE's index mux (and ``tlmsim run``) does."""
    if fmt.sparse and fmt.m & (fmt.m - 1):
        raise ModelError(f"N:M {fmt.n}:{fmt.m}: M={fmt.m} is not a power of two; the accelerator's "
                         f"PE selects one of M inputs, so use e.g. 2:4, 1:4 or 2:8")


def check_input_folder(model_dir: Path) -> None:
    """The input is a HF causal-LM folder with a readable config and intact safetensors."""
    from tlmsim.workloads.hf_model import check_causal_lm

    label = f"compress {model_dir}"
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{label}: {model_dir} has no config.json; pass a local Hugging Face model folder")
    config, _ = read_config_json(model_dir / "config.json", label)
    check_causal_lm(config["model_type"], label)
    has_safetensors = (model_dir / INDEX).is_file() or (model_dir / SINGLE).is_file()
    if has_safetensors or not (model_dir / "pytorch_model.bin").is_file():
        # Read every safetensors header now: transformers' own errors are long or tracebacks.
        hf_weight_shapes(model_dir, "re-save the model with save_pretrained or copy it again")


def _load_input_model(model_dir: Path):
    """The float32 model and its tokenizer; every failure is one line naming the folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tlmsim.workloads.graph import quiet_transformers

    try:
        with quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                               output_loading_info=True)
    except Exception as err:  # transformers raises many types here; all mean "this folder is broken"
        raise ModelError(f"compress {model_dir}: transformers cannot load the model ({type(err).__name__}: "
                         f"{one_line(err)}); fix or re-save the model folder") from None
    missing = [*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))]
    if missing:
        raise ModelError(f"compress {model_dir}: the weight files lack or misshape {len(missing)} tensors "
                         f"(e.g. {sorted(missing)[0]!r}); the folder is incomplete, copy or re-save it")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as err:
        raise ModelError(f"compress {model_dir}: no usable tokenizer ({type(err).__name__}: {one_line(err)}); "
                         f"save the tokenizer into the model folder (tokenizer.save_pretrained)") from None
    return model.eval(), tokenizer


def check_format_fits(model: torch.nn.Module, fmt: WeightFormat) -> None:
    """Every decoder linear's input width is a multiple of M (N:M groups run along inputs)."""
    if not fmt.sparse:
        return
    for name, linear in decoder_linears(model).items():
        if linear.in_features % fmt.m:
            raise ModelError(f"N:M {fmt.n}:{fmt.m}: {name} has {linear.in_features} inputs, not a multiple "
                             f"of M={fmt.m}; choose an M that divides every layer's input width")


def _default_calibration_text() -> str:
    from tlmsim.workloads.perplexity import load_corpus

    return load_corpus("calibration")


def save_packed(out_dir: Path, layers: dict[str, tuple[LayerRecord, PackedWeight]]) -> None:
    """Write every layer's packed arrays to packed.safetensors."""
    arrays = {f"{name}.{field}": getattr(packed, field) for name, (_, packed) in layers.items() for field in ARRAYS}
    save_file(arrays, str(out_dir / PACKED), metadata={"tool": "tlmsim", "version": tool_version()})


def write_manifest(
    out_dir: Path, layers: dict[str, tuple[LayerRecord, PackedWeight]], fmt: WeightFormat, criterion: str
) -> None:
    """Write manifest.json: tool version, settings, and one entry per stored layer."""
    manifest = {
        "tool": "tlmsim",
        "version": tool_version(),
        "format": fmt.name,
        "criterion": criterion,
        "layers": {name: _layer_entry(record, packed) for name, (record, packed) in layers.items()},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _layer_entry(record: LayerRecord, packed: PackedWeight) -> dict:
    return {
        "out_features": record.out_features,
        "in_features": record.in_features,
        "format": dataclasses.asdict(record.fmt),
        "packed_nbytes": packed.nbytes,
        "arrays_nbytes": {field: int(getattr(packed, field).size) for field in ARRAYS},
    }


def load_packed(out_dir: str | Path, name: str) -> PackedWeight:
    """The packed arrays of one layer from packed.safetensors."""
    path = Path(out_dir) / PACKED
    safetensors_shapes(path, "re-run compress_model")  # clear error if missing or corrupt
    with safe_open(str(path), framework="np") as handle:
        # safe_open is not a mapping: it has keys() but no __contains__/__iter__, so `in handle` raises TypeError
        if f"{name}.values" not in handle.keys():  # noqa: SIM118
            raise ModelError(f"{path} has no layer {name!r}; see load_manifest(out_dir) for the stored layers")
        return PackedWeight(*(handle.get_tensor(f"{name}.{field}") for field in ARRAYS))
