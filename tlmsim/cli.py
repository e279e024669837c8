"""Command line: ``tlmsim run CONFIG`` and friends.

User errors (bad config, missing file, capacity) print one line and exit 2; nothing is
left half-written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import yaml

from tlmsim.errors import UserError

EXIT_USER_ERROR = 2


def summary_components(result: dict) -> list[str]:
    """Components that do work (buffers and the controller only wait)."""
    return [c for c in result["phases"]["prefill"]["utilisation"]
            if c not in ("weight_buffer", "kv_buffer", "controller")]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlmsim`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return args.handler(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; no result was written", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlmsim", description="Transaction-level simulator of FPGA accelerators for compressed LLMs.")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="simulate one config and write its results",
                         description="Simulate prefill and decode of the config's workload; print a summary "
                                     "and write result.json, trace.json (Perfetto) and timeline.png to --out.")
    run.add_argument("config", help="YAML config, e.g. configs/u280_llama7b.yaml")
    run.add_argument("--out", type=Path, help="result directory (default: results/<config name>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                     help="override a config field, e.g. --set workload.decode_tokens=64 (repeatable)")
    run.add_argument("--model", help="use this model directory (e.g. from tlmsim compress) as workload.model")
    run.add_argument("--timeline-window", metavar="WINDOW",
                     help="what timeline.png shows: all, step:K, layer:N or step:K,layer:N "
                          "(K = 0 is the prefill; default: decode step 1)")
    run.add_argument("--svg", action="store_true", help="also write timeline.svg")
    run.set_defaults(handler=_run)

    _sweep_parser(sub)

    comp = sub.add_parser("compress", help="prune + quantize a local HF model into a directory tlmsim can simulate",
                          description="Write DIR with the compressed model (loadable by transformers), "
                                      "packed.safetensors (the accelerator's bit layout) and manifest.json.")
    comp.add_argument("model_dir", type=Path, help="local HF causal LM directory (config.json + weights)")
    comp.add_argument("--nm", help="N:M sparsity along the input dimension, e.g. 2:4 (default: dense)")
    comp.add_argument("--bits", choices=["4", "8", "16", "ternary"], default="4",
                      help="4/8: group-quantized INT; 16: fp16; ternary: BitNet b1.58 (default 4)")
    comp.add_argument("--group-size", type=int, default=128, help="kept weights per INT scale (default 128)")
    comp.add_argument("--criterion", choices=["magnitude", "wanda"], default="magnitude",
                      help="pruning criterion (wanda calibrates on the shipped corpus)")
    comp.add_argument("--out", type=Path, required=True, help="output directory")
    comp.set_defaults(handler=_compress)

    tiny = sub.add_parser("tiny-model", help="build the small local LLaMA used by tests and the demo",
                          description="Create a ~0.4M-parameter LLaMA with a byte tokenizer (fixed seed), "
                                      "optionally trained briefly on the shipped corpus, and save it to DIR.")
    tiny.add_argument("out", type=Path, help="output directory")
    tiny.add_argument("--train-steps", type=int, default=0, help="training steps on the shipped corpus (default 0)")
    tiny.set_defaults(handler=_tiny_model)

    rtl = sub.add_parser("rtl-check", help="cross-check the Verilog PE against the Python PE model (needs a checkout)",
                         description="Lint rtl/nm_pe.v and run the cocotb + Verilator cross-check (tests/rtl, "
                                     "marker 'rtl'); extra arguments go to pytest.")
    rtl.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    rtl.set_defaults(handler=_rtl_check)
    return parser


def _sweep_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep", help="simulate a grid of config variants (in parallel) and plot tokens/s vs the swept field",
        description="Run one simulation per point of the cartesian product of the --set axes; write points.jsonl "
                    "(one line per finished point: rerunning resumes), sweep.csv and sweep.png/.svg to --out. "
                    "Axis syntax: FIELD=a:b:step (linear, inclusive), FIELD=log:a:b:n (geometric), "
                    "FIELD=[x,y,z] (list) or FIELD=value (fixed). Traces are off in sweep points.")
    sweep.add_argument("config", help="YAML config, e.g. configs/u280_llama7b.yaml")
    sweep.add_argument("--set", dest="axes", action="append", default=[], metavar="FIELD=SPEC",
                       help="axis or fixed override, e.g. --set memory.hbm.bandwidth_gbps=log:50:5000:16 (repeatable)")
    sweep.add_argument("--out", type=Path, help="sweep directory (default: results/<config name>-sweep)")
    sweep.add_argument("--executor", choices=["local", "dask", "serial"], default="local",
                       help="local: a process pool (default); dask: a Dask distributed cluster (--scheduler, or a "
                            "local cluster of --jobs workers); serial: in this process")
    sweep.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: CPU count)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://head:8786")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun points recorded as failed")
    sweep.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    from tlmsim import sweep as sw

    if args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    spec = sw.prepare(args.config, args.axes)
    out = args.out or Path("results") / f"{Path(args.config).stem}-sweep"
    sw.check_resumable(out, spec)
    total = len(sw.points(spec.axes))
    done_before = len(sw.load_points(out))
    started = time.perf_counter()
    try:
        rows = sw.run_sweep(spec, out, args.executor, args.jobs, args.scheduler, args.retry_failed,
                            on_row=sw.progress_printer(total - min(done_before, total)))
    except KeyboardInterrupt:
        print(f"interrupted: finished points are kept in {out}/{sw.POINTS_FILE}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    wall = time.perf_counter() - started
    knee_x = _sweep_outputs(out, spec, rows)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{spec.raw.get('name', args.config)}: {total} points ({total - done_before} run now, "
          f"{len(failed)} failed) in {wall:.1f} s with --executor {args.executor} --jobs {args.jobs}")
    if knee_x is not None:
        print(f"  roofline knee at {spec.axes[0].field if spec.axes else ''} = {knee_x:.4g}")
    for row in failed[:5]:
        print(f"  failed {row['point']}: {row['error']}")
    print(f"  results: {out}/ (sweep.csv, sweep.png, sweep.svg, points.jsonl)")
    return 1 if failed else 0


def _sweep_outputs(out: Path, spec, rows: list[dict]) -> float | None:
    """Write sweep.csv and, if the first swept axis is numeric, the plots; returns the knee."""
    from tlmsim import sweep as sw
    from tlmsim.plots import is_number, sweep_plot

    sw.write_csv(out / sw.CSV_FILE, rows, spec.axes)
    swept = [a for a in spec.axes if a.swept]
    flat = [{**r["point"], **r} for r in rows if r["status"] == "ok" and "tokens_per_s" in r]
    if not swept or not flat or not all(is_number(v) for v in swept[0].values):
        return None
    x = swept[0].field
    series = swept[1].field if len(swept) > 1 else None
    first = [r for r in flat if series is None or r[series] == swept[1].values[0]]
    knee_x = sw.knee([r[x] for r in first], [r["bandwidth_bound_tokens_per_s"] for r in first],
                     [r["compute_bound_tokens_per_s"] for r in first])
    title = f"{spec.raw.get('name', '')}: decode throughput vs {x}"
    sweep_plot(flat, x, [out / "sweep.png", out / "sweep.svg"], title, knee_x, series)
    return knee_x


def _rtl_check(args) -> int:
    import subprocess

    tests = Path(__file__).resolve().parents[1] / "tests" / "rtl"
    if not tests.is_dir():
        raise UserError(f"{tests} not found: rtl-check runs from a source checkout (pip install -e .)")
    return subprocess.call([sys.executable, "-m", "pytest", "-m", "rtl", str(tests), *args.pytest_args])


def _format_spec(bits: str, nm: str | None) -> str:
    base = {"4": "int4", "8": "int8", "16": "fp16", "ternary": "ternary"}[bits]
    return f"{base}-{nm}" if nm else base


def _compress(args) -> int:
    from tlmsim.output import atomic_dir
    from tlmsim.workloads.compressed_model import compress_model
    from tlmsim.workloads.formats import parse_format

    if not (args.model_dir / "config.json").is_file():
        raise UserError(f"{args.model_dir} has no config.json; pass a local Hugging Face model directory")
    try:
        fmt = parse_format(_format_spec(args.bits, args.nm), args.group_size)
    except ValueError as err:
        raise UserError(f"--nm/--bits: {err}") from None
    with atomic_dir(args.out) as tmp:
        records = compress_model(args.model_dir, fmt, tmp, criterion=args.criterion)
    total = sum(r.packed_nbytes for r in records.values())
    print(f"compressed {len(records)} linear layers to {fmt.name}: {total / 1e6:.3f} MB packed -> {args.out}/")
    return 0


def _tiny_model(args) -> int:
    from tlmsim.output import atomic_dir
    from tlmsim.workloads.perplexity import load_corpus
    from tlmsim.workloads.tiny_model import build_tiny_model

    with atomic_dir(args.out) as tmp:
        build_tiny_model(tmp, train_text=load_corpus() if args.train_steps else None, steps=args.train_steps)
    print(f"tiny LLaMA written to {args.out}/")
    return 0


def _run(args) -> int:
    from tlmsim.config import load_config

    from tlmsim.report import bottlenecks, check_window_traced, format_report

    overrides = list(args.overrides) + ([f"workload.model={args.model}"] if args.model else [])
    cfg = load_config(args.config, overrides)
    if args.timeline_window:
        check_window_traced(args.timeline_window, cfg.trace.prefill, cfg.trace.decode_steps, cfg.workload.decode_tokens)
    out = args.out or Path("results") / Path(args.config).stem
    started = time.perf_counter()
    result, accelerator = _simulate(cfg)
    result["wall_time_s"] = time.perf_counter() - started
    result["bottlenecks"] = bottlenecks(result)
    _write(out, cfg, result, accelerator, args.timeline_window, args.svg)
    print(format_summary(result, out))
    print(format_report(result["bottlenecks"]))
    return 0


def _simulate(cfg):
    from tlmsim.simulate import simulate

    return simulate(cfg, progress=_progress)


def _progress(done: int, total: int, phase: str) -> None:
    if sys.stderr.isatty():
        print(f"\r  simulated step {done}/{total} ({phase})", end="\n" if done == total else "", file=sys.stderr)
    elif done == total or done % 16 == 0:
        logging.getLogger("tlmsim").info("  simulated step %d/%d (%s)", done, total, phase)


def _write(out: Path, cfg, result: dict, accelerator, window_spec: str | None = None, svg: bool = False) -> None:
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
    })


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


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.3f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.3f} MB"


def format_summary(result: dict, out: Path | None = None) -> str:
    """The short text summary printed after a run."""
    pre, dec = result["phases"]["prefill"], result["phases"].get("decode")
    lines = [f"{result['name']}",
             f"  prefill: {pre['time_s'] * 1e3:9.2f} ms   (roofline {pre['roofline_time_s'] * 1e3:.2f} ms, "
             f"bound by {pre['bounding_component']})"]
    if dec:
        lines.append(f"  decode : {dec['tokens_per_s']:9.2f} tokens/s  ({dec['ms_per_token']:.3f} ms/token; "
                     f"memory-bandwidth bound {dec['bandwidth_bound_tokens_per_s']:.2f} tokens/s; "
                     f"bound by {dec['bounding_component']})")
    lines.append(f"  weights: {_size(result['weights']['total_bytes'])} "
                 f"({', '.join(result['weights']['bytes_by_format'])})")
    reuse = result.get("reuse", {})
    if reuse.get("layers_skipped") or reuse.get("tiles_skipped"):
        lines.append(f"  steady state: {reuse['layers_skipped']} repeated decoder layers and {reuse['tiles_skipped']} "
                     f"repeated tiles accounted without re-simulating them (exact; docs/performance.md)")
    lines.append("  busy fraction   " + "".join(f"{p:>10}" for p in result["phases"]))
    for comp in summary_components(result):
        row = "".join(f"{result['phases'][p]['utilisation'][comp]['busy']:10.1%}" for p in result["phases"])
        lines.append(f"    {comp:<14}{row}")
    if out is not None:
        lines.append(f"  results: {out}/ (result.json, trace.json, timeline.png, config.yaml)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
