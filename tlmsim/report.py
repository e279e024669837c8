"""Presentation of a run, computed from its result records alone: the summary, the
bottleneck report, the timeline's window and lanes, and the trace's step/layer markers.

Critical path: within a step, ops are ordered by completion time; op k is charged the
time between the previous completion and its own (``exposed_s``). The charges sum to
the step time exactly, and an op hidden behind another (a KV append in parallel with
a projection, a prefetched weight tile) is charged ~0. Each op's charge goes to the
resource that bounds it (its roofline ``bound_by``), giving "which component bounds
this layer / step, and by how much" without any live simulator state.
"""

from __future__ import annotations

import re
from collections import defaultdict

from tlmsim.engine.errors import UserError
from tlmsim.engine.trace import Slice
from tlmsim.results import WORKING_ROLES, in_role_order, with_roles

PS_PER_S = 10**12
WINDOW_HELP = "all, step:K, layer:N or step:K,layer:N (K = 0 is the prefill)"


def _ps(seconds: float) -> int:
    return round(seconds * PS_PER_S)


def steps_of(result: dict) -> dict[int, list[dict]]:
    """The kept op records of each step, by step index."""
    out: dict[int, list[dict]] = defaultdict(list)
    for op in result["ops"]:
        out[op["step"]].append(op)
    return dict(sorted(out.items()))


def op_end_s(op: dict) -> float:
    """Completion time of an op record, in s."""
    return op["start_s"] + op["time_s"]


def critical_path(ops: list[dict]) -> list[tuple[dict, float]]:
    """(op, exposed seconds) in completion order; the exposed times sum to the step span."""
    ordered = sorted(ops, key=op_end_s)
    last = min(op["start_s"] for op in ops)
    out = []
    for op in ordered:
        end = op_end_s(op)
        out.append((op, max(0.0, end - last)))
        last = max(last, end)
    return out


def _margin(op: dict) -> float | None:
    """How far the bounding demand exceeds the next one (needs per-op ``demand_s``)."""
    demands = sorted(op.get("demand_s", {}).values(), reverse=True)
    return demands[0] / demands[1] if len(demands) > 1 and demands[1] > 0 else None


def _group(rows: list[tuple[dict, float]], key) -> dict:
    groups: dict = defaultdict(lambda: {"exposed_s": 0.0, "op_bounds_sum_s": 0.0, "by_component": defaultdict(float)})
    for op, exposed in rows:
        g = groups[key(op)]
        g["exposed_s"] += exposed
        g["op_bounds_sum_s"] += op["roofline_s"]
        g["by_component"][op["bound_by"]] += exposed
    return groups


def _summarise(group: dict) -> dict:
    comps = dict(sorted(group["by_component"].items(), key=lambda kv: -kv[1]))
    total = group["exposed_s"]
    bound = next(iter(comps), "none")
    return {"exposed_s": total, "bound_by": bound, "bound_share": comps.get(bound, 0.0) / total if total else 0.0,
            "by_component_s": comps, "op_bounds_sum_s": group["op_bounds_sum_s"]}


def step_report(step: int, ops: list[dict]) -> dict:
    """Critical-path attribution of one step: totals, per layer, per op."""
    rows = critical_path(ops)
    whole = _summarise(_group(rows, lambda op: "step")["step"])
    layers = _group(rows, lambda op: op["layer"])
    return {
        "step": step, "phase": ops[0]["phase"], "time_s": whole["exposed_s"], **whole,
        "layers": [{"layer": layer, **_summarise(g)} for layer, g in
                   sorted(layers.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0))],
        "ops": [{"name": op["name"], "layer": op["layer"], "exposed_s": exposed, "time_s": op["time_s"],
                 "roofline_s": op["roofline_s"], "bound_by": op["bound_by"],
                 "x_roofline": op["time_s"] / op["roofline_s"] if op["roofline_s"] else None,
                 "margin": _margin(op)} for op, exposed in rows],
    }


def bottlenecks(result: dict) -> dict:
    """The bottleneck report of a run (saved as result.json["bottlenecks"])."""
    return {"method": "completion-order critical path; each op's exposed time goes to its roofline bound_by",
            "steps": [step_report(step, ops) for step, ops in steps_of(result).items()]}


def op_pattern(name: str) -> str:
    """An op name with layer numbers replaced by '*' (groups the same op across layers)."""
    return re.sub(r"\.\d+\.", ".*.", name)


def top_ops(step: dict, count: int = 3) -> list[tuple[str, float, str]]:
    """The op patterns with the most exposed time in a step: (pattern, seconds, bound_by)."""
    sums: dict[str, list] = {}
    for op in step["ops"]:
        entry = sums.setdefault(op_pattern(op["name"]), [0.0, defaultdict(float)])
        entry[0] += op["exposed_s"]
        entry[1][op["bound_by"]] += op["exposed_s"]
    ranked = sorted(sums.items(), key=lambda kv: -kv[1][0])[:count]
    return [(name, total, max(by, key=by.get)) for name, (total, by) in ranked]


def format_report(report: dict) -> str:
    """The short bottleneck table printed by ``tlmsim run``."""
    comps = sorted({c for s in report["steps"] for c in s["by_component_s"]})
    lines = ["  critical path: share of step time bound by each resource",
             f"    {'step':<14}{'time':>11}" + "".join(f"{c:>13}" for c in comps)]
    for s in report["steps"]:
        shares = "".join(f"{s['by_component_s'].get(c, 0.0) / s['time_s']:13.1%}" for c in comps)
        lines.append(f"    {s['phase'] + ' ' + str(s['step']):<14}{_ms(s['time_s']):>11}{shares}")
    for s in report["steps"]:
        tops = ", ".join(f"{name} {_ms(t)} ({b})" for name, t, b in top_ops(s))
        lines.append(f"    top ops {s['phase']} {s['step']}: {tops}")
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.1 else f"{seconds * 1e3:.1f} ms"


# ---------------------------------------------------------------- timeline windows


def default_window(steps: list[dict]) -> dict:
    """The first decode step (or the prefill) of result["steps"]: what timeline.png shows by default."""
    step = steps[1] if len(steps) > 1 else steps[0]
    label = f"decode step 1 (KV length {step['kv']})" if step["phase"] == "decode" else "prefill"
    return {"start_ps": step["start_ps"], "end_ps": step["end_ps"], "label": label}


def parse_window(spec: str) -> dict[str, int]:
    """Parse a window spec into {"step": K, "layer": N} (either optional); "all" -> {}."""
    if spec == "all":
        return {}
    parts: dict[str, int] = {}
    for item in spec.split(","):
        key, _, value = item.partition(":")
        if key not in ("step", "layer") or not value.isdigit() or key in parts:
            raise UserError(f"--timeline-window '{spec}' is not valid; use {WINDOW_HELP}")
        parts[key] = int(value)
    return parts


def check_window_traced(spec: str, trace_prefill: bool, decode_steps: int, total_decode: int) -> None:
    """Reject, before simulating, a window whose step the tracer will not record."""
    step = parse_window(spec).get("step")
    if step is None:
        return
    traced = (step == 0 and trace_prefill) or (1 <= step <= min(decode_steps, total_decode))
    if not traced:
        raise UserError(f"--timeline-window: step {step} is not traced; set trace.decode_steps >= {step} "
                        "(or trace.prefill=true for step 0)")


def timeline_window(result: dict, slices, spec: str | None) -> tuple[int, int, str]:
    """(start_ps, end_ps, label) of what timeline.png shows: the window spec, or the default."""
    if spec is None:
        w = result["timeline_window"]
        return w["start_ps"], w["end_ps"], w["label"]
    extent = (min((s.start_ps for s in slices), default=0), max((s.end_ps for s in slices), default=1))
    return resolve_window(result, spec, extent)


def resolve_window(result: dict, spec: str, extent_ps: tuple[int, int]) -> tuple[int, int, str]:
    """(start_ps, end_ps, label) of a window spec; ``extent_ps`` is the traced span for "all"."""
    parts = parse_window(spec)
    if not parts:
        return extent_ps[0], extent_ps[1], "whole traced run"
    steps = steps_of(result)
    step = parts.get("step", 1 if 1 in steps else 0)
    ops = [op for op in steps.get(step, []) if "layer" not in parts or op["layer"] == parts["layer"]]
    if not ops:
        raise UserError(f"--timeline-window '{spec}': no such step/layer in this run (steps with op records: "
                        f"{sorted(steps)}; layers 0-{max((o['layer'] or 0) for o in result['ops'])})")
    start, end = _ps(min(op["start_s"] for op in ops)), _ps(max(op_end_s(op) for op in ops))
    phase = ops[0]["phase"]
    label = f"{phase} step {step}" + (f", decoder layer {parts['layer']}" if "layer" in parts else "")
    return max(start, extent_ps[0]), min(end, extent_ps[1]), label


def timeline_lanes(result: dict) -> list[str]:
    """The timeline's lanes: every component, memories first, grouped by role."""
    return in_role_order(result["components"])


def memory_peaks(result: dict) -> dict[str, float]:
    """Peak bandwidth (GB/s) of each memory (what memory lanes and counters are scaled to)."""
    memories = result["config"]["memory"]
    return {name: memories[name]["bandwidth_gbps"] for name in with_roles(result["components"], "memory")}


# ---------------------------------------------------------------- trace markers


def trace_markers(result: dict) -> list[Slice]:
    """Step and decoder-layer spans (from the op records) for the trace's "workload" track."""
    out = []
    for step, ops in steps_of(result).items():
        out.append(_span("steps", f"{ops[0]['phase']} step {step}", ops))
        for layer in sorted({op["layer"] for op in ops if op["layer"] is not None}):
            out.append(_span("layers", f"step {step} layer {layer}", [o for o in ops if o["layer"] == layer]))
    return out


def _span(track: str, name: str, ops: list[dict]) -> Slice:
    start, end = min(o["start_s"] for o in ops), max(op_end_s(o) for o in ops)
    return Slice(track, "marker", name, _ps(start), _ps(end))


# ---------------------------------------------------------------- window utilisation


def window_utilisation(slices, start_ps: int, end_ps: int, memories: dict[str, float] | None = None) -> dict:
    """Per track, the fraction of [start, end] in each state; memories (name -> peak GB/s)
    report "busy" as bytes moved / (peak x window), since their requests overlap."""
    memories = memories or {}
    span = end_ps - start_ps
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in slices:
        lo, hi = max(s.start_ps, start_ps), min(s.end_ps, end_ps)
        if hi <= lo:
            continue
        if s.track in memories:
            share = (hi - lo) / (s.end_ps - s.start_ps)
            out[s.track]["busy"] += s.args.get("bytes", 0) * share / (memories[s.track] * 1e9 * span / PS_PER_S)
        else:
            out[s.track][s.state] += (hi - lo) / span
    return {track: dict(states) for track, states in out.items()}


# ---------------------------------------------------------------- run summary

# "bound" always means an analytic limit the simulation cannot beat (roofline, bandwidth);
# the component that limits the simulated run is its "bottleneck".


def summary_components(result: dict) -> list[str]:
    """Components that do work, by role (buffers and the controller only wait)."""
    return with_roles(result["components"], *WORKING_ROLES)


def summary_block(result: dict) -> dict:
    """The headline numbers of a run (result.json["summary"]), units in the names."""
    wl = result["config"]["workload"]
    pre, dec = result["phases"]["prefill"], result["phases"].get("decode")
    out = {"ttft_s": pre["time_s"],
           "prefill_tokens_per_s": wl["batch"] * wl["prefill_tokens"] / pre["time_s"],
           "prefill_roofline_bound_s": pre["roofline_time_s"],
           "prefill_bottleneck": pre["bounding_component"],
           "decode_tokens_per_s": None, "decode_ms_per_step": None, "decode_tokens_per_step": wl["batch"],
           "decode_bandwidth_bound_tokens_per_s": None, "decode_bottleneck": None}
    if dec:
        out.update({"decode_tokens_per_s": dec["tokens_per_s"], "decode_ms_per_step": dec["ms_per_token"],
                    "decode_bandwidth_bound_tokens_per_s": dec["bandwidth_bound_tokens_per_s"],
                    "decode_bottleneck": dec["bounding_component"]})
    weights = result["weights"]
    out.update({"weight_bytes": weights["total_bytes"], "embedding_bytes": weights["embedding_bytes"]})
    out.update(_energy_summary(result))
    return out


def _energy_summary(result: dict) -> dict:
    energy = (result.get("energy") or {}).get("phases", {})
    pre, dec = energy.get("prefill"), energy.get("decode")
    return {"prefill_j_per_token": pre["j_per_token"] if pre else None,
            "decode_j_per_token": dec["j_per_token"] if dec else None,
            "decode_tokens_per_j": dec["tokens_per_j"] if dec else None,
            "decode_power_w": dec["average_w"] if dec else None,
            "what_if": bool((result.get("cost") or {}).get("what_if"))}


RESOURCE_LABELS = {"dsp": "DSP", "lut": "LUT", "ff": "FF", "bram36": "BRAM36", "uram": "URAM"}


def format_cost(result: dict) -> list[str]:
    """Summary lines: resources (% of the board), energy per token and power per phase."""
    cost = result.get("cost")
    if not cost:
        return []
    used, share = cost["total"], cost["share_of_board"]
    lines = ["  resources on the " + cost["board"] + ": " + ", ".join(
        f"{RESOURCE_LABELS[k]} {used[k]:,.0f} ({share[k]:.0%})" if share[k] is not None else
        f"{RESOURCE_LABELS[k]} {used[k]:,.0f}" for k in RESOURCE_LABELS)]
    if cost["what_if"]:
        lines.append("  WHAT-IF (over budget, run with --allow-over-budget): " + "; ".join(cost["over_budget"]))
    for name, phase in ((result.get("energy") or {}).get("phases") or {}).items():
        lines.append(f"  energy {name:<7}: {phase['j_per_token']:.4g} J/token ({phase['tokens_per_j']:.3g} tokens/J), "
                     f"{phase['average_w']:.1f} W average ({phase['dynamic_w']:.1f} W dynamic)")
    return lines


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.3f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.3f} MB"


def format_weight_bytes(decoder: int, head: int, embedding: int) -> str:
    """Weight bytes as both ``tlmsim compress`` and ``tlmsim run`` print them."""
    return (f"weights: {_size(decoder + head)} streamed (decoder layers {_size(decoder)}, lm_head {_size(head)})"
            f" + embedding table {_size(embedding)} (gathered)")


def format_summary(result: dict, out=None, files: list[str] | None = None) -> str:
    """The short text summary printed after a run."""
    s, wl = result["summary"], result["config"]["workload"]
    lines = [f"{result['name']}",
             f"  prefill: {s['ttft_s'] * 1e3:9.2f} ms for {wl['batch']} x {wl['prefill_tokens']} tokens "
             f"({s['prefill_tokens_per_s']:.1f} tokens/s; roofline bound {s['prefill_roofline_bound_s'] * 1e3:.2f} ms; "
             f"bottleneck {s['prefill_bottleneck']})"]
    if s["decode_tokens_per_s"] is not None:
        per_step = "1 token" if wl["batch"] == 1 else f"{wl['batch']} tokens"
        lines.append(f"  decode : {s['decode_tokens_per_s']:9.2f} tokens/s  ({s['decode_ms_per_step']:.3f} ms per step "
                     f"of {per_step}; bandwidth bound {s['decode_bandwidth_bound_tokens_per_s']:.2f} tokens/s; "
                     f"bottleneck {s['decode_bottleneck']})")
    w = result["weights"]
    lines.append(f"  {format_weight_bytes(w['decoder_layer_bytes'], w['lm_head_bytes'], w['embedding_bytes'])}; "
                 f"formats {', '.join(w['bytes_by_format'])}")
    reuse = result.get("reuse", {})
    if reuse.get("disabled_reason") and result["config"]["simulation"]["reuse_identical_layers"]:
        lines.append(f"  steady state: reuse was off for this run ({reuse['disabled_reason']})")
    if reuse.get("layers_skipped") or reuse.get("tiles_skipped"):
        lines.append(f"  steady state: {reuse['layers_skipped']} repeated decoder layers and {reuse['tiles_skipped']} "
                     f"repeated tiles accounted without re-simulating them (exact; docs/performance.md)")
    lines += format_cost(result)
    lines.append("  busy fraction   " + "".join(f"{p:>10}" for p in result["phases"]))
    for comp in summary_components(result):
        row = "".join(f"{result['phases'][p]['utilisation'][comp]['busy']:10.1%}" for p in result["phases"])
        lines.append(f"    {comp:<14}{row}")
    if out is not None:
        lines.append(f"  results written to {out}/ ({', '.join(files or [])})")
    return "\n".join(lines)
