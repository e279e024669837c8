"""``tlmsim run``: simulate one config, print the summary, write the result folder."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tlmsim.progress import Progress


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
    cfg = load_config(args.config, overrides)
    if args.timeline_window:
        check_window_traced(args.timeline_window, cfg.trace.prefill, cfg.trace.decode_steps, cfg.workload.decode_tokens)
    out = args.out if args.out is not None else default_out(args.config, args.model)
    inputs = run_inputs(args.config, cfg.workload.model)
    check_out(out, "run", inputs)  # before minutes of simulation, not after
    started = time.perf_counter()
    with Progress("simulated step", enabled=not args.quiet) as progress:
        result, accelerator = _simulate(cfg, progress)
    result["wall_time_s"] = time.perf_counter() - started
    result["bottlenecks"] = bottlenecks(result)
    _write(out, cfg, result, accelerator, inputs, args.timeline_window, args.svg)
    files = sorted(p.name for p in Path(out).iterdir() if not p.name.startswith("."))
    print(format_summary(result, out, files))
    print(format_report(result["bottlenecks"]))
    return 0


def _simulate(cfg, progress: Progress):
    from tlmsim.simulate import simulate

    return simulate(cfg, progress=lambda done, total, phase: progress.update(done, total, phase))


def _write(out: Path, cfg, result: dict, accelerator, inputs: list[str], window_spec: str | None = None,
           svg: bool = False) -> None:
    from tlmsim.output import write_json, write_result_dir
    from tlmsim.trace import write_chrome_trace

    tracer = accelerator.ctx.tracer
    peaks = {name: m.bandwidth_gbps for name, m in cfg.memory.items()}
    start, end, label = _window(result, tracer.slices, window_spec)
    layer_of = {op["name"]: op["layer"] for op in result["ops"]}
    images = ["timeline.png", *(["timeline.svg"] if svg else [])]
    draw = _timeline_writer(tracer, start, end, f"{cfg.name}: {label}", peaks)
    write_result_dir(out, {
        "result.json": lambda p: write_json(p, result),
        "config.yaml": lambda p: p.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)),
        "trace.json": lambda p: write_chrome_trace(p, tracer.slices, tracer.counters, memories=peaks,
                                                   layer_of=layer_of, markers=_markers(result)),
        **{name: draw for name in images},
    }, kind="run", inputs=inputs)


def _window(result: dict, slices, spec: str | None) -> tuple[int, int, str]:
    from tlmsim.report import resolve_window

    if spec is None:
        w = result["timeline_window"]
        return w["start_ps"], w["end_ps"], w["label"]
    extent = (min((s.start_ps for s in slices), default=0), max((s.end_ps for s in slices), default=1))
    return resolve_window(result, spec, extent)


def _timeline_writer(tracer, start: int, end: int, title: str, peaks: dict):
    from tlmsim.plots import timeline
    from tlmsim.report import window_utilisation

    util = window_utilisation(tracer.slices, start, end, peaks)
    return lambda p: timeline(tracer.slices, tracer.counters, start, end, [p], title, util, peaks)


def _markers(result: dict) -> list:
    """Step and decoder-layer spans (from the op records) for the trace's "workload" track."""
    from tlmsim.report import steps_of

    out = []
    for step, ops in steps_of(result).items():
        out.append(_span("steps", f"{ops[0]['phase']} step {step}", ops))
        for layer in sorted({op["layer"] for op in ops if op["layer"] is not None}):
            out.append(_span("layers", f"step {step} layer {layer}", [o for o in ops if o["layer"] == layer]))
    return out


def _span(track: str, name: str, ops: list[dict]):
    from tlmsim.report import op_end_s
    from tlmsim.trace import Slice

    start, end = min(o["start_s"] for o in ops), max(op_end_s(o) for o in ops)
    return Slice(track, "marker", name, round(start * 1e12), round(end * 1e12))
