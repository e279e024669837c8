"""``tlmsim run``: simulate one config, print the summary, write the result folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tlmsim.progress import Progress

if TYPE_CHECKING:  # (the simulator is imported only once a run starts: --help stays fast)
    from tlmsim.results import RunResult


def add_parser(sub, common) -> None:
    """The ``run`` subcommand's arguments."""
    run = sub.add_parser("run", parents=[common], help="simulate one config and write its results",
                         description="Simulate prefill and decode of the config's workload; print a summary "
                                     "and write result.json, trace.json (Perfetto) and timeline.png to --out.")
    run.add_argument("config", help="YAML config, e.g. configs/u280_llama7b.yaml")
    run.add_argument("--out", type=Path, help="result folder (default: results/<config name>[-<model>])")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a config field, e.g. --set workload.decode_tokens=64 (repeatable)")
    run.add_argument("--model", help="use this model folder (e.g. from tlmsim compress) as workload.model")
    run.add_argument("--timeline-window", metavar="WINDOW",
                     help="what timeline.png shows: all, step:K, layer:N or step:K,layer:N "
                          "(K = 0 is the prefill; default: decode step 1)")
    run.add_argument("--svg", action="store_true", help="also write timeline.svg")
    run.add_argument("--allow-over-budget", action="store_true",
                     help="run a design that exceeds its board (resources, clock, memories) as a what-if; "
                          "the result is marked")
    run.set_defaults(handler=handle)


def default_out(config: str, model: str | None) -> Path:
    """``results/<config stem>``, plus ``-<model folder name>`` when --model is given,
    so a run of another model never replaces the config's own results."""
    stem = Path(config).stem
    if model:
        stem += "-" + (Path(model).name or "model")
    return Path("results") / stem


def run_inputs(config: str, model: str | None) -> list[str]:
    """The files a run reads, which its --out may never contain."""
    return [config, *([model] if model and Path(model).exists() else [])]


def handle(args) -> int:
    """Run one simulation and write its folder."""
    from tlmsim.config import load_config
    from tlmsim.output import check_out
    from tlmsim.report import bottlenecks, check_window_traced, format_report, format_summary

    overrides = list(args.overrides) + ([f"workload.model={args.model}"] if args.model else [])
    overrides += ["simulation.allow_over_budget=true"] if args.allow_over_budget else []
    cfg = load_config(args.config, overrides)
    if args.timeline_window:
        check_window_traced(args.timeline_window, cfg.trace.prefill, cfg.trace.decode_steps, cfg.workload.decode_tokens)
    out = args.out if args.out is not None else default_out(args.config, args.model)
    inputs = run_inputs(args.config, cfg.workload.model)
    check_out(out, "run", inputs)  # before minutes of simulation, not after
    with Progress("simulated step", enabled=not args.quiet) as progress:
        run = _simulate(cfg, progress)
    document = {**run.data, "wall_time_s": run.wall_time_s, "bottlenecks": bottlenecks(run.data)}
    _write(out, run, document, inputs, args.timeline_window, args.svg)
    files = sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))
    print(format_summary(document, out, files))
    print(format_report(document["bottlenecks"]))
    return 0


def _simulate(cfg, progress: Progress) -> RunResult:
    from tlmsim.simulate import simulate

    return simulate(cfg, progress=lambda done, total, phase: progress.update(done, total, phase))


def _write(out: Path, run: RunResult, document: dict, inputs: list[str], window_spec: str | None = None,
           svg: bool = False) -> None:
    """Write result.json (``document``), config.yaml, trace.json and the timeline image(s)."""
    from tlmsim.engine.trace import write_chrome_trace
    from tlmsim.output import write_json, write_result_dir
    from tlmsim.report import memory_peaks, timeline_window, trace_markers

    data = run.data
    peaks = memory_peaks(data)
    start, end, label = timeline_window(data, run.slices, window_spec)
    layer_of = {op["name"]: op["layer"] for op in data["ops"]}
    images = ["timeline.png", *(["timeline.svg"] if svg else [])]
    draw = _timeline_writer(run, start, end, f"{data['name']}: {label}", peaks)
    write_result_dir(out, {
        "result.json": lambda p: write_json(p, document),
        "config.yaml": lambda p: p.write_text(yaml.safe_dump(data["config"], sort_keys=False)),
        "trace.json": lambda p: write_chrome_trace(p, run.slices, run.counters, memories=peaks,
                                                   layer_of=layer_of, markers=trace_markers(data)),
        **{name: draw for name in images},
    }, kind="run", inputs=inputs)


def _timeline_writer(run: RunResult, start: int, end: int, title: str, peaks: dict):
    from tlmsim.plots import timeline
    from tlmsim.report import timeline_lanes, window_utilisation

    util = window_utilisation(run.slices, start, end, peaks)
    lanes = timeline_lanes(run.data)
    return lambda p: timeline(run.slices, run.counters, start, end, [p], title, util, peaks, lanes)
