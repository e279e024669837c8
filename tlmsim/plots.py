"""Timelines and sweep plots drawn from recorded results (never from live simulator state).

This is the only module that imports matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tlmsim.engine.trace import Counter, Slice, bandwidth_series, component_order  # noqa: E402

IDLE = "#eceff1"
STATE_COLOURS = {"busy": "#2e7d32", "stall:waiting for operands": "#c62828", "stall:waiting for decoder": "#ef6c00",
                 "stall:buffer full": "#6a1b9a", "stall:back-pressure from PEs": "#f9a825",
                 "stall:waiting for dependency": "#78909c", "idle": IDLE}
OTHER = ["#1565c0", "#00838f", "#ad1457", "#4e342e"]
BOUND_COLOURS = {"hbm": "#1565c0", "ddr": "#00838f", "decoder": "#ef6c00", "pe_array": "#2e7d32",
                 "vector_unit": "#ad1457"}


def colour(state: str) -> str:
    """Fill colour of a state (unknown stall reasons get a stable spare colour)."""
    return STATE_COLOURS.get(state) or OTHER[sum(map(ord, state)) % len(OTHER)]


def _save(fig, paths: Sequence[Path]) -> None:
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- timeline


def timeline(slices: list[Slice], counters: list[Counter], start_ps: int, end_ps: int, paths: Sequence[Path],
             title: str, utilisation: dict[str, dict[str, float]], memories: dict[str, float] | None = None,
             lanes: list[str] | None = None) -> list[str]:
    """Gantt lanes (busy/stall/idle) of every component in [start_ps, end_ps] plus a
    utilisation bar each. Memory lanes show requests in flight and, as a black line, the
    delivered bandwidth as a fraction of peak; buffer lanes show the tiles they hold. ``lanes`` gives
    the lanes and their order (``tlmsim run`` passes report.timeline_lanes: the result's
    components by role); without it, every traced track in trace.component_order. Returns the lanes."""
    memories = memories or {}
    window = [s for s in slices if s.end_ps > start_ps and s.start_ps < end_ps]
    occupancy = {c.track.split(" ", 1)[0]: c.track for c in counters}
    names = lanes or sorted({s.track for s in slices} | set(occupancy) | set(memories), key=component_order)
    scale, unit = _time_unit(end_ps - start_ps)
    fig, (ax, bar) = plt.subplots(1, 2, figsize=(14, 0.6 * len(names) + 2.4), sharey=True,
                                  gridspec_kw={"width_ratios": [5, 1.1], "wspace": 0.04})
    for y, name in enumerate(names):
        ax.broken_barh([(0, (end_ps - start_ps) / scale)], (y - 0.4, 0.8), facecolors=IDLE, linewidth=0)
        for state, bars in _bars(window, name, start_ps, end_ps, scale).items():
            ax.add_collection(_rectangles(bars, y - 0.4, 0.8, colour(state)))
        if name in memories:
            _bandwidth_line(ax, slices, name, memories[name], y, start_ps, end_ps, scale)
        if name in occupancy:
            _occupancy_line(ax, [c for c in counters if c.track == occupancy[name]], y, start_ps, end_ps, scale)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, (end_ps - start_ps) / scale)
    ax.set_xlabel(f"time since window start ({unit})")
    ax.set_ylabel("component")
    ax.set_title(title, loc="left")
    used = _utilisation_bars(bar, names, utilisation)
    states = sorted({s.state for s in window} | used, key=lambda s: (s != "busy", s == "idle", s))
    handles = [Patch(color=colour(s), label=s.removeprefix("stall:") if s != "busy" else s) for s in states]
    handles += [plt.Line2D([], [], color="black", lw=1, label="memory: delivered / peak bandwidth"),
                plt.Line2D([], [], color="#0d47a1", lw=1, ls="--", label="buffer: tiles held / most held")]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=8, frameon=False)
    height = 0.6 * len(names) + 2.4
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.45 / height, bottom=1.2 / height)
    _save(fig, paths)
    return names


def _time_unit(span_ps: int) -> tuple[float, str]:
    return (1e9, "ms") if span_ps >= 5e9 else (1e6, "µs")


def _bars(window: list[Slice], track: str, start_ps: int, end_ps: int, scale: float) -> dict[str, list]:
    """Per state, the (start, width) of the union of ``track``'s intervals in the window
    (overlapping requests in flight merge: the same picture, fewer shapes to draw)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for s in window:
        if s.track == track:
            spans.setdefault(s.state, []).append((max(s.start_ps, start_ps), min(s.end_ps, end_ps)))
    return {state: [((lo - start_ps) / scale, (hi - lo) / scale) for lo, hi in _union(intervals)]
            for state, intervals in spans.items()}


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _rectangles(bars: list[tuple[float, float]], bottom: float, height: float, face: str) -> PolyCollection:
    """One collection of rectangles (start, width) x (bottom, height): built with numpy, as
    a trace window holds tens of thousands of them."""
    xy = np.asarray(bars, dtype=float).reshape(-1, 2)
    lo, hi = xy[:, 0], xy[:, 0] + xy[:, 1]
    top = bottom + height
    verts = np.stack([np.stack([lo, np.full_like(lo, bottom)], 1), np.stack([lo, np.full_like(lo, top)], 1),
                      np.stack([hi, np.full_like(lo, top)], 1), np.stack([hi, np.full_like(lo, bottom)], 1)], 1)
    return PolyCollection(verts, facecolors=face, linewidths=0)


def _bandwidth_line(ax, slices, name, peak_gbps, y, start_ps, end_ps, scale) -> None:
    series = bandwidth_series(slices, name, bins=200, window=(start_ps, end_ps))
    if series:
        ax.step([(t - start_ps) / scale for t, _ in series], [y + 0.4 - 0.8 * min(g / peak_gbps, 1) for _, g in series],
                where="post", color="black", lw=0.8)


def _occupancy_line(ax, samples: list[Counter], y, start_ps, end_ps, scale) -> None:
    top = max((c.value for c in samples), default=0) or 1
    before = [c.value for c in samples if c.ts_ps <= start_ps][-1:] or [0]
    pts = [(start_ps, before[0])] + [(c.ts_ps, c.value) for c in samples if start_ps < c.ts_ps < end_ps]
    pts.append((end_ps, pts[-1][1]))
    ax.step([(t - start_ps) / scale for t, _ in pts], [y + 0.4 - 0.8 * v / top for _, v in pts],
            where="post", color="#0d47a1", lw=0.8, ls="--")


def _utilisation_bars(ax, names: list[str], utilisation: dict) -> set[str]:
    used = set()
    for y, name in enumerate(names):
        left = 0.0
        states = utilisation.get(name, {})
        for state in sorted(states, key=lambda s: (s != "busy", s)):
            width = min(states[state], 1 - left)
            ax.barh(y, width, left=left, color=colour(state), height=0.8)
            left += width
            used.add(state)
        ax.barh(y, 1 - left, left=left, color=IDLE, height=0.8)
        ax.text(0.02, y, f"{states.get('busy', 0):.0%}", va="center", fontsize=8, color="white"
                if states.get("busy", 0) > 0.12 else "black")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of window")
    ax.set_title("utilisation", loc="left")
    return used


# ---------------------------------------------------------------- sweeps


def sweep_plot(rows: list[dict], x_field: str, paths: Sequence[Path], title: str, knee_x: float | None = None,
               series_field: str | None = None) -> None:
    """Decode tokens/s vs ``x_field`` with the bandwidth and compute rooflines, the knee,
    and (lower panel) which component bounds each point."""
    ok = [r for r in rows if r.get("status") == "ok" and isinstance(r.get("tokens_per_s"), float)]
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    for label, group in _series(ok, series_field):
        xs = [r[x_field] for r in group]
        line, = ax.plot(xs, [r["tokens_per_s"] for r in group], "o-", ms=4, label=f"simulated{label}")
        ax.plot(xs, [r["bandwidth_bound_tokens_per_s"] for r in group], "--", color=line.get_color(), lw=1,
                label=f"bandwidth roofline (bandwidth / bytes per token){label}")
        unit = group[-1].get("compute_bound_by", "busiest compute unit")
        ax.plot(xs, [r["compute_bound_tokens_per_s"] for r in group], ":", color=line.get_color(), lw=1.5,
                label=f"compute roofline ({unit}){label}")
    if knee_x is not None:
        ax.axvline(knee_x, color="grey", lw=1)
        ax.annotate(f"knee {knee_x:.4g}", (knee_x, 0.05), xycoords=("data", "axes fraction"), rotation=90,
                    ha="right", fontsize=8)
    top = max((r["tokens_per_s"] for r in ok), default=1)
    ax.set_ylim(0, top * 1.35)
    ax.set_ylabel("decode throughput (tokens/s)")
    ax.set_title(title, loc="left")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    _bound_strip(strip, ok, x_field)
    strip.set_xlabel(_axis_label(x_field))
    if ok and min(r[x_field] for r in ok) > 0 and _spread(ok, x_field) > 20:
        strip.set_xscale("log")
    fig.tight_layout()
    _save(fig, paths)


def _series(rows: list[dict], field: str | None) -> list[tuple[str, list[dict]]]:
    if field is None:
        return [("", rows)]
    values = sorted({r[field] for r in rows}, key=str)
    return [(f" ({field}={v})", [r for r in rows if r[field] == v]) for v in values]


def _spread(rows: list[dict], field: str) -> float:
    xs = [r[field] for r in rows]
    return max(xs) / min(xs)


def _bound_strip(ax, rows: list[dict], x_field: str) -> None:
    comps = sorted({r["bound_by"] for r in rows})
    for r in rows:
        ax.scatter(r[x_field], comps.index(r["bound_by"]), color=BOUND_COLOURS.get(r["bound_by"], "black"), s=25)
    ax.set_yticks(range(len(comps)), comps)
    ax.set_ylim(-0.6, len(comps) - 0.4)
    ax.set_ylabel("bound by")
    ax.grid(alpha=0.3)


def _axis_label(field: str) -> str:
    units = {"_gbps": "GB/s", "_mhz": "MHz", "_ns": "ns", "_kib": "KiB", "_gib": "GiB"}
    unit = next((u for suffix, u in units.items() if field.endswith(suffix)), "")
    return f"{field} ({unit})" if unit else field


def is_number(value) -> bool:
    """True for a finite int/float (plottable x values)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- design-space exploration


def pareto_plot(rows: list[dict], paths: Sequence[Path], title: str, proxy: str = "tiny") -> None:
    """Decode tokens/s vs proxy perplexity: colour J/token, marker size the board's most used
    resource, the Pareto front ringed and joined, infeasible points faint grey."""
    fig, ax = plt.subplots(figsize=(9, 6))
    # Without an accuracy proxy the x axis is energy per token instead.
    x = "perplexity" if any(is_number(r.get("perplexity")) for r in rows) else "decode_j_per_token"
    shown = [r for r in rows if is_number(r.get(x)) and is_number(r.get("tokens_per_s"))]
    ok = [r for r in shown if r.get("feasible")]
    bad = [r for r in shown if not r.get("feasible")]
    if bad:
        ax.scatter([r[x] for r in bad], [r["tokens_per_s"] for r in bad], s=18, color="#b0bec5", alpha=0.4,
                   label="infeasible (over budget, or a constraint)")
    if ok:
        energy = [r.get("decode_j_per_token") if is_number(r.get("decode_j_per_token")) else 0.0 for r in ok]
        size = [20 + 300 * (r["resource_share"] if is_number(r.get("resource_share")) else 0.2) for r in ok]
        dots = ax.scatter([r[x] for r in ok], [r["tokens_per_s"] for r in ok], c=energy, s=size,
                          cmap="viridis", alpha=0.85, edgecolors="none")
        fig.colorbar(dots, ax=ax, label="decode J/token")
        front = sorted((r for r in ok if r.get("pareto")), key=lambda r: r[x])
        ax.plot([r[x] for r in front], [r["tokens_per_s"] for r in front], "-", color="#c62828", lw=1)
        ax.scatter([r[x] for r in front], [r["tokens_per_s"] for r in front], s=90, facecolors="none",
                   edgecolors="#c62828", lw=1.2, label="Pareto front (all objectives)")
    ax.set_xlabel(f"perplexity of the {proxy} proxy model, compressed to the point's format (lower is better)"
                  if x == "perplexity" else "decode J/token (no accuracy proxy)")
    ax.set_ylabel("decode throughput of the target model (tokens/s)")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="marker size: board's most used resource", title_fontsize=8)
    fig.tight_layout()
    _save(fig, paths)
