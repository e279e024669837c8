"""Command line: ``tlmsim run CONFIG`` and friends.

One error path for every command: a mistake the user can fix (``UserError``, a full
disk, a read-only folder, a bad flag) prints one line ``error: ...`` and exits 2; an
interrupt (Ctrl-C or SIGTERM) removes temporary files, stops workers and exits 130; a
bug in tlmsim prints one line saying so and where the full traceback was written
(``--debug`` shows it instead). Nothing is left half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tlmsim import run_cli, sweep_cli
from tlmsim.engine.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h)
EXIT_INTERRUPTED = 130
# OS errors that the user fixes (space, permissions, a read-only or missing place), not tlmsim bugs.
USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                  errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}
# Libraries that log at INFO on their own (font cache, cluster start-up): not the user's concern.
NOISY_LOGGERS = ("matplotlib", "PIL", "distributed", "dask", "asyncio", "bokeh", "tornado")


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error contract (it prints usage + error by default)."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlmsim`` command."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed in one line
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    _configure_logging(args.quiet, args.debug)
    with _sigterm_as_interrupt():
        return _dispatch(args)


def _dispatch(args) -> int:
    try:
        return args.handler(args)
    except UserError as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        print("interrupted; no result was written (finished sweep points are kept)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tlmsim run ... | head -1`: the reader has gone, results are on disk
        _silence_stdout()
        return 0
    except OSError as err:
        if err.errno not in USER_OS_ERRORS:
            return _internal_error(args.debug)
        where = f" ({err.filename})" if err.filename else ""
        return _fail(f"cannot write or read{where}: {err.strerror}; free space, fix permissions or choose "
                     f"another --out")
    except Exception:  # noqa: BLE001  (a bug: one line, the traceback in a file)
        return _internal_error(args.debug)


def _fail(message: str) -> int:
    line = " ".join(message.split())  # the contract is one line, whatever the message held
    print(f"error: {line}", file=sys.stderr)
    return EXIT_USER_ERROR


def _internal_error(debug: bool) -> int:
    """A tlmsim bug: one line and where the traceback went (or the traceback with --debug)."""
    text = traceback.format_exc()
    if debug:
        print(text, file=sys.stderr, end="")
        return EXIT_INTERNAL_ERROR
    last = text.strip().splitlines()[-1]
    try:
        fd, path = tempfile.mkstemp(prefix="tlmsim-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        where = f"full traceback in {path}"
    except OSError:
        where = "rerun with --debug for the traceback"
    print(f"error: internal error in tlmsim ({last}); {where}; please report it", file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would raise again on the closed pipe.
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM behaves like Ctrl-C: the same cleanup (temporary folders, workers) runs."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread (e.g. called from a worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (tests swap it; a closed old one must not matter)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _configure_logging(quiet: bool, debug: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("tlmsim")
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.ERROR)
    if not debug:
        _quiet_hugging_face()


def _quiet_hugging_face() -> None:
    """No transformers/hub progress bars or advice on stderr: the one-line contract holds."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when they are imported
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported (e.g. by an earlier call in this process)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _common_flags() -> argparse.ArgumentParser:
    """-q/--debug, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only the summary")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks of internal errors")
    return common


def _parser() -> argparse.ArgumentParser:
    from tlmsim.output import tlmsim_version

    common = _common_flags()
    parser = _Parser(prog="tlmsim", parents=[common],
                     description="Transaction-level simulator of FPGA accelerators for compressed LLMs.")
    parser.set_defaults(quiet=False, debug=False)
    parser.add_argument("--version", action="version", version=f"tlmsim {tlmsim_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)
    run_cli.add_parser(sub, common)
    sweep_cli.add_parser(sub, common)
    _study_parser(sub, common)
    _validate_parser(sub, common)
    _explore_parser(sub, common)
    _compress_parser(sub, common)
    _tiny_parser(sub, common)
    models = sub.add_parser("models", parents=[common], help="list the shipped models (use a name as workload.model)",
                            description="List the model configs shipped with tlmsim: family, exact parameter count, "
                                        "attention, experts, tied embeddings, native weight format and source.")
    models.set_defaults(handler=_models)
    rtl = sub.add_parser("rtl-check", parents=[common],
                         help="cross-check the Verilog PE against the Python PE model (needs a checkout)",
                         description="Lint rtl/nm_pe.v and run the cocotb + Verilator cross-check (tests/rtl, "
                                     "marker 'rtl'); extra arguments go to pytest.")
    rtl.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    rtl.set_defaults(handler=_rtl_check)
    return parser


def _compress_parser(sub, common) -> None:
    comp = sub.add_parser("compress", parents=[common],
                          help="prune + quantize a local HF model into a folder tlmsim can simulate",
                          description="Write DIR with the compressed model (loadable by transformers), "
                                      "packed.safetensors (the accelerator's bit layout) and manifest.json.")
    comp.add_argument("model_dir", type=Path, help="local HF causal LM folder (config.json + weights)")
    comp.add_argument("--nm", help="N:M sparsity along the input dimension, e.g. 2:4 (default: dense)")
    comp.add_argument("--bits", choices=["4", "8", "16", "ternary"], default="4",
                      help="4/8: group-quantized INT; 16: fp16; ternary: BitNet b1.58 (default 4)")
    comp.add_argument("--group-size", type=int, default=128, help="kept weights per INT scale (default 128)")
    comp.add_argument("--criterion", choices=["magnitude", "wanda"], default="magnitude",
                      help="pruning criterion (wanda calibrates on the shipped corpus)")
    comp.add_argument("--out", type=Path, required=True, help="output folder")
    comp.set_defaults(handler=_compress)


def _tiny_parser(sub, common) -> None:
    tiny = sub.add_parser("tiny-model", parents=[common], help="build the small local LLaMA used by tests and the demo",
                          description="Create a ~0.4M-parameter LLaMA with a byte tokenizer (fixed seed), "
                                      "optionally trained briefly on the shipped corpus, and save it to DIR.")
    tiny.add_argument("out", type=Path, help="output folder")
    tiny.add_argument("--train-steps", type=int, default=0, help="training steps on the shipped corpus (default 0)")
    tiny.set_defaults(handler=_tiny_model)


def _study_parser(sub, common) -> None:
    study = sub.add_parser("study", parents=[common], help="regenerate a weight-format study table (docs/studies.md)",
                           description="Run a study file (configs/studies/*.yaml) and write study.csv and study.md "
                                       "to --out (default: results/studies/<study name>).")
    study.add_argument("study", type=Path, help="study file, e.g. configs/studies/matmul_4096.yaml")
    study.add_argument("--out", type=Path, help="output folder (default: results/studies/<study file name>)")
    study.set_defaults(handler=_study)


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
    from tlmsim.report import format_weight_bytes
    from tlmsim.workloads.compressed_model import compress_model
    from tlmsim.workloads.formats import parse_format

    if not (args.model_dir / "config.json").is_file():
        raise UserError(f"{args.model_dir} has no config.json; pass a local Hugging Face model folder")
    if args.group_size < 1:
        raise UserError(f"--group-size {args.group_size} must be >= 1 (e.g. 128)")
    try:
        fmt = parse_format(_format_spec(args.bits, args.nm), args.group_size)
    except ValueError as err:
        raise UserError(f"--nm/--bits: {err}") from None
    started = time.perf_counter()
    with atomic_dir(args.out, "compress", inputs=[args.model_dir]) as tmp:
        records = compress_model(args.model_dir, fmt, tmp, criterion=args.criterion)
    decoder = sum(r.packed_nbytes for n, r in records.items() if _in_decoder_layer(n))
    head = sum(r.packed_nbytes for n, r in records.items() if n.split(".")[-1] == "lm_head")
    embedding = sum(r.packed_nbytes for r in records.values()) - decoder - head
    print(f"compressed {len(records)} weight matrices to {fmt.name} in {time.perf_counter() - started:.1f} s")
    print(f"  {format_weight_bytes(decoder, head, embedding)}")
    print(f"  written to {args.out}/ (model for transformers, packed.safetensors, manifest.json)")
    return 0


def _in_decoder_layer(name: str) -> bool:
    from tlmsim.workloads.graph import layer_index

    return layer_index(name) is not None


def _tiny_model(args) -> int:
    from tlmsim.output import atomic_dir
    from tlmsim.workloads.perplexity import load_corpus
    from tlmsim.workloads.tiny_model import build_tiny_model

    if args.train_steps < 0:
        raise UserError(f"--train-steps {args.train_steps} must be >= 0")
    with atomic_dir(args.out, "tiny-model") as tmp:
        build_tiny_model(tmp, train_text=load_corpus() if args.train_steps else None, steps=args.train_steps)
    print(f"tiny LLaMA written to {args.out}/")
    return 0


def _models(args) -> int:
    from tlmsim.workloads.catalog import catalog, format_catalog

    print(format_catalog(catalog()))
    return 0


def _validate_parser(sub, common) -> None:
    val = sub.add_parser("validate", parents=[common], help="simulate published FPGA LLM accelerators, state the error",
                         description="Simulate every measured point of configs/validation/designs.yaml and write "
                                     "validation.md and validation.csv to --out (default: results/validation).")
    val.add_argument("--out", type=Path, help="output folder (default: results/validation)")
    val.add_argument("--designs", type=Path, help="designs file (default: configs/validation/designs.yaml)")
    val.add_argument("--only", metavar="NAME", help="only the design of this name")
    val.set_defaults(handler=_validate)


def _explore_parser(sub, common) -> None:
    exp = sub.add_parser("explore", parents=[common],
                         help="co-design: accuracy x speed x silicon x energy on one Pareto front",
                         description="Explore a design space (configs/explore/*.yaml): every point simulated, "
                                     "perplexity from a compressed proxy model, infeasible points with their reason; "
                                     "writes points.csv, pareto.csv and pareto.png to --out (resumable).")
    exp.add_argument("space", type=Path, help="space file, e.g. configs/explore/flagship.yaml")
    exp.add_argument("--out", type=Path, help="output folder (default: results/explore/<space file name>)")
    exp.add_argument("--executor", choices=["local", "dask", "serial"], default="local")
    exp.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    exp.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    exp.set_defaults(handler=_explore)


def _explore(args) -> int:
    from tlmsim.explore_cli import run

    return run(args)


def _validate(args) -> int:
    from tlmsim.validate import DESIGNS, run_and_write

    return run_and_write(args.out, args.designs or DESIGNS, args.only, quiet=args.quiet)


def _study(args) -> int:
    from tlmsim.study import run_and_write

    return run_and_write(args.study, args.out, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
