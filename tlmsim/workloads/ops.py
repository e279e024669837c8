"""The kinds of op a layer graph holds, and so the kinds of work the accelerator does."""

from __future__ import annotations

from enum import Enum


class OpKind(str, Enum):
    """What an op is; its value is the ``kind`` stored on graph nodes (and in results).

    A ``str`` enum: graph nodes and cached graphs hold the plain value, and
    ``OpKind(node["kind"])`` turns it back into a member.
    """

    LINEAR = "linear"  # weights x activations on the PE array, weights streamed through the decoder
    ATTN_MATMUL = "attn_matmul"  # activations x KV cache on the PE array (QK^T, PV)
    VECTOR = "vector"  # norms, softmax, activations, RoPE, residual adds on the vector unit
    EMBEDDING = "embedding"  # a gather of embedding rows from memory
    KV_APPEND = "kv_append"  # a write of the new keys/values to the KV cache
    NOOP = "noop"  # a graph node with no hardware cost

    def __str__(self) -> str:
        return self.value

    @property
    def is_matmul(self) -> bool:
        """True for the kinds the PE array executes."""
        return self in (OpKind.LINEAR, OpKind.ATTN_MATMUL)

    @property
    def is_memory_op(self) -> bool:
        """True for the kinds that move data to or from memory outside the DMAs' streams."""
        return self in (OpKind.EMBEDDING, OpKind.KV_APPEND)
