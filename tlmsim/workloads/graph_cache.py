"""On-disk cache of layer graphs: data only (gzip-compressed JSON), checked on every read.

Tracing a 7B model takes seconds, so ``hf_model.layer_graph`` keeps each graph in
``$TLMSIM_CACHE/graphs/`` (default ``~/.cache/tlmsim/graphs/``). A cache file is::

    gzip( <header JSON> "\\n" <payload JSON> )

The header holds the format name and version, the tlmsim version, the *inputs* the
graph was built from (digests of the model config and manifest, the formats, a digest
of the extraction code, the torch and transformers versions) with their sha256, and the
sha256 of the payload bytes. The payload is the graph: graph attributes, nodes with
their attributes, edges. Values are JSON scalars, or one of two tagged forms: ``{"sym":
[coef, t_pow, kv_pow]}`` for a ``Sym`` and ``{"tuple": [...]}`` for a sum of them.
Nothing else decodes, so a cache file can only ever be data: no pickle, no code.

A file whose header, inputs, version or payload digest does not match, or that does
not decode, is treated as a miss: the caller rebuilds the graph and overwrites it, and
one warning line says why. A cache folder that cannot be created or written makes the
run go uncached, with one warning line. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
import zlib
from pathlib import Path

import networkx as nx

from tlmsim.workloads.manifest import tool_version
from tlmsim.workloads.symbols import Sym

FORMAT = "tlmsim-layer-graph"
FORMAT_VERSION = 1
SUFFIX = ".json.gz"
MAX_FILE_BYTES = 256 * 2**20  # decompressed; LLaMA-7B's graph is ~0.3 MB, a 256-layer one ~3 MB

log = logging.getLogger("tlmsim.cache")
_warned: set[str] = set()


class CacheFileError(Exception):
    """A cache file is unreadable, damaged, or was built from other inputs."""


# ---- where ------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$TLMSIM_CACHE``, or ``~/.cache/tlmsim``."""
    configured = os.environ.get("TLMSIM_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tlmsim"


def cache_dir() -> Path:
    """The folder of the layer-graph cache files."""
    return cache_root() / "graphs"


def inputs_digest(inputs: dict) -> str:
    """sha256 of everything a graph depends on (plus this format's and tlmsim's version)."""
    keyed = {"format": FORMAT, "format_version": FORMAT_VERSION, "tlmsim": tool_version(), **inputs}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()


def cache_path(inputs: dict) -> Path:
    """The cache file of the graph built from ``inputs``."""
    return cache_dir() / f"{inputs_digest(inputs)[:32]}{SUFFIX}"


# ---- load and store ---------------------------------------------------------------------


# Graphs already read by this process, by (file, mtime, size): a warm sweep or explore worker
# decodes each cache file once. Callers get a copy (they set formats and sources on it).
_READ: dict[tuple, nx.DiGraph] = {}
_READ_MAX = 8


def load(inputs: dict) -> nx.DiGraph | None:
    """The cached graph for ``inputs``, or None (absent, or bad: then with one warning)."""
    path = cache_path(inputs)
    try:
        if not path.is_file():  # also refuses folders, FIFOs and devices planted at the path
            return None
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size, inputs_digest(inputs))
        if key not in _READ:
            if len(_READ) >= _READ_MAX:
                _READ.clear()
            _READ[key] = read_graph(path, key[3])
        return _READ[key].copy()
    except CacheFileError as err:
        warn_once(f"graph cache: {path} {err}; rebuilding it")
    except OSError as err:  # e.g. permission denied: rebuild, and the store will say if it fails
        warn_once(f"graph cache: cannot read {path} ({err.strerror or err}); rebuilding it")
    return None


def store(inputs: dict, graph: nx.DiGraph) -> None:
    """Write ``graph`` as the cache file for ``inputs``; if that fails, warn and go on."""
    path = cache_path(inputs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_graph(path, inputs, graph)
    except OSError as err:
        warn_once(f"graph cache: cannot write to {path.parent} ({err.strerror or err}); running without "
                  f"the cache (set TLMSIM_CACHE to a writable folder)")


def warn_once(message: str) -> None:
    """Log ``message`` as one warning line, once per process (a sweep asks many times)."""
    if message not in _warned:
        _warned.add(message)
        log.warning("warning: %s", message)


# ---- the file format -------------------------------------------------------------------


def write_graph(path: Path, inputs: dict, graph: nx.DiGraph) -> None:
    """Atomically write ``graph`` with its header to ``path``."""
    payload = json.dumps(encode_graph(graph), separators=(",", ":")).encode()
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "tlmsim_version": tool_version(),
              "inputs": inputs, "inputs_sha256": inputs_digest(inputs),
              "payload_sha256": hashlib.sha256(payload).hexdigest()}
    data = gzip.compress(json.dumps(header).encode() + b"\n" + payload, mtime=0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache file is as readable as any other
        os.replace(tmp, path)  # a concurrent reader sees the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_graph(path: Path, expected_inputs_sha256: str) -> nx.DiGraph:
    """The graph in ``path``, after checking its header and payload digest."""
    header, payload = _read_parts(path)
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION \
            or header.get("tlmsim_version") != tool_version():
        raise CacheFileError(f"was written by another tlmsim ({header.get('tlmsim_version')!r}, "
                             f"format {header.get('format_version')!r})")
    if header.get("inputs_sha256") != expected_inputs_sha256:
        raise CacheFileError("was built from other inputs (another model, format or tlmsim code; "
                             "a stale or copied file)")
    if header.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        raise CacheFileError("fails its checksum (a damaged file)")
    try:
        return decode_graph(json.loads(payload))
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as err:
        raise CacheFileError(f"does not decode ({err})") from None


def _read_parts(path: Path) -> tuple[dict, bytes]:
    """(header, payload bytes) of a cache file; CacheFileError if it is not one."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise CacheFileError(f"is larger than {MAX_FILE_BYTES // 2**20} MiB uncompressed")
        head, newline, payload = data.partition(b"\n")
        header = json.loads(head)
    except (EOFError, zlib.error, gzip.BadGzipFile, ValueError, RecursionError) as err:
        raise CacheFileError(f"is not a cache file or is truncated ({type(err).__name__})") from None
    if not newline or not isinstance(header, dict):
        raise CacheFileError("is not a cache file or is truncated (no header)")
    return header, payload


# ---- graph <-> plain data --------------------------------------------------------------


def encode_graph(graph: nx.DiGraph) -> dict:
    """Plain JSON data of a layer graph (node and edge order kept)."""
    return {
        "graph": {key: encode_value(v) for key, v in graph.graph.items()},
        "nodes": [[name, {key: encode_value(v) for key, v in data.items()}] for name, data in graph.nodes(data=True)],
        "edges": [[u, v, {key: encode_value(x) for key, x in data.items()}] for u, v, data in graph.edges(data=True)],
    }


def decode_graph(data: dict) -> nx.DiGraph:
    """The layer graph of ``encode_graph`` data; ValueError/TypeError if it is malformed."""
    graph = nx.DiGraph()
    graph.graph.update(_decode_attrs(data["graph"]))
    for name, attrs in data["nodes"]:
        if not isinstance(name, str) or name in graph:
            raise ValueError(f"bad or repeated node name {name!r}")
        graph.add_node(name, **_decode_attrs(attrs))
    for u, v, attrs in data["edges"]:
        if u not in graph or v not in graph:
            raise ValueError(f"edge {u!r} -> {v!r} names an unknown node")
        graph.add_edge(u, v, **_decode_attrs(attrs))
    return graph


def encode_value(value):
    """One attribute value as JSON data (scalars as they are, Sym and tuples tagged)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Sym):
        return {"sym": [value.coef, value.t_pow, value.kv_pow]}
    if isinstance(value, tuple):
        return {"tuple": [encode_value(v) for v in value]}
    raise TypeError(f"layer graph attribute of type {type(value).__name__} has no cache encoding")


def decode_value(value):
    """Inverse of ``encode_value``; anything but the known scalars and tags is an error."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict) and set(value) == {"sym"}:
        coef, t_pow, kv_pow = value["sym"]
        if not all(type(x) is int for x in (coef, t_pow, kv_pow)):
            raise ValueError(f"bad Sym {value!r}")
        return Sym(coef, t_pow, kv_pow)
    if isinstance(value, dict) and set(value) == {"tuple"} and isinstance(value["tuple"], list):
        return tuple(decode_value(v) for v in value["tuple"])
    raise ValueError(f"unknown value {value!r:.80}")


def _decode_attrs(attrs) -> dict:
    if not isinstance(attrs, dict):
        raise ValueError("attributes are not an object")
    return {key: decode_value(v) for key, v in attrs.items()}
