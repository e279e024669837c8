"""Extract a layer graph from a real HuggingFace causal LM.

The model is built on the meta device (no weights, no download) and run once under
``FakeTensorMode`` as a *decode-like* step: ``TRACE_PAST`` cached tokens plus
``TRACE_TOKENS`` new ones. A ``TorchDispatchMode`` records every aten op together with
the module that issued it, and follows tensors from producer to consumer. The recorded
ops become nodes of a ``networkx.DiGraph``:

* a call of a leaf module (Linear or GPT-2's Conv1D, Embedding, RMSNorm, activation,
  rotary embedding) is one node; Dropout and Identity do nothing at inference and get none;
  what a module class maps to is the data in ``module_map.py``, where composite modules
  (MoE routers, expert banks) become a chain of nodes and fused linears are split;
* inside non-leaf modules (attention, MLP, decoder layer) each matmul, softmax and KV
  cache append is a node, and each run of consecutive elementwise ops is one node.

Sizes are kept symbolic in the number of new tokens ``t`` and the KV length ``kv``:
because the trace uses distinct values for both, a dimension equal to ``TRACE_TOKENS``
is ``t`` and one equal to the traced KV length is ``kv``. A phase (prefill, decode) then
evaluates them with its own numbers. Everything is per sequence; batch multiplies it.
``Sym`` and the size helpers live in the torch-free ``symbols.py`` (re-exported here).

A module the extractor cannot map, or any failure of the model's own forward under the
trace, is an ``ExtractionError`` (a one-line ``ConfigError``) naming the module and its
class.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable

import networkx as nx
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tlmsim.workloads import module_map
from tlmsim.workloads.model_source import ModelError, one_line
from tlmsim.workloads.module_map import NO_OP_MODULES, VECTOR_MODULES  # noqa: F401  (re-exported)
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.symbols import (  # noqa: F401  (re-exported: older code imports them from here)
    TRACE_KV,
    TRACE_PAST,
    TRACE_TOKENS,
    Sym,
    add_sym,
    eval_size,
    layer_index,
    sym_dim,
    sym_numel,
)

MATMUL_OPS = {"mm", "bmm", "addmm", "matmul", "baddbmm"}
SOFTMAX_OPS = {"_softmax", "softmax", "_safe_softmax"}
ELEMENTWISE_OPS = {
    "add", "sub", "mul", "div", "neg", "pow", "rsqrt", "sqrt", "exp", "mean", "sum",
    "silu", "gelu", "tanh", "sigmoid", "relu", "cat", "where", "masked_fill", "maximum",
}

class ExtractionError(ModelError):
    """The extractor cannot turn this model into a layer graph."""


class UnsupportedModuleError(ExtractionError):
    """A leaf module does work that the graph extractor cannot map to hardware."""


class TraceError(ExtractionError):
    """The model's forward pass failed under the fake-tensor trace, inside ``module``."""

    def __init__(self, module: str, cls: str, err: Exception):
        where = f"module '{module}' of type {cls}" if module else "the model's top level"
        super().__init__(f"{where} cannot be traced ({type(err).__name__}: {one_line(err)})")
        self.module, self.cls = module, cls


def build_meta_model(hf_config) -> torch.nn.Module:
    """Instantiate the causal LM for ``hf_config`` on the meta device (no weights)."""
    from transformers import AutoModelForCausalLM

    hf_config._attn_implementation = "eager"  # attention as explicit matmul/softmax ops
    # Mixture-of-experts banks gather the routed experts' weights instead of looping over the
    # experts a token hit (a data-dependent loop that fake tensors cannot run).
    hf_config._experts_implementation = "batched_mm"
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def extract_layer_graph(
    model: torch.nn.Module, weight_info: Callable[[str, int, int], tuple[str, int]] | None = None
) -> nx.DiGraph:
    """Trace ``model`` and return its layer graph.

    ``weight_info(module_name, out_features, in_features)`` gives each linear layer's
    weight format name and exact packed bytes; without it the linears have none yet
    (``module_map.assign_weights`` adds them: the graph's shape does not depend on them).
    """
    _check_dims_are_distinguishable(model.config)
    recorder = _OpRecorder(model)
    recorder.trace()
    graph = recorder.graph
    cfg = model.config
    heads = cfg.num_attention_heads
    module_map.expand_composites(graph)
    module_map.split_fused_linears(graph, heads, getattr(cfg, "num_key_value_heads", None) or heads)
    module_map.mark_sliding_windows(graph, module_map.sliding_windows(cfg))
    _mark_tied_embeddings(model, graph)
    module_map.renumber(graph)
    graph.graph["model_type"] = cfg.model_type
    graph.graph["num_layers"] = cfg.num_hidden_layers
    if weight_info is not None:
        module_map.assign_weights(graph, weight_info)
    return graph


def _mark_tied_embeddings(model: torch.nn.Module, graph: nx.DiGraph) -> None:
    """A tied input embedding is the lm_head's tensor: stored and counted once (phases.py)."""
    head, table = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and table is not None and head.weight is table.weight:
        names = {id(module): name for name, module in model.named_modules()}
        module_map.mark_tied(graph, names.get(id(table)), names.get(id(head)))


def _check_dims_are_distinguishable(cfg) -> None:
    """Sizes t and kv are recognised by value, so no model dimension may equal them."""
    sizes = {cfg.hidden_size, cfg.num_attention_heads, getattr(cfg, "head_dim", 0) or 0}
    if sizes & {TRACE_TOKENS, TRACE_KV}:
        raise ExtractionError(f"model dimensions {sorted(sizes)} (hidden_size, num_attention_heads, head_dim) "
                              f"collide with the trace sizes {TRACE_TOKENS}/{TRACE_KV}; change TRACE_TOKENS "
                              f"in tlmsim/workloads/symbols.py to simulate this model")


class _OpRecorder(TorchDispatchMode):
    """Records aten ops per module and links producers to consumers."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.graph = nx.DiGraph()
        self.module_stack: list[str] = []
        self.producer: dict[int, str] = {}  # id(tensor) -> node that made it
        self.keep_alive: list[torch.Tensor] = []  # so ids are not reused during the trace
        self.leaf_calls: dict[str, int] = {}
        self.last_node: str | None = None
        self.modules = dict(model.named_modules())
        self.recording = False
        self.composite: str | None = None  # the composite module (COMPOSITE_MODULES) being run
        self.top_k = getattr(model.config, "num_experts_per_tok", None) or 1  # experts each token uses

    def trace(self) -> None:
        """Run the two-phase fake forward (fill the cache, then record one step)."""
        from torch._subclasses.fake_tensor import FakeTensorMode

        handles = self._install_hooks()
        try:
            with FakeTensorMode(allow_non_fake_inputs=True), quiet_transformers():
                past = self.model(input_ids=torch.zeros(1, TRACE_PAST, dtype=torch.long), use_cache=True)
                ids = torch.zeros(1, TRACE_TOKENS, dtype=torch.long)
                self.recording = True
                with self:
                    self.model(input_ids=ids, past_key_values=past.past_key_values,
                               use_cache=True, logits_to_keep=1)
        except UnsupportedModuleError:
            raise
        except Exception as err:  # any failure inside the model's own code: name the module it was in
            module = self.module_stack[-1] if self.module_stack else ""
            raise TraceError(module, type(self.modules.get(module, self.model)).__name__, err) from None
        finally:
            for handle in handles:
                handle.remove()

    def _install_hooks(self) -> list:
        handles = []
        for name, module in self.model.named_modules():
            handles.append(module.register_forward_pre_hook(self._enter(name)))
            handles.append(module.register_forward_hook(self._leave(name)))
        return handles

    def _enter(self, name: str):
        def hook(module, args):
            self.module_stack.append(name)
            if self.composite is not None:  # a part of a composite module: its ops are the composite's
                return
            if module_map.composite_of(type(module).__name__):
                self.composite = name
            if self.recording and _is_mapped_leaf(module):
                self._add_node(name, _base(name, "pending"), [])
        return hook

    def _leave(self, name: str):
        def hook(module, args, output):
            self.module_stack.pop()
            if self.composite not in (None, name):
                return
            self.composite = None
            if self.recording and _is_mapped_leaf(module):
                outputs = [o for o in _flat(output) if isinstance(o, torch.Tensor)]
                self.graph.nodes[name].update(_leaf_attrs(name, module, outputs, self.top_k))
        return hook

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in _flat(args) if isinstance(a, torch.Tensor)]
        outputs = [o for o in _flat(out) if isinstance(o, torch.Tensor)]
        node = self._node_for(func.overloadpacket.__name__, inputs, outputs)
        for tensor in outputs:
            self.keep_alive.append(tensor)
            producer = node or next((self.producer[id(i)] for i in inputs if id(i) in self.producer), None)
            if producer is not None:
                self.producer[id(tensor)] = producer
        return out

    def _node_for(self, op: str, inputs: list, outputs: list) -> str | None:
        """Return the node this op belongs to (creating it), or None for data movement."""
        if not self.module_stack:
            return None
        module_name = self.composite or self.module_stack[-1]
        if _is_no_op(self.modules[module_name]):
            return None
        if _is_leaf(self.modules[module_name]):
            self._link(module_name, inputs)
            return module_name
        return self._inner_node(module_name, op, inputs, outputs)

    def _inner_node(self, module_name, op, inputs, outputs) -> str | None:
        floats = [t for t in inputs if t.is_floating_point()]
        if not floats or not outputs:
            return None
        if op in MATMUL_OPS:
            return self._add_node(self._new_name(module_name, "matmul"), _matmul_attrs(module_name, inputs), inputs,
                                  kv_source=self._kv_source(inputs))
        if op in SOFTMAX_OPS:
            return self._add_node(self._new_name(module_name, "softmax"),
                                  _vector_attrs(module_name, "softmax", outputs), inputs)
        if op == "cat" and sym_numel(tuple(outputs[0].shape)).kv_pow:
            return self._add_node(self._new_name(module_name, "kv_append"), _kv_attrs(module_name, outputs), inputs)
        if op in ELEMENTWISE_OPS:
            return self._elementwise(module_name, inputs, outputs)
        return None

    def _elementwise(self, module_name, inputs, outputs) -> str:
        last = self.graph.nodes[self.last_node] if self.last_node else None
        same_module = last is not None and last["module"] == module_name
        if same_module and last["kind"] == OpKind.VECTOR and last["vector_op"] == "elementwise":
            last["elements"] = add_sym(last["elements"], sym_numel(tuple(outputs[0].shape)))
            self._link(self.last_node, inputs)
            return self.last_node
        return self._add_node(self._new_name(module_name, "elementwise"),
                              _vector_attrs(module_name, "elementwise", outputs), inputs)

    def _kv_source(self, inputs) -> str | None:
        for tensor in inputs:
            node = self.producer.get(id(tensor))
            if node and self.graph.nodes[node]["kind"] == OpKind.KV_APPEND:
                return node
        return None

    def _new_name(self, module_name: str, what: str) -> str:
        count = self.leaf_calls.get((module_name, what), 0)
        self.leaf_calls[(module_name, what)] = count + 1
        return f"{module_name}.{what}" + (f"_{count}" if count else "")

    def _add_node(self, node: str, attrs: dict, inputs, **extra) -> str:
        self.graph.add_node(node, order=self.graph.number_of_nodes(), **attrs, **extra)
        self._link(node, inputs)
        self.last_node = node
        return node

    def _link(self, node: str, inputs) -> None:
        for tensor in inputs:
            src = self.producer.get(id(tensor))
            if src is not None and src != node:
                self.graph.add_edge(src, node)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' chatter and torch's fake-tensor error dumps (not the user's concern:
    a failure becomes one ``ModelError`` line)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    was_disabled = fake_log.disabled
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights: 100%" would be a second line on stderr
    fake_log.disabled = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
            if bars:
                hf_logging.enable_progress_bar()
            fake_log.disabled = was_disabled


def _flat(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flat(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flat(item)
    else:
        yield value


def _is_leaf(module: torch.nn.Module) -> bool:
    """No child modules, or a composite module (whose children are its parts)."""
    return not any(True for _ in module.children()) or module_map.composite_of(type(module).__name__) is not None


def _is_no_op(module: torch.nn.Module) -> bool:
    """Dropout and Identity do nothing at inference (and have no weights)."""
    return type(module).__name__.endswith(NO_OP_MODULES) and not any(True for _ in module.parameters())


def _is_mapped_leaf(module: torch.nn.Module) -> bool:
    """A leaf module that becomes one graph node."""
    return _is_leaf(module) and not _is_no_op(module)


def _base(module_name: str, kind: OpKind | str) -> dict:
    return {"kind": str(kind), "module": module_name, "layer": layer_index(module_name)}


def _leaf_attrs(name: str, module: torch.nn.Module, outputs, top_k: int = 1) -> dict:
    if isinstance(module, torch.nn.Linear):
        rows = sym_numel(tuple(outputs[0].shape[:-1]))
        return {**_base(name, OpKind.LINEAR), "in_features": module.in_features,
                "out_features": module.out_features, "rows": rows}
    if isinstance(module, torch.nn.Embedding):
        return {**_base(name, OpKind.EMBEDDING), "rows": sym_numel(tuple(outputs[0].shape[:-1])),
                "embedding_dim": module.embedding_dim, "num_embeddings": module.num_embeddings}
    cls = type(module).__name__
    if cls == "Conv1D" and hasattr(module, "nf"):  # GPT-2's linear layer, weight stored [in, out]
        rows = sym_numel(tuple(outputs[0].shape[:-1]))
        return {**_base(name, OpKind.LINEAR), "in_features": module.weight.shape[0],
                "out_features": module.nf, "rows": rows}
    vector_op = module_map.vector_op_of(cls)
    if vector_op is not None:
        return _vector_attrs(name, vector_op, outputs)
    parts = module_map.composite_of(cls)
    if parts is not None:
        return _composite_attrs(name, module, parts, outputs, top_k)
    if any(True for _ in module.parameters(recurse=False)):
        raise UnsupportedModuleError(
            f"module '{name}' of type {cls} has weights but no hardware mapping; map its class in "
            f"tlmsim/workloads/module_map.py (VECTOR_MODULES for a norm or activation, COMPOSITE_MODULES for "
            f"matmuls with its own parameters)")
    if not any(o.is_floating_point() for o in outputs):
        return _base(name, "data")
    raise UnsupportedModuleError(
        f"module '{name}' of type {cls} computes on activations but has no hardware mapping; "
        f"add it to VECTOR_MODULES in tlmsim/workloads/module_map.py if the vector unit can run it")


def _composite_attrs(name: str, module: torch.nn.Module, parts: tuple, outputs, top_k: int) -> dict:
    """A leaf module that is several ops (expanded by module_map.expand_composites)."""
    params = {key: tuple(p.shape) for key, p in module.named_parameters(recurse=False)}
    missing = [what for kind, what in parts if kind != "vector_unit" and what not in params]
    if missing:
        raise UnsupportedModuleError(f"module '{name}' of type {type(module).__name__} has no parameter "
                                     f"'{missing[0]}' that its row in COMPOSITE_MODULES names; fix the row")
    rows = sym_numel(tuple(outputs[0].shape[:-1]))
    built, previous = [], None
    for kind, what in parts:
        previous = module_map.part_attrs(kind, what, name, layer_index(name), rows, params, top_k, previous)
        built.append(previous)
    return {**_base(name, module_map.COMPOSITE), "parts": built}


def _matmul_attrs(module_name: str, inputs) -> dict:
    """Activation x activation matmul [g, r, k] x [g, k, n] (attention scores/context)."""
    a, b = inputs[-2].shape, inputs[-1].shape
    groups = 1
    for size in a[:-2]:
        groups *= size
    return {**_base(module_name, OpKind.ATTN_MATMUL), "groups": groups, "rows": sym_dim(a[-2]),
            "k": sym_dim(a[-1]), "n": sym_dim(b[-1])}


def _vector_attrs(module_name: str, vector_op: str, outputs) -> dict:
    return {**_base(module_name, OpKind.VECTOR), "vector_op": vector_op,
            "elements": sym_numel(tuple(outputs[0].shape))}


def _kv_attrs(module_name: str, outputs) -> dict:
    """A KV-cache append: writes the new tokens' entries, the cache holds ``elements``."""
    shape = tuple(outputs[0].shape)
    cache = sym_numel(shape)
    new = Sym(cache.coef, cache.t_pow + cache.kv_pow, 0)  # the kv dim replaced by t
    return {**_base(module_name, OpKind.KV_APPEND), "elements": cache, "new_elements": new}

