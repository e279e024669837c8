"""Which model ``workload.model`` names: a shipped config or a local folder.

The rule, so that a folder is never silently shadowed by a shipped name:

* anything that exists as a path, or contains a path separator, or starts with ``.``
  or ``~``, is a local Hugging Face model folder (it must hold ``config.json``);
* anything else is the name of a config shipped in ``tlmsim/workloads/model_configs/``.

``resolve_model`` also reads and checks the config JSON (valid JSON, an object, with a
``model_type``) and records its sha256, so a result can say exactly which config it
simulated. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tlmsim.engine.errors import ConfigError

SHIPPED = Path(__file__).parent / "model_configs"
MAX_CONFIG_BYTES = 16 * 2**20  # a real config.json is a few KB; anything this big is not one


class ModelError(ConfigError, ValueError):
    """The model's config or files cannot be used; the message names the file and the fix.

    Also a ValueError, which is what the compressed-model loaders raised before."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model's config came from, and the sha256 of its bytes."""

    name: str  # as the user wrote it (workload.model)
    kind: Literal["shipped", "local"]
    path: Path  # the shipped JSON file, or the local folder
    config_sha256: str
    config: dict = field(repr=False, compare=False, hash=False)  # the parsed config JSON

    @property
    def config_file(self) -> Path:
        """The config JSON this source was read from."""
        return self.path if self.kind == "shipped" else self.path / "config.json"

    def record(self) -> dict:
        """Plain-data description for result.json."""
        return {"name": self.name, "kind": self.kind, "path": str(self.path.resolve()),
                "config_sha256": self.config_sha256}


def shipped_models() -> list[str]:
    """Names of the model configs shipped with tlmsim."""
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def is_local_path(model: str) -> bool:
    """True if ``model`` must be read as a folder path rather than a shipped name."""
    separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
    return (os.path.exists(os.path.expanduser(model)) or any(sep in model for sep in separators)
            or model.startswith((".", "~")))


def resolve_model(model: str) -> ModelSource:
    """The source ``model`` names (see the module docstring for the rule)."""
    if not model.strip() or "\0" in model:
        raise ConfigError(f"workload.model {model!r} is not a model name or folder; "
                          f"use a shipped name ({', '.join(shipped_models())}) or a folder path")
    if is_local_path(model):
        return _local(model)
    if model in shipped_models():
        path = SHIPPED / f"{model}.json"
        data, digest = read_config_json(path, f"workload.model {model}")
        return ModelSource(model, "shipped", path, digest, data)
    raise ConfigError(f"workload.model '{model}' is neither a shipped model ({', '.join(shipped_models())}) "
                      f"nor a directory with config.json; fix the name or path")


def _local(model: str) -> ModelSource:
    folder = Path(os.path.expanduser(model))
    label = f"workload.model {model}"
    if not folder.exists():
        raise ModelError(f"{label}: no such folder; give a local Hugging Face model folder "
                         f"or a shipped model name ({', '.join(shipped_models())})")
    if not folder.is_dir():
        raise ModelError(f"{label} is a file, not a model folder; give the folder that holds config.json")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{label}: {folder / 'config.json'} not found; "
                         f"a model folder needs the config.json of a Hugging Face model")
    data, digest = read_config_json(folder / "config.json", label)
    return ModelSource(model, "local", folder, digest, data)


def read_config_json(path: Path, label: str) -> tuple[dict, str]:
    """Parse a model config JSON file; return (fields, sha256 of its bytes)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ModelError(f"{label}: cannot read {path} ({err.strerror or err}); check its permissions") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelError(f"{label}: {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, "
                         f"so it is not a model config; fix or regenerate it")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise ModelError(f"{label}: {path} is not valid JSON ({one_line(err)}); fix or regenerate it") from None
    if not isinstance(data, dict):
        raise ModelError(f"{label}: {path} holds a JSON {type(data).__name__}, not an object of config "
                         f"fields; fix or regenerate it")
    if not isinstance(data.get("model_type"), str) or not data["model_type"]:
        raise ModelError(f"{label}: {path} has no model_type (e.g. \"model_type\": \"llama\"); "
                         f"add it or regenerate the config")
    return data, hashlib.sha256(raw).hexdigest()


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An error message joined into one line and shortened: error output stays one line."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
