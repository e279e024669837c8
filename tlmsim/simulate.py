"""One entry point: config in, ``RunResult`` out (plain data, no live simulator object)."""

from __future__ import annotations

import logging
import time

import networkx as nx

from tlmsim.config import Config
from tlmsim.cost import check_budget
from tlmsim.energy import energy_report
from tlmsim.engine.timebase import ps_to_s
from tlmsim.models.accelerator import Accelerator
from tlmsim.models.roofline import StepRecord
from tlmsim.output import tlmsim_version
from tlmsim.report import default_window, summary_block
from tlmsim.results import BOUNDING_ROLES, SCHEMA_VERSION, RunResult, with_roles
from tlmsim.workloads.hf_model import layer_graph
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Workload, embedding_table_bytes

log = logging.getLogger("tlmsim.simulate")


def build_workload(cfg: Config, graph: nx.DiGraph | None = None) -> Workload:
    """The workload of ``cfg`` (extracting the model's layer graph unless given)."""
    wl = cfg.workload
    if graph is None:
        graph = layer_graph(wl.model, wl.weight_format, wl.lm_head_format, wl.group_size)
    return Workload(graph, wl.batch, wl.prefill_tokens, wl.decode_tokens, wl.kv_bits, wl.group_size)


def simulate(cfg: Config, graph: nx.DiGraph | None = None, progress=None) -> RunResult:
    """Run the simulation of ``cfg`` (on ``graph`` if given); ``progress(done, total, phase)``
    is called after each step. The accelerator is dropped: the result holds only records."""
    started = time.perf_counter()
    cost = check_budget(cfg)  # before minutes of simulation: an over-budget design is refused here
    workload = build_workload(cfg, graph)
    accelerator = Accelerator(cfg, workload, progress=progress)
    log.debug("simulating %d steps", len(workload.steps()))
    steps = accelerator.run()
    data = summarize(cfg, accelerator, steps, cost)
    tracer = accelerator.ctx.tracer
    return RunResult(data, tuple(tracer.slices), tuple(tracer.counters), time.perf_counter() - started)


def summarize(cfg: Config, acc: Accelerator, steps: list[StepRecord], cost: dict | None = None) -> dict:
    """Metrics of a finished run (RunResult.data); ``cost`` is the design's resource block."""
    components = {name: {"role": comp.role} for name, comp in acc.components.items()}
    prefill = [s for s in steps if s.step.phase == "prefill"]
    decode = [s for s in steps if s.step.phase == "decode"]
    phases = {"prefill": _phase(acc, prefill, components)}
    if decode:
        phases["decode"] = _phase(acc, decode, components)
        _add_decode_rates(cfg, phases["decode"], decode)
    spans = [{"index": s.step.index, "phase": s.step.phase, "kv": s.step.kv, "start_ps": s.start_ps,
              "end_ps": s.end_ps, "demand_bound_s": ps_to_s(max(s.demands_ps.values(), default=0)),
              "demand_bound_by": max(s.demands_ps, key=s.demands_ps.get, default="none")} for s in steps]
    result = {
        "schema_version": SCHEMA_VERSION,
        "tlmsim_version": tlmsim_version(),
        "name": cfg.name,
        "model": acc.workload.graph.graph.get("model_source"),
        "components": components,
        "phases": phases,
        "weights": _weights(acc),
        "ops": [_op(rec) for s in steps for rec in s.ops],
        "timeline_window": default_window(spans),
        "steps": spans,
        "reuse": {"layers_skipped": acc.reuse.layers_skipped, "tiles_skipped": acc.reuse.tiles_skipped,
                  "disabled_reason": acc.reuse.disabled_reason},
        "config": cfg.model_dump(mode="json"),
        "cost": cost,
    }
    result["energy"] = energy_report(result)  # post-processing of the records above
    result["summary"] = summary_block(result)
    return result


def _phase(acc: Accelerator, steps: list[StepRecord], components: dict) -> dict:
    duration = steps[-1].end_ps - steps[0].start_ps
    demands: dict[str, int] = {}
    moved: dict[str, int] = {}
    for s in steps:
        for key, value in s.demands_ps.items():
            demands[key] = demands.get(key, 0) + value
        for key, value in s.bytes_by_memory.items():
            moved[key] = moved.get(key, 0) + value
    bound = sum(max(s.demands_ps.values()) for s in steps)
    utilisation = _utilisation(acc, steps[0].step.phase, duration)
    return {
        "steps": len(steps),
        "time_s": ps_to_s(duration),
        "roofline_time_s": ps_to_s(bound),
        "roofline_bound_by": max(demands, key=demands.get),
        "demand_s": {k: ps_to_s(v) for k, v in sorted(demands.items())},
        "bytes_by_memory": moved,
        "utilisation": utilisation,
        "bounding_component": _bounding(utilisation, components),
        "channels": {name: mem.channel_report(steps[0].step.phase, duration) for name, mem in acc.memories.items()},
        "counts": _counts(acc, steps[0].step.phase),
    }


def _counts(acc: Accelerator, phase: str) -> dict[str, dict[str, int]]:
    """Each component's event counts in ``phase`` (bytes moved, ...), from its Stats."""
    out = {}
    for name, comp in acc.components.items():
        counts = comp.stats.counts.get(phase, {})
        if counts:
            out[name] = dict(sorted(counts.items()))
    return out


def _bounding(utilisation: dict, components: dict) -> str:
    """The busiest throughput resource (a memory or compute component; the first one on a tie)."""
    return max(with_roles(components, *BOUNDING_ROLES), key=lambda c: utilisation[c]["busy"])


def _utilisation(acc: Accelerator, phase: str, duration: int) -> dict:
    out = {}
    for name, comp in acc.components.items():
        times = comp.stats.time_ps.get(phase, {})
        width = comp.cfg.channels if name in acc.memories else 1
        out[name] = {state: value / (duration * width) for state, value in sorted(times.items())}
        out[name].setdefault("busy", 0.0)
    return out


def _add_decode_rates(cfg: Config, phase: dict, steps: list[StepRecord]) -> None:
    tokens = cfg.workload.batch * len(steps)
    phase["tokens_per_s"] = tokens / phase["time_s"]
    phase["ms_per_token"] = 1e3 * phase["time_s"] / len(steps)
    phase["bytes_per_step"] = {m: b / len(steps) for m, b in phase["bytes_by_memory"].items()}
    memory_time = sum(max(s.demands_ps.get(m, 0) for m in cfg.memory) for s in steps)
    phase["bandwidth_bound_tokens_per_s"] = tokens / ps_to_s(memory_time)


def _weights(acc: Accelerator) -> dict:
    graph = acc.workload.graph
    formats: dict[str, int] = {}
    decoder = embedding = 0
    for _, data in graph.nodes(data=True):
        if data["kind"] == OpKind.LINEAR:
            formats[data["weight_format"]] = formats.get(data["weight_format"], 0) + data["weight_nbytes"]
            decoder += data["weight_nbytes"] if data["layer"] is not None else 0
        elif data["kind"] == OpKind.EMBEDDING:
            embedding += embedding_table_bytes(data)
    placed = {m: acc.placement.bytes_in(m) for m in acc.memories}
    total = sum(formats.values())
    return {"bytes_by_format": formats, "total_bytes": total, "decoder_layer_bytes": decoder,
            "lm_head_bytes": total - decoder, "embedding_bytes": embedding, "allocated_bytes_by_memory": placed,
            "storage_bytes_per_weight": storage_per_weight(graph, acc.cfg.workload.group_size)}


def storage_per_weight(graph: nx.DiGraph, group_size: int) -> dict[str, float]:
    """Bytes per dense weight (values + indices + scales) of the decoder-layer linears in
    each storage format: the exact packed layout size, which tests check equals the
    length of real packed arrays (tests/workloads/test_packing.py)."""
    from tlmsim.workloads.formats import STORAGE_FORMATS, parse_format

    shapes = [(d["out_features"], d["in_features"]) for _, d in graph.nodes(data=True)
              if d["kind"] == OpKind.LINEAR and d["layer"] is not None]
    dense = sum(o * i for o, i in shapes)
    table = {}
    for spec in STORAGE_FORMATS:
        fmt = parse_format(spec, group_size)
        if all(i % (fmt.m or 1) == 0 for _, i in shapes):
            table[spec] = sum(fmt.packed_nbytes(o, i) for o, i in shapes) / dense
    return table


def _op(rec) -> dict:
    return {"name": rec.name, "kind": str(rec.kind), "layer": rec.layer, "step": rec.step, "phase": rec.phase,
            "time_s": ps_to_s(rec.end_ps - rec.start_ps), "start_s": ps_to_s(rec.start_ps),
            "roofline_s": ps_to_s(rec.bound_ps), "bound_by": rec.bound_by,
            "demand_s": {k: ps_to_s(v) for k, v in rec.demands_ps.items()},
            "bytes": sum(rec.bytes_by_memory.values())}
