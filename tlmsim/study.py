"""Weight-format studies: one command regenerates each table (docs/studies.md).

    tlmsim study configs/studies/matmul_4096.yaml [--out DIR]

A study file names a base config, the formats to compare and the jobs (a single
matmul, or LLaMA decode/prefill). Every format runs on the same silicon budget: the
PE array keeps its multipliers (n x lanes per PE) and is rebuilt for the format's
N:M pattern, as an N:M accelerator generator would. Results are deterministic, so two
runs write identical tables.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from tlmsim import coupled
from tlmsim.config import TOKENS, Section, list_to_tuple, load_config
from tlmsim.engine.configbase import load_model_file
from tlmsim.output import check_out, write_table_dir
from tlmsim.progress import Progress
from tlmsim.results import with_roles
from tlmsim.simulate import simulate
from tlmsim.workloads.synthetic import single_linear

# YAML has no tuples: a [out, in] list becomes the tuple (strict mode would refuse it).
Shape = Annotated[tuple[Annotated[int, Field(ge=1, le=2**20)], Annotated[int, Field(ge=1, le=2**20)]],
                  BeforeValidator(list_to_tuple)]


class StudyConfig(Section):
    """A study: a base config, formats to compare, and what to run."""

    name: str
    base: str = Field(description="config the study starts from, relative to the study file")
    kind: Literal["matmul", "model", "bandwidth_sweep"]
    formats: list[str] = Field(min_length=1)
    shape: Shape = (4096, 4096)  # matmul: out x in
    batches: list[Annotated[int, Field(ge=1, le=4096)]] = [1]  # matmul: activation rows
    prefill_tokens: list[Annotated[int, Field(ge=1, le=TOKENS)]] = [128]  # model: prompt lengths
    decode_tokens: int = Field(8, ge=0, le=TOKENS)  # model: generated tokens per run
    bandwidth_axis: str = "log:50:5000:12"  # bandwidth_sweep: memory.hbm.bandwidth_gbps values
    overrides: list[str] = []  # applied to every run


def format_overrides(base_cfg, spec: str) -> list[str]:
    """Rebuild the PE array for ``spec`` keeping its multiplier count (n x lanes; tlmsim/coupled.py)."""
    pe = base_cfg.accelerator.pe_array
    return coupled.format_overrides(pe.n, pe.lanes, spec)


def run_study(path: Path, out: Path | None = None, progress: Progress | None = None) -> list[dict]:
    """All rows of one study (a bandwidth sweep also writes its points and plot to ``out``)."""
    study = _load(path)
    base_path = (path.parent / study.base).resolve()
    if study.kind == "bandwidth_sweep":
        return _bandwidth_sweep(study, base_path, out or Path("results") / "studies" / study.name)
    rows = []
    for i, spec in enumerate(study.formats):
        if progress is not None:
            progress.update(i, len(study.formats), spec)
        base = load_config(base_path, study.overrides)
        overrides = study.overrides + format_overrides(base, spec)
        rows += _matmul_rows(study, base_path, spec, overrides) if study.kind == "matmul" else \
            _model_rows(study, base_path, spec, overrides)
    _add_speedups(rows)
    return rows


def _matmul_rows(study: StudyConfig, base_path: Path, spec: str, overrides: list[str]) -> list[dict]:
    rows = []
    for batch in study.batches:
        cfg = load_config(base_path, overrides + [f"workload.batch={batch}", "workload.prefill_tokens=1",
                                                  "workload.decode_tokens=0"])
        result = simulate(cfg, graph=single_linear(*study.shape, spec, cfg.workload.group_size)).data
        (op,) = result["ops"]
        util = result["phases"]["prefill"]["utilisation"]
        rows.append({"format": spec, "batch": batch, "weight_bytes": result["weights"]["total_bytes"],
                     "latency_us": op["time_s"] * 1e6, "roofline_us": op["roofline_s"] * 1e6,
                     "bound_by": op["bound_by"], "pe_busy": util["pe_array"]["busy"],
                     "memory_busy": max(util[m]["busy"] for m in with_roles(result["components"], "memory"))})
    return rows


def _model_rows(study: StudyConfig, base_path: Path, spec: str, overrides: list[str]) -> list[dict]:
    rows = []
    for prompt in study.prefill_tokens:
        cfg = load_config(base_path, overrides + [f"workload.prefill_tokens={prompt}",
                                                  f"workload.decode_tokens={study.decode_tokens}"])
        result = simulate(cfg).data
        pre, dec = result["phases"]["prefill"], result["phases"]["decode"]
        rows.append({"format": spec, "prompt": prompt, "weight_bytes": result["weights"]["total_bytes"],
                     "prefill_ms": pre["time_s"] * 1e3, "prefill_bound_by": pre["bounding_component"],
                     "decode_tokens_per_s": dec["tokens_per_s"], "ms_per_token": dec["ms_per_token"],
                     "decode_bytes_per_token": sum(dec["bytes_per_step"].values()) / cfg.workload.batch,
                     "decode_bound_by": dec["bounding_component"],
                     "decode_bw_bound_tokens_per_s": dec["bandwidth_bound_tokens_per_s"]})
    return rows


BANDWIDTH = "memory.hbm.bandwidth_gbps"


def _bandwidth_sweep(study: StudyConfig, base_path: Path, out: Path) -> list[dict]:
    """Per format: decode tokens/s over HBM bandwidth, its knee, and one combined plot."""
    from tlmsim import sweep as sw
    from tlmsim.plots import sweep_plot

    points, rows = [], []
    for spec in study.formats:
        overrides = study.overrides + format_overrides(load_config(base_path, study.overrides), spec)
        sweep = sw.prepare(base_path, [f"{BANDWIDTH}={study.bandwidth_axis}", *overrides])
        done = [{**r["point"], **r, "format": spec} for r in sw.run_sweep(sweep, out / spec.replace(":", "of"))
                if r["status"] == "ok"]
        points += done
        rows.append(_knee_row(spec, done))
    sweep_plot(points, BANDWIDTH, [out / "bandwidth_sweep.png", out / "bandwidth_sweep.svg"],
               f"{study.name}: decode tokens/s vs HBM bandwidth per weight format", None, "format")
    return rows


def _knee_row(spec: str, points: list[dict]) -> dict:
    from tlmsim import sweep as sw

    xs = [p[BANDWIDTH] for p in points]
    knee = sw.knee(xs, [p["bandwidth_bound_tokens_per_s"] for p in points],
                   [p["compute_bound_tokens_per_s"] for p in points])
    plateau = points[-1]
    return {"format": spec, "knee_gbps": knee or float("nan"), "tokens_per_s_at_top": plateau["tokens_per_s"],
            "bound_at_top": plateau["bound_by"], "bytes_per_token": plateau["bytes_per_token"],
            "tokens_per_s_at_460": min(points, key=lambda p: abs(p[BANDWIDTH] - 460))["tokens_per_s"]}


def _add_speedups(rows: list[dict]) -> None:
    """Speedup of each row over INT4 dense and fp16 in the same job."""
    if "knee_gbps" in rows[0]:
        return
    key = "latency_us" if "latency_us" in rows[0] else "ms_per_token"
    job = "batch" if "batch" in rows[0] else "prompt"
    for row in rows:
        same_job = {r["format"]: r[key] for r in rows if r[job] == row[job]}
        for ref in ("int4", "fp16"):
            if ref in same_job:
                row[f"speedup_vs_{ref}"] = same_job[ref] / row[key]


def _load(path: Path) -> StudyConfig:
    return load_model_file(path, StudyConfig, "study file", "configs/studies/")


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table with rounded numbers."""
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return str(value)


def run_and_write(study_path: Path, out: Path | None = None, quiet: bool = False) -> int:
    """Run a study file, write study.csv and study.md to ``out``, print the table and where it went."""
    out = out if out is not None else Path("results") / "studies" / study_path.stem
    points = out.with_name(out.name + ".points")
    check_out(out, "study", [study_path])  # before the runs, not after
    with Progress("study run", enabled=not quiet) as progress:
        rows = run_study(study_path, points, progress=progress)
    write_table_dir(out, "study", [study_path], "study", rows, list(rows[0]), markdown(rows))
    print(markdown(rows))
    print(f"  study written to {out}/ (study.csv, study.md)")
    if points.is_dir():
        print(f"  sweep points and plots in {points}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tlmsim.study FILE`` (the same as ``tlmsim study FILE``)."""
    from tlmsim.cli import main as cli_main

    return cli_main(["study", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
