"""``tlmsim validate``: simulate published FPGA LLM accelerators and state the error.

``configs/validation/designs.yaml`` lists the designs: each has a tlmsim config built from
its paper (every value commented with its source or marked as assumed) and the points the
paper measured (metric, published value, citation, and any workload overrides). Every
point is simulated with the same model constants (the presets); nothing is fitted. The
table (design, metric, published, simulated, error, bounding component) is printed and
written as validation.md and validation.csv to ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from tlmsim.config import Section, load_config
from tlmsim.engine.configbase import load_model_file
from tlmsim.engine.errors import ConfigError
from tlmsim.output import check_out, write_table_dir
from tlmsim.progress import Progress
from tlmsim.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "configs" / "validation" / "designs.yaml"
# What each metric reads from a result: (phase, field of the phase) or (None, field of the summary).
METRICS = {"decode_tokens_per_s": ("decode", "tokens_per_s"), "prefill_s": ("prefill", "time_s"),
           "decode_power_w": (None, "decode_power_w")}
COLUMNS = ["design", "metric", "workload", "published", "simulated", "error_pct", "bound_by", "source"]


class Point(Section):
    """One published measurement."""

    metric: Literal["decode_tokens_per_s", "prefill_s", "decode_power_w"]
    published: float = Field(gt=0)
    source: str = Field(min_length=10, description="paper and table/figure, or the artifact file")
    set: list[str] = Field([], description="config overrides for this point's workload")


class Design(Section):
    """A built accelerator: its config and what its paper measured."""

    name: str
    title: str
    config: str = Field(description="config file, relative to the designs file")
    points: list[Point] = Field(min_length=1)


class Designs(Section):
    """The designs file."""

    designs: list[Design] = Field(min_length=1)


def load_designs(path: Path = DESIGNS) -> Designs:
    """Read and check the designs file."""
    return load_model_file(path, Designs, "designs file", "configs/validation/designs.yaml")


def validation_rows(path: Path = DESIGNS, only: str | None = None, progress: Progress | None = None) -> list[dict]:
    """One row per published point: what the simulation gives and how far it is."""
    designs = [d for d in load_designs(path).designs if only is None or d.name == only]
    if not designs:
        raise ConfigError(f"--only {only}: no such design in {path}; use one of its names")
    total, rows, runs = sum(len(d.points) for d in designs), [], {}
    for design in designs:
        config = path.parent / design.config
        for point in design.points:
            key = (str(config), tuple(point.set))
            if key not in runs:  # points of one workload share one simulation
                runs[key] = simulate(load_config(config, list(point.set))).data
            rows.append(_row(design, point, runs[key]))
            if progress is not None:
                progress.update(len(rows), total, design.name)
    return rows


def _row(design: Design, point: Point, data: dict) -> dict:
    phase, field = METRICS[point.metric]
    simulated = (data["phases"][phase] if phase else data["summary"])[field]
    bound = data["phases"][phase or "decode"]["bounding_component"]
    workload = data["config"]["workload"]
    return {"design": design.name, "metric": point.metric,
            "workload": f"{workload['model']}, {workload['weight_format']}, prompt {workload['prefill_tokens']}",
            "published": point.published, "simulated": round(simulated, 4),
            "error_pct": round(100 * (simulated - point.published) / point.published, 1),
            "bound_by": bound, "source": point.source}


def summary(rows: list[dict]) -> dict:
    """Median and largest absolute error over the rows, in %."""
    errors = sorted(abs(r["error_pct"]) for r in rows)
    mid = len(errors) // 2
    median = errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2
    return {"points": len(errors), "median_abs_error_pct": median, "max_abs_error_pct": errors[-1]}


def markdown(rows: list[dict]) -> str:
    """The table, then its median and largest absolute error."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c, r[c]) for c in COLUMNS) + " |" for r in rows]
    s = summary(rows)
    lines += ["", f"{s['points']} points: median absolute error {s['median_abs_error_pct']:.1f} %, "
                  f"largest {s['max_abs_error_pct']:.1f} %."]
    return "\n".join(lines)


def _cell(column: str, value) -> str:
    if column == "error_pct":
        return f"{value:+.1f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_and_write(out: Path | None, designs: Path = DESIGNS, only: str | None = None, quiet: bool = False) -> int:
    """Simulate every point, print the table and write validation.md and validation.csv to ``out``."""
    out = out if out is not None else Path("results") / "validation"
    check_out(out, "validate", [designs])  # before the runs, not after
    with Progress("validation point", enabled=not quiet) as progress:
        rows = validation_rows(designs, only, progress)
    write_table_dir(out, "validate", [designs], "validation", rows, COLUMNS, markdown(rows))
    print(markdown(rows))
    print(f"  validation written to {out}/ (validation.csv, validation.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tlmsim.validate`` (the same as ``tlmsim validate``)."""
    from tlmsim.cli import main as cli_main

    return cli_main(["validate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
