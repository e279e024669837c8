"""Command line: ``tlmsim run CONFIG`` and friends.

User errors (bad config, missing file, capacity) print one line and exit 2; nothing is
left half-written.
"""

from __future__ import annotations

import argparse
import logging
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
    run.set_defaults(handler=_run)

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

    overrides = list(args.overrides) + ([f"workload.model={args.model}"] if args.model else [])
    cfg = load_config(args.config, overrides)
    out = args.out or Path("results") / Path(args.config).stem
    started = time.perf_counter()
    result, accelerator = _simulate(cfg)
    result["wall_time_s"] = time.perf_counter() - started
    _write(out, cfg, result, accelerator)
    print(format_summary(result, out))
    return 0


def _simulate(cfg):
    from tlmsim.simulate import simulate

    return simulate(cfg, progress=_progress)


def _progress(done: int, total: int, phase: str) -> None:
    if sys.stderr.isatty():
        print(f"\r  simulated step {done}/{total} ({phase})", end="\n" if done == total else "", file=sys.stderr)
    elif done == total or done % 16 == 0:
        logging.getLogger("tlmsim").info("  simulated step %d/%d (%s)", done, total, phase)


def _write(out: Path, cfg, result: dict, accelerator) -> None:
    from tlmsim.output import write_json, write_result_dir
    from tlmsim.plots import timeline
    from tlmsim.trace import write_chrome_trace

    tracer = accelerator.ctx.tracer
    window = result["timeline_window"]
    write_result_dir(out, {
        "result.json": lambda p: write_json(p, result),
        "config.yaml": lambda p: p.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)),
        "trace.json": lambda p: write_chrome_trace(p, tracer.slices, tracer.counters),
        "timeline.png": lambda p: timeline(tracer.slices, window["start_ps"], window["end_ps"], p,
                                           f"{cfg.name}: {window['label']}"),
    })


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
    lines.append("  busy fraction   " + "".join(f"{p:>10}" for p in result["phases"]))
    for comp in summary_components(result):
        row = "".join(f"{result['phases'][p]['utilisation'][comp]['busy']:10.1%}" for p in result["phases"])
        lines.append(f"    {comp:<14}{row}")
    if out is not None:
        lines.append(f"  results: {out}/ (result.json, trace.json, timeline.png, config.yaml)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
