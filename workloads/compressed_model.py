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

``load_manifest`` reads the manifest back and checks it against both safetensors files.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from tlmsim.workloads.formats import WeightFormat, parse_format
from tlmsim.workloads.packing import PackedWeight, pack_quantized
from tlmsim.workloads.pruning import Criterion, prune_mask
from tlmsim.workloads.quantization import QuantizedWeight, quantize

MANIFEST = "manifest.json"
PACKED = "packed.safetensors"
ARRAYS = ("values", "indices", "scales", "zeros")
FP16 = parse_format("fp16")
_DECODER_LAYER = re.compile(r"(^|\.)layers\.\d+\.")


@dataclass(frozen=True)
class LayerRecord:
    """One stored weight matrix of a compressed model, as the simulator sizes it."""

    name: str  # module name, e.g. "model.layers.0.self_attn.q_proj"
    out_features: int
    in_features: int
    fmt: WeightFormat
    packed_nbytes: int  # bytes of its packed arrays


def tool_version() -> str:
    """Installed tlmsim version, recorded in manifests."""
    try:
        return importlib.metadata.version("tlmsim")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


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
def activation_norms(model, tokenizer, texts: list[str], seq_len: int = 256, max_tokens: int = 4096) -> dict[str, torch.Tensor]:
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
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


def _default_calibration_text() -> str:
    from tlmsim.workloads.perplexity import load_corpus

    return load_corpus("calibration")


def save_packed(out_dir: Path, layers: dict[str, tuple[LayerRecord, PackedWeight]]) -> None:
    """Write every layer's packed arrays to packed.safetensors."""
    arrays = {f"{name}.{field}": getattr(packed, field) for name, (_, packed) in layers.items() for field in ARRAYS}
    save_file(arrays, str(out_dir / PACKED), metadata={"tool": "tlmsim", "version": tool_version()})


def write_manifest(out_dir: Path, layers: dict[str, tuple[LayerRecord, PackedWeight]], fmt: WeightFormat, criterion: str) -> None:
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


def load_manifest(out_dir: str | Path) -> dict[str, LayerRecord]:
    """Layer records of a compressed model, checked against its packed and HF weights."""
    out_dir = Path(out_dir)
    entries = _read_manifest(out_dir)["layers"]
    records = {name: _record(out_dir, name, entry) for name, entry in entries.items()}
    _check_packed(out_dir, records)
    _check_model_shapes(out_dir, records)
    return records


def _read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.is_file():
        raise ValueError(f"{path} not found: {out_dir} is not a compressed model; create it with compress_model(model_dir, fmt, out_dir)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run compress_model to rewrite it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), dict):
        raise ValueError(f"{path} has no 'layers' table; re-run compress_model to rewrite it")
    return manifest


def _record(out_dir: Path, name: str, entry: dict) -> LayerRecord:
    try:
        fmt = WeightFormat(**entry["format"])
        record = LayerRecord(name, int(entry["out_features"]), int(entry["in_features"]), fmt, int(entry["packed_nbytes"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{out_dir / MANIFEST}: bad entry for layer {name!r} ({err}); re-run compress_model") from None
    expected = fmt.packed_nbytes(record.out_features, record.in_features)
    if expected != record.packed_nbytes:
        raise ValueError(
            f"{out_dir / MANIFEST}: layer {name!r} records {record.packed_nbytes} packed bytes but format "
            f"{fmt.name!r} at shape [{record.out_features}, {record.in_features}] needs {expected}; re-run compress_model"
        )
    return record


def _check_packed(out_dir: Path, records: dict[str, LayerRecord]) -> None:
    """Every recorded layer's packed arrays exist in packed.safetensors and add up."""
    path = out_dir / PACKED
    sizes = _safetensors_shapes(path, f"re-run compress_model to rewrite {PACKED}")
    for name, record in records.items():
        keys = [f"{name}.{field}" for field in ARRAYS]
        missing = [key for key in keys if key not in sizes]
        if missing:
            raise ValueError(f"{path} lacks {missing[0]!r} listed in {MANIFEST}; re-run compress_model")
        total = sum(int(np.prod(sizes[key])) for key in keys)
        if total != record.packed_nbytes:
            raise ValueError(f"{path}: layer {name!r} has {total} packed bytes, {MANIFEST} says {record.packed_nbytes}; re-run compress_model")


def _check_model_shapes(out_dir: Path, records: dict[str, LayerRecord]) -> None:
    """Every recorded layer's HF weight has the recorded [out, in] shape."""
    shapes = {}
    for path in _model_files(out_dir):
        shapes.update(_safetensors_shapes(path, "re-save the model or re-run compress_model"))
    for name, record in records.items():
        shape = shapes.get(f"{name}.weight")
        if shape is not None and tuple(shape) != (record.out_features, record.in_features):
            raise ValueError(
                f"{out_dir}: weight {name}.weight has shape {tuple(shape)} but {MANIFEST} says "
                f"[{record.out_features}, {record.in_features}]; re-run compress_model on this model"
            )


def _model_files(out_dir: Path) -> list[Path]:
    index = out_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted({out_dir / file for file in json.loads(index.read_text())["weight_map"].values()})
    single = out_dir / "model.safetensors"
    if not single.is_file():
        raise ValueError(f"{single} not found: {out_dir} holds no HF model weights; re-run compress_model")
    return [single]


def _safetensors_shapes(path: Path, fix: str) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header, with a clear error for missing/corrupt files."""
    if not path.is_file():
        raise ValueError(f"{path} not found; {fix}")
    try:
        with safe_open(str(path), framework="np") as handle:
            return {key: handle.get_slice(key).get_shape() for key in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is corrupt or unreadable ({err}); {fix}") from None


def load_packed(out_dir: str | Path, name: str) -> PackedWeight:
    """The packed arrays of one layer from packed.safetensors."""
    path = Path(out_dir) / PACKED
    _safetensors_shapes(path, "re-run compress_model")  # clear error if missing or corrupt
    with safe_open(str(path), framework="np") as handle:
        if f"{name}.values" not in handle.keys():
            raise ValueError(f"{path} has no layer {name!r}; see load_manifest(out_dir) for the stored layers")
        return PackedWeight(*(handle.get_tensor(f"{name}.{field}") for field in ARRAYS))
