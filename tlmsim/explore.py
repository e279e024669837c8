"""``tlmsim explore``: accuracy, speed, silicon and energy of a design space on one Pareto front.

A space file (``configs/explore/*.yaml``) names a base config, fixed overrides, axes in the
sweep's syntax (``format`` is the coupled axis: the weight format with the PE array rebuilt
for it, tlmsim/coupled.py), constraints, objectives, the accuracy proxy and the search:

* every point is a full simulation through the sweep's executors and output folder
  (``tlmsim.sweep``): local processes or a Dask cluster, one JSON line per finished point,
  so an interrupted explore resumes without recomputing anything;
* accuracy is the perplexity of a small proxy model (the tiny trained LLaMA, or SmolLM2-135M)
  compressed by the real pipeline to each format, cached per format: the *speed* comes from
  the target model, the *accuracy* from the proxy;
* ``search: exhaustive`` runs the whole grid; ``search: nsga2`` asks Optuna's NSGA-II sampler
  for points (objectives as Optuna directions, constraints as its constraint values) until
  ``trials`` distinct points are done;
* a point is infeasible if its simulation was refused (over the board's budget, does not fit,
  ...) or it breaks a constraint; the reason is recorded.

Outputs in ``--out`` (a sweep folder): points.csv, pareto.csv, pareto.png, and the front
ranked in the summary with each point's bounding component.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import Field

from tlmsim.config import Section
from tlmsim.coupled import COUPLED_FORMAT
from tlmsim.engine.configbase import load_model_file
from tlmsim.engine.errors import ConfigError
from tlmsim.sweep import EXECUTOR_CONTEXTS, SweepFolder, SweepSpec, point_key, prepare
from tlmsim.sweep.outputs import write_atomic

# Objective name -> (column of a row, direction).
OBJECTIVES = {"decode_tokens_per_s": ("tokens_per_s", "max"), "prefill_ms": ("prefill_ms", "min"),
              "decode_j_per_token": ("decode_j_per_token", "min"), "resource_share": ("resource_share", "min"),
              "perplexity": ("perplexity", "min")}
# NSGA-II points asked at a time per worker: a batch runs to its slowest point before the next is
# asked, so small batches leave workers idle (4 per worker: 189 points/min, 16: see docs/explore.md).
BATCH_PER_WORKER = 16
ObjectiveName = Literal["decode_tokens_per_s", "prefill_ms", "decode_j_per_token", "resource_share", "perplexity"]


class Constraints(Section):
    """What a point must satisfy to be feasible (the board's budget always applies)."""

    max_perplexity_increase_pct: float | None = Field(None, ge=0, description="over the proxy's fp16 perplexity")
    min_decode_tokens_per_s: float | None = Field(None, ge=0)


class Accuracy(Section):
    """The proxy model whose perplexity stands for each format's accuracy."""

    proxy: Literal["tiny", "smollm2", "none"] = "tiny"
    criterion: Literal["magnitude", "wanda"] = "magnitude"
    group_size: int = Field(128, ge=1, le=65536)
    train_steps: int = Field(200, ge=1, le=100_000, description="tiny proxy: training steps on the calibration text")


class Search(Section):
    """How points are chosen."""

    method: Literal["exhaustive", "nsga2"] = "exhaustive"
    trials: int = Field(200, ge=1, le=1_000_000, description="nsga2: distinct points to simulate")
    seed: int = 0


class Space(Section):
    """A design space file."""

    name: str
    base: str = Field(description="config the space starts from, relative to the space file")
    overrides: list[str] = []
    axes: list[str] = Field(min_length=1, description="sweep axes, e.g. 'accelerator.pe_array.cols=[64,96,128]'")
    constraints: Constraints = Constraints()
    objectives: list[ObjectiveName] = Field(min_length=1)
    accuracy: Accuracy = Accuracy()
    search: Search = Search()


def load_space(path: Path) -> Space:
    """Read and check a space file."""
    space = load_model_file(path, Space, "space file", "configs/explore/")
    if "perplexity" in space.objectives and space.accuracy.proxy == "none":
        raise ConfigError(f"{path}: objectives: perplexity needs an accuracy proxy; set accuracy.proxy: tiny")
    return space


def sweep_spec(space: Space, path: Path) -> SweepSpec:
    """The space as a sweep: fixed overrides as one-value axes, then the space's axes."""
    base = path.parent / space.base
    # Over-budget points run as what-ifs: infeasible, but shown (faint) with what they would do.
    fixed = ["simulation.allow_over_budget=true", *space.overrides]
    return prepare(base, [*fixed, *space.axes], max_points=10_000_000)


# ---------------------------------------------------------------- accuracy


def format_perplexities(space: Space, formats: list[str], cache_dir: Path) -> dict[str, float]:
    """Perplexity of the proxy at fp16 and each format, computed once per format and cached."""
    acc = space.accuracy
    if acc.proxy == "none":
        return {}
    from tlmsim.workloads.perplexity import load_corpus

    key = hashlib.sha256(json.dumps([acc.model_dump(), load_corpus("all")[:4096]]).encode()).hexdigest()[:16]
    path = cache_dir / f"perplexity-{acc.proxy}-{key}.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    missing = [f for f in ["fp16", *formats] if f not in known]
    if missing:
        known.update(_evaluate(acc, missing))
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda p: p.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n"))
    return {f: known[f] for f in ["fp16", *formats]}


def _evaluate(acc: Accuracy, formats: list[str]) -> dict[str, float]:
    from tlmsim.workloads.perplexity import _load, evaluate_formats

    model, tokenizer = _load("smollm2" if acc.proxy == "smollm2" else "tiny", acc.train_steps)
    return evaluate_formats(model, tokenizer, formats, acc.criterion, acc.group_size)


def _formats(spec: SweepSpec) -> list[str]:
    """Every weight format the space can reach."""
    for axis in spec.axes:
        if axis.field in (COUPLED_FORMAT, "workload.weight_format"):
            return [str(v) for v in axis.values]
    return [str(spec.raw["workload"]["weight_format"])]


# ---------------------------------------------------------------- feasibility and the front


def judge(row: dict, point: dict, base_format: str, ppl: dict[str, float], limits: Constraints) -> dict:
    """The row with its perplexity, feasibility and the reason it is infeasible."""
    fmt = str(point.get(COUPLED_FORMAT, point.get("workload.weight_format", base_format)))
    out = {**row, "format": fmt, "perplexity": ppl.get(fmt, math.nan)}
    reasons = []
    if row["status"] != "ok":
        reasons.append(row["error"])
    else:
        if limits.max_perplexity_increase_pct is not None and ppl:
            increase = 100 * (ppl[fmt] / ppl["fp16"] - 1)
            if increase > limits.max_perplexity_increase_pct:
                reasons.append(f"perplexity +{increase:.1f} % > {limits.max_perplexity_increase_pct:g} %")
        if limits.min_decode_tokens_per_s is not None and row["tokens_per_s"] < limits.min_decode_tokens_per_s:
            reasons.append(f"{row['tokens_per_s']:.1f} tokens/s < {limits.min_decode_tokens_per_s:g}")
        if row.get("what_if"):
            reasons.append(f"over the board's budget (simulated as a what-if): {row.get('over_budget', '')}")
    return {**out, "feasible": not reasons, "reason": "; ".join(reasons)}


def dominates(a: dict, b: dict, objectives: list[str]) -> bool:
    """True if ``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for name in objectives:
        column, direction = OBJECTIVES[name]
        x, y = (a[column], b[column]) if direction == "min" else (-a[column], -b[column])
        if x > y:
            return False
        better = better or x < y
    return better


def pareto_front(rows: list[dict], objectives: list[str]) -> list[dict]:
    """The feasible rows no other feasible row dominates, best first in the first objective."""
    feasible = [r for r in rows if r["feasible"]]
    front = [r for r in feasible if not any(dominates(o, r, objectives) for o in feasible)]
    column, direction = OBJECTIVES[objectives[0]]
    return sorted(front, key=lambda r: r[column], reverse=direction == "max")


def _missing_objectives(row: dict, objectives: list[str]) -> list[str]:
    values = {name: row.get(OBJECTIVES[name][0]) for name in objectives}
    return [name for name, v in values.items() if v is None or (isinstance(v, float) and math.isnan(v))]


# ---------------------------------------------------------------- running


def explore(path: Path, out: Path, executor: str = "local", jobs: int = 2, address: str | None = None,
            cache_dir: Path | None = None, on_row=None) -> tuple[list[dict], list[dict]]:
    """Explore the space of ``path`` into ``out``: (every point judged, the Pareto front)."""
    from tlmsim.workloads.graph_cache import cache_root

    space = load_space(path)
    spec = sweep_spec(space, path)
    ppl = format_perplexities(space, _formats(spec), cache_dir or cache_root())
    base_format = str(spec.raw["workload"]["weight_format"])
    with SweepFolder(out, spec) as folder:
        args = (address,) if executor == "dask" else ()
        with EXECUTOR_CONTEXTS[executor](spec.raw, jobs, *args) as run:
            search = _exhaustive if space.search.method == "exhaustive" else _nsga2
            search(space, spec, folder, run, lambda r: judge(r, r["point"], base_format, ppl, space.constraints),
                   on_row or (lambda row, done: None), jobs)
        rows = [judge(r, r["point"], base_format, ppl, space.constraints) for r in folder.done.values()]
    for row in rows:
        missing = _missing_objectives(row, space.objectives) if row["feasible"] else []
        if missing:
            row.update(feasible=False, reason=f"no {', '.join(missing)} (energy and resources need a board:)")
    front = pareto_front(rows, space.objectives)
    _write_outputs(Path(out), space, spec, rows, front, ppl)
    return rows, front


def _exhaustive(space, spec, folder, run, judged, on_row, jobs) -> None:
    missing = [p for p in spec.points() if point_key(p) not in folder.done]
    for row in run(iter(missing)):
        folder.record(row)
        on_row(row, len(folder.done))


def _nsga2(space, spec, folder, run, judged, on_row, jobs) -> None:
    """Ask NSGA-II for batches of points until ``trials`` distinct points are done; points
    already in the folder (a resumed explore, or a repeated proposal) are told, not rerun."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    swept = [a for a in spec.axes if a.swept]
    fixed = {a.field: a.values[0] for a in spec.axes if not a.swept}
    choices = {a.field: [json.dumps(v) for v in a.values] for a in swept}
    distributions = {f: optuna.distributions.CategoricalDistribution(c) for f, c in choices.items()}
    directions = ["maximize" if OBJECTIVES[o][1] == "max" else "minimize" for o in space.objectives]
    sampler = optuna.samplers.NSGAIISampler(seed=space.search.seed)  # constraints: set per trial (below)
    study = optuna.create_study(directions=directions, sampler=sampler)
    for row in folder.done.values():  # what earlier runs found
        params = {f: json.dumps(row["point"][f]) for f in choices}
        study.add_trial(_trial(optuna, params, distributions, judged(row), space))
    target, asked = min(space.search.trials, spec.total), 0
    while len(folder.done) < target and asked < 4 * target:  # a space nearly exhausted: stop asking
        batch = [study.ask(distributions) for _ in range(BATCH_PER_WORKER * jobs)]
        asked += len(batch)
        points = [{**fixed, **{f: json.loads(t.params[f]) for f in choices}} for t in batch]
        todo = list({point_key(p): p for p in points if point_key(p) not in folder.done}.values())
        for row in run(iter(todo[: target - len(folder.done)])):
            folder.record(row)
            on_row(row, len(folder.done))
        for trial, point in zip(batch, points):
            row = folder.done.get(point_key(point))
            if row is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            judged_row = judged(row)
            trial.set_constraint("feasible", _violation(judged_row))
            study.tell(trial, _values(judged_row, space))


def _violation(row: dict) -> float:
    """Optuna's constraint value: <= 0 feasible."""
    return 0.0 if row["feasible"] else 1.0


def _values(row: dict, space: Space) -> list[float]:
    """The objective values of a row; infeasible or unknown ones get the worst value."""
    out = []
    for name in space.objectives:
        column, direction = OBJECTIVES[name]
        value = row.get(column)
        bad = value is None or row["status"] != "ok" or (isinstance(value, float) and math.isnan(value))
        out.append((-1e30 if direction == "max" else 1e30) if bad else float(value))
    return out


def _trial(optuna, params: dict, distributions: dict, row: dict, space: Space):
    return optuna.trial.create_trial(params=params, distributions=distributions, values=_values(row, space),
                                     constraints={"feasible": _violation(row)})


# ---------------------------------------------------------------- outputs

POINT_COLUMNS = ["format", "perplexity", "tokens_per_s", "prefill_ms", "decode_j_per_token", "resource_share", "dsp",
                 "lut", "bound_by", "feasible", "reason", "pareto"]


def _write_outputs(out: Path, space: Space, spec: SweepSpec, rows: list[dict], front: list[dict],
                   ppl: dict[str, float]) -> None:
    fields = [a.field for a in spec.axes if a.swept]
    on_front = {r["key"] for r in front}
    table = [{**{f: r["point"].get(f) for f in fields if f != COUPLED_FORMAT},
              **{c: r.get(c) for c in POINT_COLUMNS[:-1]}, "pareto": r["key"] in on_front} for r in rows]
    columns = [f for f in fields if f != COUPLED_FORMAT] + POINT_COLUMNS
    write_atomic(out / "points.csv", lambda p: _csv(p, columns, table))
    write_atomic(out / "pareto.csv", lambda p: _csv(p, columns, [t for t in table if t["pareto"]]))
    from tlmsim.plots import pareto_plot

    write_atomic(out / "pareto.png", lambda p: pareto_plot(table, [p], f"{space.name}: {len(rows)} points, "
                                                                            f"{len(front)} on the front",
                                                            proxy=space.accuracy.proxy))


def _csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def front_table(front: list[dict], space: Space, fields: list[str]) -> str:
    """The front as a ranked markdown table (best first in the first objective)."""
    fields = [f for f in fields if f != COUPLED_FORMAT]
    columns = ["rank", "format", *fields, "perplexity", "tokens_per_s", "decode_j_per_token", "resource_share",
               "bound_by"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for i, r in enumerate(front, start=1):
        cells = [str(i), r["format"], *(str(r["point"].get(f)) for f in fields)]
        cells += [_num(r.get(c)) for c in ("perplexity", "tokens_per_s", "decode_j_per_token", "resource_share")]
        lines.append("| " + " | ".join(cells + [str(r.get("bound_by"))]) + " |")
    return "\n".join(lines)


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and value is not None else str(value)
