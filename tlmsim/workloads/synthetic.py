"""Synthetic layer graphs (a single matmul) in the same form the extractor produces."""

from __future__ import annotations

import networkx as nx

from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.symbols import Sym


def single_linear(out_features: int, in_features: int, spec: str, group_size: int = 128) -> nx.DiGraph:
    """A graph of one linear layer W[out, in] stored in format ``spec``."""
    fmt = parse_format(spec, group_size)
    graph = nx.DiGraph(model_type="single_linear", num_layers=1)
    graph.add_node("layers.0.proj", order=0, kind=OpKind.LINEAR.value, module="layers.0.proj", layer=0,
                   in_features=in_features, out_features=out_features, rows=Sym(1, t_pow=1),
                   weight_format=fmt.name, weight_nbytes=fmt.packed_nbytes(out_features, in_features))
    return graph
