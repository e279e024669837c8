"""Timeline plots drawn from recorded trace slices (never from live simulator state).

This is the only module that imports matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from tlmsim.trace import Slice  # noqa: E402

LANE_ORDER = ["hbm", "ddr", "weight_dma", "kv_dma", "decoder", "pe_array", "vector_unit", "controller"]
STATE_COLOURS = {"busy": "#2e7d32", "stall:waiting for operands": "#c62828", "stall:waiting for decoder": "#ef6c00",
                 "stall:buffer full": "#6a1b9a", "stall:back-pressure from PEs": "#8e24aa",
                 "stall:waiting for dependency": "#90a4ae"}


def timeline(slices: list[Slice], start_ps: int, end_ps: int, path: Path, title: str) -> None:
    """Gantt chart of every component's busy/stall intervals in [start_ps, end_ps]."""
    window = [s for s in slices if s.end_ps > start_ps and s.start_ps < end_ps]
    tracks = sorted({s.track for s in window}, key=_lane_key)
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(tracks) + 1.8))
    for y, track in enumerate(tracks):
        for state, bars in _bars(window, track, start_ps, end_ps).items():
            ax.broken_barh(bars, (y - 0.35, 0.7), facecolors=STATE_COLOURS.get(state, "#1565c0"), linewidth=0)
    ax.set_yticks(range(len(tracks)), tracks)
    ax.invert_yaxis()
    ax.set_xlim(0, (end_ps - start_ps) / 1e6)
    ax.set_xlabel("time since window start (µs)")
    ax.set_title(title)
    used = sorted({s.state for s in window})
    ax.legend(handles=[Patch(color=STATE_COLOURS.get(s, "#1565c0"), label=s) for s in used],
              loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(4, len(used)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lane_key(track: str) -> tuple[int, str]:
    return (LANE_ORDER.index(track) if track in LANE_ORDER else len(LANE_ORDER), track)


def _bars(window: list[Slice], track: str, start_ps: int, end_ps: int) -> dict[str, list[tuple[float, float]]]:
    bars: dict[str, list[tuple[float, float]]] = {}
    for s in window:
        if s.track == track:
            lo, hi = max(s.start_ps, start_ps), min(s.end_ps, end_ps)
            bars.setdefault(s.state, []).append(((lo - start_ps) / 1e6, (hi - lo) / 1e6))
    return bars
