"""One sweep point (its config, its simulation, its CSV metrics) and the sweep's definition."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tlmsim.config import apply_override, validate_config
from tlmsim.coupled import COUPLED_FORMAT, format_overrides
from tlmsim.engine.errors import ConfigError
from tlmsim.engine.yamlio import read_text_file
from tlmsim.results import WORKING_ROLES, with_roles
from tlmsim.sweep.grid import Axis, count_text, grid_size, parse_axis, parse_yaml, point_key, points, sample_points

log = logging.getLogger("tlmsim.sweep")

# A sweep point costs seconds, so 10,000 points is hours of work; more is almost always a
# typo in a step (--max-points raises the cap on purpose).
MAX_POINTS = 10_000
# Sweeps need metrics, not traces: tracing a step costs several times its simulation.
NO_TRACE = {"prefill": False, "decode_steps": 0}


def point_config(raw: dict, point: dict, source: str = "sweep point"):
    """The validated Config of ``point`` (raises ConfigError naming the field)."""
    cfg = copy.deepcopy(raw)
    for field, value in point.items():
        if field != COUPLED_FORMAT:
            apply_override(cfg, f"{field}={json.dumps(value)}")
    if COUPLED_FORMAT in point:  # last: the array is rebuilt from its final multipliers per PE
        pe = cfg.get("accelerator", {}).get("pe_array", {})
        for item in format_overrides(pe.get("n", 2), pe.get("lanes", 16), str(point[COUPLED_FORMAT])):
            apply_override(cfg, item)
    cfg["trace"] = dict(NO_TRACE)
    return validate_config(cfg, source=source)


def run_point(raw: dict, point: dict) -> dict:
    """Simulate one point; never raises: failures come back as a row with the error."""
    from tlmsim.simulate import simulate

    started = time.perf_counter()
    try:
        row = {"status": "ok", "error": "", **metrics(simulate(point_config(raw, point)).data)}
    except Exception as err:  # noqa: BLE001  (a failing point is data, not a crash)
        log.debug("point %s failed:\n%s", point, traceback.format_exc())
        row = {"status": "error", "error": f"{type(err).__name__}: {err}".splitlines()[0]}
    return {"key": point_key(point), "point": point, **row, "wall_s": time.perf_counter() - started}


def metrics(result: dict) -> dict:
    """The flat per-point numbers of a result (RunResult.data) written to sweep.csv."""
    pre = result["phases"]["prefill"]
    row = {"prefill_ms": pre["time_s"] * 1e3, "prefill_roofline_ms": pre["roofline_time_s"] * 1e3,
           "prefill_bound_by": pre["bounding_component"]}
    summary = result.get("summary") or {}
    if result.get("cost"):
        shares = [v for v in result["cost"]["share_of_board"].values() if v is not None]
        row.update({"what_if": summary.get("what_if", False), "dsp": result["cost"]["total"]["dsp"],
                    "lut": result["cost"]["total"]["lut"], "decode_j_per_token": summary.get("decode_j_per_token"),
                    "resource_share": max(shares, default=None),  # the board's most used resource
                    "over_budget": "; ".join(result["cost"]["over_budget"])})
    dec = result["phases"].get("decode")
    if dec:
        tokens = result["config"]["workload"]["batch"] * dec["steps"]
        compute_units = with_roles(result["components"], "compute")
        units = {k: v for k, v in dec["demand_s"].items() if k in compute_units}
        compute = max(units.values(), default=0.0)
        row.update({
            "tokens_per_s": dec["tokens_per_s"], "ms_per_token": dec["ms_per_token"],
            "bound_by": dec["bounding_component"], "roofline_bound_by": dec["roofline_bound_by"],
            "bandwidth_bound_tokens_per_s": dec["bandwidth_bound_tokens_per_s"],
            "compute_bound_tokens_per_s": tokens / compute if compute else math.inf,
            "compute_bound_by": max(units, key=units.get) if units else "none",
            "roofline_tokens_per_s": tokens / dec["roofline_time_s"],
            "bytes_per_token": sum(dec["bytes_by_memory"].values()) / tokens})
        working = with_roles(result["components"], *WORKING_ROLES)
        row.update({f"busy_{c}": dec["utilisation"][c]["busy"] for c in working})
    return row


# ---------------------------------------------------------------- the sweep's definition


@dataclass
class SweepSpec:
    """Everything that defines a sweep: base config, fixed overrides, axes."""

    config_path: Path
    raw: dict
    axes: list[Axis]

    @property
    def total(self) -> int:
        """Number of points."""
        return grid_size(self.axes)

    def points(self) -> Iterator[dict]:
        """The points in grid order, one at a time."""
        return points(self.axes)

    @property
    def fingerprint(self) -> str:
        """Hash of the base config and axes: a resumed sweep must match it."""
        data = json.dumps({"raw": self.raw, "axes": [[a.field, a.definition] for a in self.axes]}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


def prepare(config_path: str | Path, items: list[str], max_points: int = MAX_POINTS) -> SweepSpec:
    """Parse the axes, refuse a grid above ``max_points`` and validate a sample of points before
    anything runs (user errors exit 2)."""
    from tlmsim.config import load_config

    axes = [parse_axis(item) for item in items]
    fields = [a.field for a in axes]
    if len(set(fields)) != len(fields):
        twice = sorted({f for f in fields if fields.count(f) > 1})
        raise ConfigError(f"--set names a field twice ({', '.join(twice)})")
    total = grid_size(axes)
    if total > max_points:
        sizes = [count_text(a.size) for a in axes if a.swept]
        product = f" ({' x '.join(sizes)})" if len(sizes) > 1 else ""
        raise ConfigError(f"the sweep has {count_text(total)} points{product}, more than --max-points "
                          f"{max_points:,}; use fewer values or raise --max-points")
    load_config(config_path)  # file and YAML errors, base validation
    raw = parse_yaml(read_text_file(config_path, str(config_path)), str(config_path))
    swept = [a.field for a in axes if a.swept]
    for point in sample_points(axes):
        where = ", ".join(f"{f}={json.dumps(point[f])}" for f in swept)
        point_config(raw, point, source=f"sweep point {where}" if where else "sweep point")
    return SweepSpec(Path(config_path), raw, axes)
