"""Bad config input, file and ``--set`` alike: unsafe or malformed YAML, non-finite and
out-of-range numbers, coerced types. Every case must fail at validation with the
``user_error`` contract (exit 2, one line naming the field or the --set, no traceback,
nothing written), and fast: none of them may reach the simulation."""

from __future__ import annotations

import copy
import fnmatch
import math
import random
import re
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlmsim.config import load_config
from tlmsim.engine.errors import ConfigError
from tlmsim.engine.yamlio import MAX_BYTES

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
TEXT = FLAGSHIP.read_text()
BASE = yaml.safe_load(TEXT)
INF, NAN = float("inf"), float("nan")


def _with(path: str, value) -> str:
    """The flagship as YAML with one field (a dotted path) set to ``value``."""
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return yaml.safe_dump(raw, sort_keys=False)


def _edit(old: str, new: str) -> str:
    """The flagship text with one exact snippet replaced (the snippet must exist)."""
    assert TEXT.count(old) == 1, old
    return TEXT.replace(old, new)


def _line_of(snippet: str) -> int:
    """1-based line of ``snippet`` in the flagship text."""
    return TEXT[:TEXT.index(snippet)].count("\n") + 1


CLOCK = _line_of("  clock_mhz: 250")

# (case id, file content, fragment the one-line message must contain)
FILE_CASES = [
    # --- duplicate keys
    ("duplicate top-level key", TEXT + "name: again\n", "duplicate key 'name' (first at line 4)"),
    ("duplicate nested key", _edit("  clock_mhz: 250\n", "  clock_mhz: 250\n  clock_mhz: 300\n"),
     f"at line {CLOCK + 1}, column 3: duplicate key 'clock_mhz' (first at line {CLOCK})"),
    ("duplicate key in a flow mapping", _edit("weight_buffer: {banks: 2,", "weight_buffer: {banks: 2, banks: 4,"),
     "duplicate key 'banks'"),
    ("duplicate memory name", _edit("  ddr:  ", "  hbm: {kind: hbm2}\n  ddr:  "), "duplicate key 'hbm'"),
    # --- anchors, aliases, merge keys, tags, nesting
    ("anchor and alias", _edit("weight_buffer: {", "weight_buffer: &wb {").replace(
        "kv_buffer: {banks: 2, bank_kib: 900, memory: bram}", "kv_buffer: *wb"),
     "anchors and aliases (&wb, *wb) are not supported"),
    ("undefined alias", _edit("kv_buffer: {banks: 2, bank_kib: 900, memory: bram}", "kv_buffer: *nothing"),
     "anchors and aliases"),
    ("merge key", _edit("  clock_mhz: 250\n", "  <<: {clock_mhz: 250}\n"), "merge keys ('<<') are not supported"),
    ("python tag", _edit("name: u280_llama7b_int4_2of4", "name: !!python/object/apply:os.system [echo hi]"),
     "use plain YAML data (no tags)"),
    ("custom tag", _edit("name: u280_llama7b_int4_2of4", "name: !secret x"), "could not determine a constructor"),
    ("deep nesting", "name: " + "[" * 100 + "]" * 100 + "\n", "nesting is deeper than 64 levels"),
    ("nesting bomb", "name: " + "[" * 100_000 + "]" * 100_000 + "\n", "nesting"),
    # --- not UTF-8 text
    ("latin-1 file", (TEXT + "# caf\xe9\n").encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    ("PNG file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "is not UTF-8 text (it contains NUL"),
    ("random bytes", bytes(b or 1 for b in random.Random(7).randbytes(4096)), "is not UTF-8 text (byte 0x"),
    ("UTF-16 file", TEXT.encode("utf-16"), "is not UTF-8 text"),
    ("oversized file", TEXT + "#" * MAX_BYTES + "\n", "limit for YAML input"),
    # --- YAML syntax
    ("unclosed bracket", "name: x\nmemory: {hbm: [\n", "is not valid YAML at line 3"),
    ("tab indentation", _edit("  clock_mhz: 250", "\tclock_mhz: 250"), f"is not valid YAML at line {CLOCK}"),
    ("control character", _edit("name: u280", "name: \x07u280"), "character #x0007 is not allowed"),
    ("5000-digit integer", _with("seed", 0).replace("seed: 0", "seed: " + "9" * 5000), "cannot be read"),
    # --- non-finite numbers
    ("clock .inf", _with("accelerator.clock_mhz", INF), "accelerator.clock_mhz: Input should be a finite number"),
    ("bandwidth .nan", _with("memory.hbm.bandwidth_gbps", NAN), "memory.hbm.bandwidth_gbps: Input should be a finite"),
    ("latency -.inf", _with("memory.ddr.latency_ns", -INF), "memory.ddr.latency_ns: Input should be a finite"),
    ("tRCD .inf", _with("memory.hbm.dram.t_rcd_ns", INF), "memory.hbm.dram.t_rcd_ns: Input should be a finite"),
    ("lateral latency .nan", _with("memory.hbm.switch.lateral_latency_ns", NAN), "switch.lateral_latency_ns"),
    ("vector cost .inf", _with("accelerator.vector_unit.cycles_per_element", {"softmax": INF}),
     "accelerator.vector_unit.cycles_per_element.softmax: Input should be a finite number"),
    ("overflow integer for a float", _with("accelerator.clock_mhz", 10**400), "accelerator.clock_mhz"),
    # --- huge and tiny numbers
    ("capacity 1e308", _with("memory.hbm.capacity_gib", 1e308), "the allowed range is (1e-06, 16384] GiB"),
    ("tREFI 1e308", _with("memory.ddr.dram.t_refi_ns", 1e308), "memory.ddr.dram.t_refi_ns: Input should be less"),
    ("bank 1e-300 KiB", _with("accelerator.weight_buffer.bank_kib", 1e-300),
     "accelerator.weight_buffer.bank_kib: Input should be greater than 0.001 (got 1e-300)"),
    ("clock 1e-300", _with("accelerator.clock_mhz", 1e-300), "the allowed range is (0.001, 2000] MHz"),
    ("bandwidth 1e-300", _with("memory.ddr.bandwidth_gbps", 1e-300), "the allowed range is (0.001, 100000] GB/s"),
    ("AXI clock 1e-300 MHz", _with("memory.hbm.switch.axi_clock_mhz", 1e-300), "memory.hbm.switch.axi_clock_mhz"),
    # --- out of the physical range
    ("clock 1e9 MHz", _with("accelerator.clock_mhz", 1e9),
     "accelerator.clock_mhz: Input should be less than or equal to 2000 (got 1000000000.0); "
     "the allowed range is (0.001, 2000] MHz"),
    ("clock 1e9 written plainly", _edit("clock_mhz: 250", "clock_mhz: 1e9"), "(got 1000000000.0)"),
    ("a million channels", _with("memory.hbm.channels", 10**6), "memory.hbm.channels: Input should be less than"),
    ("10^12 decode tokens", _with("workload.decode_tokens", 10**12), "the allowed range is [0, 1048576]"),
    ("10^9 batch", _with("workload.batch", 10**9), "workload.batch: Input should be less than or equal to 4096"),
    ("2^21 prompt tokens", _with("workload.prefill_tokens", 2**21), "workload.prefill_tokens"),
    ("10^7 PE rows", _with("accelerator.pe_array.rows", 10**7), "accelerator.pe_array.rows"),
    ("1 TiB interleave", _with("memory.ddr.interleave_bytes", 2**40), "memory.ddr.interleave_bytes"),
    ("negative seed", _with("seed", -1), "seed: Input should be greater than or equal to 0"),
    # --- no type coercion
    ("true for an int", _with("workload.batch", True), "workload.batch: Input should be a valid integer (got True)"),
    ("true for a float", _with("accelerator.clock_mhz", True), "accelerator.clock_mhz: Input should be a valid number"),
    ("2.0 for an int", _with("memory.hbm.channels", 32.0), "use a whole number without quotes"),
    ("quoted number", _with("accelerator.clock_mhz", "250"), "(got '250')"),
    ("number for a name", _with("name", 123), "name: Input should be a valid string (got 123)"),
    ("1 for a bool", _with("accelerator.pe_array.ternary", 1), "use true or false"),
    ("text for a list", _with("placement.weights", "hbm"), "placement.weights: Input should be a valid list"),
    # --- supported widths and consistency
    ("kv_bits 3", _with("workload.kv_bits", 3), "workload.kv_bits: Input should be 4, 8 or 16 (got 3)"),
    ("activation_bits 5", _with("workload.activation_bits", 5), "workload.activation_bits: Input should be 4, 8 or 16"),
    ("trace beyond decode", yaml.safe_dump({**BASE, "workload": {**BASE["workload"], "decode_tokens": 2},
                                            "trace": {"prefill": True, "decode_steps": 5}}),
     "trace.decode_steps=5 exceeds workload.decode_tokens=2"),
    ("preset outside tlmsim/models/presets", _with("memory.hbm.dram", {"preset": "../../../etc/passwd"}),
     "unknown DRAM timing preset '../../../etc/passwd'"),
    ("huge format text", _with("workload.weight_format", "int4-" + "9" * 100_000), "at most 32 characters"),
]


@pytest.mark.parametrize("content,fragment", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_config_file(tmp_path, user_error, content, fragment):
    cfg = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        cfg.write_bytes(content)
    else:
        cfg.write_text(content, encoding="utf-8")
    err = user_error(["run", cfg, "--out", tmp_path / "out"], fragment=fragment)
    assert len(err) < 500, "the message echoes too much of the input"


SET_CASES = [
    ("inf clock", ["accelerator.clock_mhz=.inf"],
     "error: --set accelerator.clock_mhz=.inf: accelerator.clock_mhz: Input should be a finite number"),
    ("-inf bandwidth", ["memory.hbm.bandwidth_gbps=-.inf"], "--set memory.hbm.bandwidth_gbps=-.inf: memory.hbm"),
    ("nan latency", ["memory.hbm.latency_ns=.nan"], "--set memory.hbm.latency_ns=.nan: memory.hbm.latency_ns"),
    ("1e9 clock", ["accelerator.clock_mhz=1e9"], "--set accelerator.clock_mhz=1e9: accelerator.clock_mhz: Input "
     "should be less than or equal to 2000 (got 1000000000.0); the allowed range is (0.001, 2000] MHz"),
    ("10^12 decode tokens", ["workload.decode_tokens=1000000000000"], "--set workload.decode_tokens=1000000000000:"),
    ("unclosed list", ["workload.batch=[1,"], "--set workload.batch=[1, is not valid YAML at line "),
    ("unclosed quote", ["name='abc"], "--set name='abc is not valid YAML"),
    ("duplicate key", ["accelerator.fpga={uram_kib: 1, uram_kib: 2}"], "duplicate key 'uram_kib'"),
    ("anchor", ["memory.hbm.switch=&s {ports_used: 1}"], "--set memory.hbm.switch=&s {ports_used: 1} at line 1"),
    ("alias", ["memory.hbm.switch=*s"], "anchors and aliases"),
    ("alias bomb", ["name=[&a [x, x, x, x], &b [*a, *a, *a, *a], &c [*b, *b, *b, *b], [*c, *c, *c, *c]]"],
     "anchors and aliases"),
    ("word for a number", ["workload.batch=four"], "--set workload.batch=four: workload.batch: Input should be a "
     "valid integer (got 'four')"),
    ("quoted number", ["workload.batch='4'"], "(got '4')"),
    ("true for an int", ["workload.batch=true"], "(got True)"),
    ("unknown field", ["accelerator.clock_mhzz=5"],
     "--set accelerator.clock_mhzz=5: unknown field 'accelerator.clock_mhzz'; remove it or fix its spelling"),
    ("path through a leaf", ["workload.batch.x=1"], "--set workload.batch.x=1: 'batch' is not a section"),
    ("path through an unknown section", ["accelerator.pe_array.colz.x=1"], "'colz' is not a section"),
    ("empty path part", ["workload..batch=1"], "must look like section.field=value"),
    ("no field", ["=5"], "must look like section.field=value"),
    ("trace beyond decode", ["trace.decode_steps=99"], "--set trace.decode_steps=99: trace.decode_steps=99 exceeds"),
    ("kv_bits 3", ["workload.kv_bits=3"], "--set workload.kv_bits=3: workload.kv_bits: Input should be 4, 8 or 16"),
    ("N:M stays text", ["workload.weight_format=2:4"], "unknown weight format '2:4'"),
    ("python tag", ["memory.hbm.channels=!!python/name:os.system"], "could not determine a constructor"),
    ("huge value", ["name=" + "x" * 50_000], "name: String should have at most 200 characters"),
    ("newline in the value", ["name=a\nb: [c"], "--set name=a\\nb: [c is not valid YAML"),
    ("the second --set is wrong", ["workload.batch=2", "memory.ddr.channels=0"], "--set memory.ddr.channels=0:"),
]


@pytest.mark.parametrize("items,fragment", [c[1:] for c in SET_CASES], ids=[c[0] for c in SET_CASES])
def test_bad_set_value(tmp_path, user_error, items, fragment):
    args = ["run", FLAGSHIP, "--out", tmp_path / "out"]
    for item in items:
        args += ["--set", item]
    err = user_error(args, fragment=fragment)
    assert len(err) < 500, "the message echoes too much of the input"


def test_directory_as_config(tmp_path, user_error):
    folder = tmp_path / "configs"
    folder.mkdir()
    user_error(["run", folder, "--out", tmp_path / "out"], fragment="is a directory; pass a YAML file")


# A 9-level "billion laughs": 9^9 = 387 million strings if it were expanded.
BOMB = "".join(f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9 if p else ['"lol"'] * 9) + "]\n"
               for p, c in zip(["", *"abcdefgh"], "abcdefghi"))


def test_billion_laughs_fails_at_once_without_expanding(tmp_path, user_error):
    assert len(BOMB) < 700 and BOMB.count("*") == 72
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(BOMB)
    started = time.perf_counter()
    err = user_error(["run", cfg, "--out", tmp_path / "out"], fragment="at line 1, column 4: YAML anchors and aliases")
    assert time.perf_counter() - started < 2
    assert len(err) < 300 and "lol" not in err


# ---- property-based: numbers anywhere in the flagship, through the file and --set -----


def _numeric_leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numeric_leaves(value, f"{prefix}{key}.")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix[:-1]


# The flagship's numbers plus fields it leaves to presets and defaults.
FUZZ_FIELDS = sorted({*_numeric_leaves(BASE), "memory.hbm.dram.t_rcd_ns", "memory.ddr.dram.t_refi_ns",
                      "memory.ddr.dram.t_rfc_ns", "memory.hbm.dram.banks", "accelerator.weight_buffer.width_bits"})
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10**30, 10**30),
    st.sampled_from([0, 1, -1, 2**63, 10**400, 1e308, -1e308, 1e-300, 5e-324, 0.5, 2.0]),
)


def _documented_ranges() -> dict[str, str]:
    """field pattern -> allowed range, from the table in docs/configs.md ("Input rules and ranges")."""
    text = (ROOT / "docs" / "configs.md").read_text()
    section = text[text.index("## Input rules and ranges"):]
    return dict(re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|$", section, re.M))


RANGES = _documented_ranges()


def _in_range(value: float, allowed: str) -> bool:
    """Whether ``value`` satisfies a documented range such as '(0.001, 2000] MHz' or 'one of 4, 8, 16 bits'."""
    if allowed.startswith("one of "):
        return value in {int(v) for v in re.findall(r"\d+", allowed)}
    low_bracket, low, high, high_bracket = re.match(r"([\[(])([^,]+), ([^\])]+)([\])])", allowed).groups()
    above = value > float(low) if low_bracket == "(" else value >= float(low)
    below = value < float(high) if high_bracket == ")" else value <= float(high)
    return above and below


def _numbers_of(node, prefix=""):
    """(dotted path, number) of every number in a dumped config (list items share their field)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers_of(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for value in node:
            yield from _numbers_of(value, prefix)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix[:-1], node


def _check_loaded_or_refused(load, source: str) -> None:
    """``load()`` either gives a config whose every number is finite and in its documented
    range, or raises a one-line ConfigError that starts with ``source``."""
    try:
        cfg = load()
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message and len(message) < 500, message
        assert message.startswith(source), message
        return
    for path, value in _numbers_of(cfg.model_dump(mode="python")):
        assert math.isfinite(value), (path, value)
        allowed = [r for pattern, r in RANGES.items() if fnmatch.fnmatchcase(path, pattern)]
        assert allowed, f"{path} has no documented range"
        assert _in_range(value, allowed[0]), (path, value, allowed[0])


def _yaml_scalar(value) -> str:
    return yaml.safe_dump(value).removesuffix("\n...\n").strip()


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(field=st.sampled_from(FUZZ_FIELDS), value=NUMBERS)
def test_fuzzed_numbers_in_a_file_load_in_range_or_fail_in_one_line(field, value):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(_with(field, value))
        _check_loaded_or_refused(lambda: load_config(path), str(path))


@FUZZ
@given(field=st.sampled_from(FUZZ_FIELDS), value=NUMBERS)
def test_fuzzed_numbers_via_set_load_in_range_or_fail_in_one_line(field, value):
    item = f"{field}={_yaml_scalar(value)}"
    _check_loaded_or_refused(lambda: load_config(FLAGSHIP, [item]), f"--set {field}=")
