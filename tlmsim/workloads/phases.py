"""Turn a layer graph into the ops of each inference step (prefill, then decode steps).

An op is hardware-agnostic: it says how much work (matmul shape, vector elements) and
which bytes (weights, KV cache, embeddings) a step needs. The accelerator's
controller tiles ops onto its hardware. Sizes here are for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from tlmsim.workloads.formats import WeightFormat, parse_format
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.routing import routed_matmul
from tlmsim.workloads.symbols import Sym, eval_size

EMBEDDING_BYTES_PER_VALUE = 2  # embedding tables stay fp16 (the compression pipeline keeps them so)


def embedding_table_bytes(node: dict) -> int:
    """Bytes of an embedding node's whole table, as stored and placed (none when it is tied
    to the lm_head: then the lm_head's weight is the one stored table)."""
    if node.get("tied_to"):
        return 0
    return node["num_embeddings"] * node["embedding_dim"] * EMBEDDING_BYTES_PER_VALUE


def _windowed(data: dict, kv: int) -> int:
    """KV entries a sliding-window layer's attention keeps and reads (all of them otherwise)."""
    window = data.get("window")
    return min(kv, window) if window else kv


@dataclass(frozen=True)
class Step:
    """One forward pass: ``tokens`` new tokens per sequence attending to ``kv`` entries."""

    index: int
    phase: str  # "prefill" or "decode"
    tokens: int
    kv: int
    batch: int


@dataclass(frozen=True)
class Op:
    """One unit of work of a step, in graph (topological) order."""

    name: str
    kind: OpKind
    layer: int | None
    deps: tuple[int, ...]  # indices of earlier ops of the same step
    groups: int = 0  # independent matmuls (heads x batch)
    rows: int = 0  # activation rows per group
    k: int = 0  # reduction length
    n: int = 0  # outputs per row
    weight_format: WeightFormat | None = None  # format of the streamed operand
    operand_tensor: str | None = None  # tensor streamed as the matmul's second operand
    operand_bytes: int = 0  # bytes of that operand read from memory
    vector_op: str | None = None
    elements: int = 0
    write_bytes: int = 0  # bytes written to memory (KV append)
    read_bytes: int = 0  # bytes read outside the operand stream (embedding gather)

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates of a matmul op."""
        return self.groups * self.rows * self.k * self.n

    @property
    def stored_weights(self) -> int:
        """Stored operand elements after N:M pruning (what the PE multiplies)."""
        if self.weight_format is None:
            return 0
        return self.groups * self.weight_format.kept_weights(self.n, self.k)


@dataclass(frozen=True)
class Workload:
    """A layer graph plus the job: batch, prompt length, tokens to generate."""

    graph: nx.DiGraph
    batch: int
    prefill_tokens: int
    decode_tokens: int
    kv_bits: int
    group_size: int = 128

    def steps(self) -> list[Step]:
        """The prefill step followed by one step per generated token."""
        first = Step(0, "prefill", self.prefill_tokens, self.prefill_tokens, self.batch)
        decode = [Step(i + 1, "decode", 1, self.prefill_tokens + i + 1, self.batch)
                  for i in range(self.decode_tokens)]
        return [first, *decode]

    @cached_property
    def node_order(self) -> list[str]:
        """Graph nodes in execution order (a topological order)."""
        order = sorted(self.graph.nodes, key=lambda n: self.graph.nodes[n]["order"])
        assert nx.is_directed_acyclic_graph(self.graph)
        return order

    @cached_property
    def _deps(self) -> dict[str, tuple[int, ...]]:
        """Each node's predecessors as indices into ``node_order`` (the same for every step)."""
        index = {name: i for i, name in enumerate(self.node_order)}
        return {name: tuple(sorted(index[p] for p in self.graph.predecessors(name))) for name in self.node_order}

    def ops_deps(self, name: str) -> tuple[int, ...]:
        """Indices (into ``node_order``) of the nodes ``name`` depends on."""
        return self._deps[name]

    def ops(self, step: Step) -> list[Op]:
        """All ops of one step, with dependencies as indices into the list."""
        return [self._cached_op(name, step) for name in self.node_order]

    @cached_property
    def _op_cache(self) -> dict[tuple[str, int, int], Op]:
        return {}

    @property
    def kv_independent_nodes(self) -> set[str]:
        """Nodes whose op is the same in every step with the same number of new tokens."""
        return self._kv_free

    @cached_property
    def _kv_free(self) -> set[str]:
        """Nodes whose op does not depend on the KV length (reused across decode steps)."""
        def kv_free(value) -> bool:
            terms = value if isinstance(value, tuple) else (value,)
            return all(not isinstance(term, Sym) or term.kv_pow == 0 for term in terms)
        return {name for name in self.node_order if self.graph.nodes[name]["kind"] != OpKind.ATTN_MATMUL
                and all(kv_free(v) for v in self.graph.nodes[name].values())}

    def _cached_op(self, name: str, step: Step) -> Op:
        if name not in self._kv_free:
            return self._op(name, step, self._deps[name])
        key = (name, step.tokens, step.batch)
        op = self._op_cache.get(key)
        if op is None:
            op = self._op_cache[key] = self._op(name, step, self._deps[name])
        return op

    def kv_cache_bytes(self, node: str, kv: int) -> int:
        """Bytes of one KV-cache tensor (all sequences) after ``kv`` tokens (a sliding-window
        layer keeps only its window)."""
        data = self.graph.nodes[node]
        return eval_size(data["elements"], 1, _windowed(data, kv)) * self.batch * self.kv_bits // 8

    def kv_write_offset(self, node: str, past: int) -> int:
        """Byte offset of the entries appended after ``past`` tokens (a sliding window is a ring)."""
        window = self.graph.nodes[node].get("window")
        return self.kv_cache_bytes(node, past % window if window else past)

    def _op(self, name: str, step: Step, deps: tuple[int, ...]) -> Op:
        data = self.graph.nodes[name]
        builder = _OP_BUILDERS.get(data["kind"])
        if builder is None:
            return Op(name, OpKind.NOOP, data["layer"], deps)
        return builder(self, name, data, step, deps)

    def _linear(self, name, data, step: Step, deps) -> Op:
        fmt = parse_format(data["weight_format"], self.group_size)
        rows = eval_size(data["rows"], step.tokens, step.kv) * step.batch
        n, nbytes = data["out_features"], data["weight_nbytes"]
        if data.get("experts"):  # a mixture-of-experts bank: only the routed experts stream (routing.py)
            routed = routed_matmul(data["experts"], data["experts_per_token"], n, nbytes, rows)
            rows, n, nbytes = routed.rows, routed.n, routed.operand_bytes
        return Op(name, OpKind.LINEAR, data["layer"], deps, groups=1, rows=rows, k=data["in_features"],
                  n=n, weight_format=fmt, operand_tensor=name, operand_bytes=nbytes)

    def _attn_matmul(self, name, data, step: Step, deps) -> Op:
        fmt = parse_format(f"fp{self.kv_bits}" if self.kv_bits == 16 else f"int{self.kv_bits}", self.group_size)
        source = data.get("kv_source")
        operand = self.kv_cache_bytes(source, step.kv) if source else 0
        kv = _windowed(data, step.kv)
        return Op(name, OpKind.ATTN_MATMUL, data["layer"], deps, groups=data["groups"] * step.batch,
                  rows=eval_size(data["rows"], step.tokens, kv), k=eval_size(data["k"], step.tokens, kv),
                  n=eval_size(data["n"], step.tokens, kv), weight_format=fmt,
                  operand_tensor=source, operand_bytes=operand)

    def _vector(self, name, data, step: Step, deps) -> Op:
        elements = eval_size(data["elements"], step.tokens, step.kv) * step.batch
        return Op(name, OpKind.VECTOR, data["layer"], deps, vector_op=data["vector_op"], elements=elements)

    def _embedding(self, name, data, step: Step, deps) -> Op:
        rows = eval_size(data["rows"], step.tokens, step.kv) * step.batch
        head = data.get("tied_to")
        if head:  # rows gathered from the lm_head's stored weight (the one table of a tied model)
            head_data = self.graph.nodes[head]
            return Op(name, OpKind.EMBEDDING, data["layer"], deps, operand_tensor=head,
                      read_bytes=rows * head_data["weight_nbytes"] // head_data["out_features"])
        return Op(name, OpKind.EMBEDDING, data["layer"], deps,
                  read_bytes=rows * data["embedding_dim"] * EMBEDDING_BYTES_PER_VALUE, operand_tensor=name)

    def _kv_append(self, name, data, step: Step, deps) -> Op:
        new = eval_size(data["new_elements"], _windowed(data, step.tokens), step.kv) * step.batch
        return Op(name, OpKind.KV_APPEND, data["layer"], deps, write_bytes=new * self.kv_bits // 8,
                  operand_tensor=name)


# One builder per op kind: how a graph node of that kind becomes an op of a step.
_OP_BUILDERS = {
    OpKind.LINEAR: Workload._linear,
    OpKind.ATTN_MATMUL: Workload._attn_matmul,
    OpKind.VECTOR: Workload._vector,
    OpKind.EMBEDDING: Workload._embedding,
    OpKind.KV_APPEND: Workload._kv_append,
}
