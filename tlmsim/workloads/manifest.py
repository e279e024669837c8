"""Read and check a compressed model folder: ``manifest.json`` against its safetensors.

``tlmsim compress`` (``compressed_model.py``) writes a folder with the model as HF
safetensors, ``packed.safetensors`` (the accelerator's bit layout) and
``manifest.json`` (per layer its shape, format and packed bytes). ``load_manifest``
reads the manifest and checks it against both safetensors files, reading only their
headers; every problem is a one-line ``ModelError`` naming the file and the fix.
Nothing here imports torch, so a cached run of a compressed model never loads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from tlmsim.workloads.formats import WeightFormat
from tlmsim.workloads.model_source import ModelError, one_line

MANIFEST = "manifest.json"
PACKED = "packed.safetensors"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
ARRAYS = ("values", "indices", "scales", "zeros")
MAX_MANIFEST_BYTES = 64 * 2**20  # a 70B model's manifest is well under 1 MiB
_ENCODINGS = ("values", "int", "ternary")
_INDEX_ENCODINGS = ("per_weight", "combinatorial")


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
        raise ModelError(f"{path} not found: {out_dir} is not a compressed model; "
                         f"create it with compress_model(model_dir, fmt, out_dir) or tlmsim compress")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES // 2**20} MiB")
        manifest = json.loads(raw)
    except OSError as err:
        raise ModelError(f"{path} cannot be read ({err.strerror or err}); check its permissions") from None
    except (ValueError, RecursionError) as err:
        raise ModelError(f"{path} is not valid JSON ({one_line(err)}); re-run compress_model "
                         f"(tlmsim compress) to rewrite it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), dict):
        raise ModelError(f"{path} has no 'layers' table; re-run compress_model (tlmsim compress) to rewrite it")
    return manifest


def _record(out_dir: Path, name: str, entry) -> LayerRecord:
    where = f"{out_dir / MANIFEST}: layer {name!r}"
    try:
        fmt = _format(entry["format"])
        record = LayerRecord(name, _count(entry["out_features"]), _count(entry["in_features"]), fmt,
                             _count(entry["packed_nbytes"]))
        expected = fmt.packed_nbytes(record.out_features, record.in_features)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{where} has a bad entry ({one_line(err)}); re-run compress_model") from None
    if expected != record.packed_nbytes:
        raise ModelError(
            f"{where} records {record.packed_nbytes} packed bytes but format {fmt.name!r} at shape "
            f"[{record.out_features}, {record.in_features}] needs {expected}; re-run compress_model")
    return record


def _format(fields) -> WeightFormat:
    """A WeightFormat from its manifest fields, with every field's type checked."""
    if not isinstance(fields, dict):
        raise TypeError("'format' is not an object")
    fmt = WeightFormat(**fields)  # unknown or missing fields are TypeErrors
    if not isinstance(fmt.name, str) or fmt.encoding not in _ENCODINGS or fmt.index_encoding not in _INDEX_ENCODINGS:
        raise ValueError(f"unknown format {fields!r}")
    for value in (fmt.value_bits, fmt.scale_bits, fmt.n, fmt.m, fmt.group_size):
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"format field {value!r} is not a non-negative integer")
    if type(fmt.symmetric) is not bool:
        raise ValueError("format field 'symmetric' is not true/false")
    return fmt


def _count(value) -> int:
    """A positive integer field of the manifest (JSON numbers only, no strings)."""
    if type(value) is not int or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


def _check_packed(out_dir: Path, records: dict[str, LayerRecord]) -> None:
    """Every recorded layer's packed arrays exist in packed.safetensors and add up."""
    path = out_dir / PACKED
    sizes = safetensors_shapes(path, f"re-run compress_model (tlmsim compress) to rewrite {PACKED}")
    for name, record in records.items():
        keys = [f"{name}.{field}" for field in ARRAYS]
        missing = [key for key in keys if key not in sizes]
        if missing:
            raise ModelError(f"{path} lacks {missing[0]!r} listed in {MANIFEST}; re-run compress_model")
        total = sum(math.prod(sizes[key]) for key in keys)
        if total != record.packed_nbytes:
            raise ModelError(f"{path}: layer {name!r} has {total} packed bytes, {MANIFEST} says "
                             f"{record.packed_nbytes}; re-run compress_model")


def _check_model_shapes(out_dir: Path, records: dict[str, LayerRecord]) -> None:
    """Every recorded layer's HF weight has the recorded [out, in] shape."""
    shapes = hf_weight_shapes(out_dir, "re-save the model or re-run compress_model")
    for name, record in records.items():
        shape = shapes.get(f"{name}.weight")
        if shape is not None and tuple(shape) != (record.out_features, record.in_features):
            raise ModelError(
                f"{out_dir}: weight {name}.weight has shape {tuple(shape)} but {MANIFEST} says "
                f"[{record.out_features}, {record.in_features}]; re-run compress_model on this model")


def hf_weight_shapes(folder: Path, fix: str) -> dict[str, list[int]]:
    """Shapes of every tensor in a HF model folder's safetensors (single file or shards)."""
    shapes = {}
    for path in model_files(folder, fix):
        shapes.update(safetensors_shapes(path, fix))
    return shapes


def model_files(folder: Path, fix: str) -> list[Path]:
    """The HF safetensors files of a model folder: the index's shards, or model.safetensors."""
    index = folder / INDEX
    if index.is_file():
        return [folder / shard for shard in _index_shards(index, fix)]
    single = folder / SINGLE
    if not single.is_file():
        raise ModelError(f"{single} not found: {folder} holds no HF model weights; {fix}")
    return [single]


def _index_shards(index: Path, fix: str) -> list[str]:
    """Shard file names listed by a model.safetensors.index.json."""
    try:
        weight_map = json.loads(index.read_bytes())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except OSError as err:
        raise ModelError(f"{index} cannot be read ({err.strerror or err}); {fix}") from None
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError) as err:
        raise ModelError(f"{index} is corrupt (not JSON with a 'weight_map' of tensor -> shard file: "
                         f"{one_line(err)}); {fix}") from None
    bad = [s for s in shards if not isinstance(s, str) or Path(s).name != s or s in ("", ".", "..")]
    if bad or not shards:
        raise ModelError(f"{index} lists {'no shards' if not shards else f'a bad shard name {bad[0]!r}'} "
                         f"(shards are file names next to the index); {fix}")
    return shards


def safetensors_shapes(path: Path, fix: str) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header, with a clear error for missing/corrupt files."""
    if not path.is_file():
        raise ModelError(f"{path} not found; {fix}")
    try:
        with safe_open(str(path), framework="np") as handle:
            # safe_open is not a mapping: it has keys() but no __iter__, so `for key in handle` raises TypeError
            return {key: handle.get_slice(key).get_shape() for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{path} is corrupt or unreadable ({one_line(err)}); {fix}") from None
