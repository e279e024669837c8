"""Bad-input catalog: every user mistake gives one line naming the field and the fix,
exit code 2, no traceback, and no output directory (not even a partial one)."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlmsim.cli import main
from tlmsim.config import validate_config
from tlmsim.engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
BASE = yaml.safe_load(FLAGSHIP.read_text())


def _set(raw: dict, path: str, value) -> dict:
    raw = copy.deepcopy(raw)
    node = raw
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()

# (case id, config path, value, expected message fragment)
CONFIG_CASES = [
    ("unknown top-level key", "colour", "red", "unknown field 'colour'"),
    ("unknown nested key", "accelerator.pe_array.colz", 3, "unknown field 'accelerator.pe_array.colz'"),
    ("missing field", "accelerator.clock_mhz", _DELETE, "missing field 'accelerator.clock_mhz'"),
    ("wrong type", "accelerator.clock_mhz", "fast", "accelerator.clock_mhz"),
    ("unit in the value", "memory.hbm.bandwidth_gbps", "460 GB/s", "memory.hbm.bandwidth_gbps"),
    ("negative bandwidth", "memory.hbm.bandwidth_gbps", -1,
     "memory.hbm.bandwidth_gbps: Input should be greater than 0"),
    ("zero bandwidth", "memory.ddr.bandwidth_gbps", 0, "memory.ddr.bandwidth_gbps: Input should be greater than 0"),
    ("zero channels", "memory.hbm.channels", 0, "memory.hbm.channels"),
    ("clock 0", "accelerator.clock_mhz", 0, "accelerator.clock_mhz: Input should be greater than 0"),
    ("N >= M in the PE", "accelerator.pe_array.n", 4, "n=4 must be < m=4"),
    ("M not a power of two", "accelerator.pe_array.m", 6, "m=6 must be a power of two"),
    ("format N >= M", "workload.weight_format", "int4-4:4", "0 < N < M"),
    ("unknown format", "workload.weight_format", "int3", "unknown weight format 'int3'"),
    ("malformed N:M", "workload.weight_format", "int4-2x4", "bad N:M pattern"),
    ("format vs PE mismatch", "workload.weight_format", "int4-1:8", "set accelerator.pe_array.n/m to 1/8"),
    ("ternary on a PE without it", "accelerator.pe_array.ternary", False, None),
    ("unknown memory in placement", "placement.weights", ["hbm3"], "placement.weights names memory 'hbm3'"),
    ("empty placement", "placement.kv_cache", [], "placement.kv_cache"),
    ("buffers beyond the URAM", "accelerator.activation_buffer.capacity_kib", 40000, "shrink the buffers"),
    ("zero bank size", "accelerator.weight_buffer.bank_kib", 0, "accelerator.weight_buffer.bank_kib"),
    ("negative decode tokens", "workload.decode_tokens", -1, "workload.decode_tokens"),
    ("zero prefill tokens", "workload.prefill_tokens", 0, "workload.prefill_tokens"),
    ("zero batch", "workload.batch", 0, "workload.batch"),
    ("zero group size", "workload.group_size", 0, "workload.group_size"),
    ("zero vector lanes", "accelerator.vector_unit.lanes", 0, "accelerator.vector_unit.lanes"),
    ("memory section not a mapping", "memory", ["hbm"], "memory"),
]


def _run(tmp_path, capsys, args):
    out = tmp_path / "out"
    code = main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*")), "partial output left behind"
    return err


@pytest.mark.parametrize("case,path,value,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_mistakes(tmp_path, capsys, case, path, value, message):
    raw = _set(BASE, path, value)
    if case == "ternary on a PE without it":
        raw = _set(raw, "workload.weight_format", "ternary")
        message = "pe_array.ternary is false"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert message in _run(tmp_path, capsys, ["run", str(cfg)])


@pytest.mark.parametrize("text,message", [
    ("name: x\nmemory: [\n", "is not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("", "top level must be a mapping"),
], ids=["broken yaml", "list at top level", "empty file"])
def test_unreadable_config_files(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert message in _run(tmp_path, capsys, ["run", str(cfg)])


@pytest.mark.parametrize("overrides,message", [
    (["--set", "workload.weight_format=fp16"], "add 'ddr' to placement.weights"),
    (["--set", "accelerator.weight_buffer.bank_kib=1"], "weight_buffer.bank_kib is too small"),
    (["--set", "accelerator.activation_buffer.capacity_kib=1"], "activation_buffer.capacity_kib is too small"),
    (["--set", "workload.model=llama-9000"], "is neither a shipped model"),
    (["--set", "workload.batch"], "must look like section.field=value"),
    (["--set", "nosuch.x=1"], "'nosuch' is not a section"),
    (["--set", "memory.hbm.placement_channels=range", "--set", "memory.hbm.channel_range=[0, 8]"],
     "free of 2.15 GB"),
], ids=["weights beyond capacity", "weight bank below one tile", "activation buffer below one token",
        "unknown model", "override without value", "override of a missing section",
        "weights beyond a channel range"])
def test_run_time_mistakes(tmp_path, capsys, overrides, message):
    assert message in _run(tmp_path, capsys, ["run", str(FLAGSHIP), *overrides])


def test_missing_config_file(tmp_path, capsys):
    assert "not found" in _run(tmp_path, capsys, ["run", str(tmp_path / "nope.yaml")])


def test_unwritable_output_location(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", str(FLAGSHIP), "--out", str(blocker / "sub"),
                 "--set", "workload.prefill_tokens=4", "--set", "workload.decode_tokens=0"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


def test_unknown_cli_option_exits_2(capsys):
    assert main(["run", str(FLAGSHIP), "--frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --frobnicate" in err and err.count("\n") == 1


# ---- model directories ---------------------------------------------------------------


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    assert main(["-q", "tiny-model", str(root / "tiny")]) == 0
    assert main(["-q", "compress", str(root / "tiny"), "--nm", "2:4", "--out", str(root / "c")]) == 0
    return root / "c"


def _broken_copy(src: Path, dst: Path, edit) -> Path:
    import shutil

    shutil.copytree(src, dst)
    edit(dst)
    return dst


MODEL_CASES = [
    ("missing manifest", lambda d: (d / "manifest.json").unlink(), "manifest.json"),
    ("manifest not JSON", lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
    ("corrupt packed safetensors", lambda d: (d / "packed.safetensors").write_bytes(b"garbage"), "packed.safetensors"),
    ("manifest shape mismatch", lambda d: _edit_manifest(d), "model.layers.0.self_attn.q_proj"),
    ("missing config.json", lambda d: (d / "config.json").unlink(), "config.json"),
]


def _edit_manifest(d: Path) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["layers"]["model.layers.0.self_attn.q_proj"]["out_features"] += 4
    (d / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case,edit,message", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_directory_mistakes(tmp_path, capsys, compressed, case, edit, message):
    model = _broken_copy(compressed, tmp_path / "model", edit)
    runs = tmp_path / "runs"
    runs.mkdir()
    argv = ["run", str(FLAGSHIP), "--model", str(model), "--set", "workload.decode_tokens=1"]
    assert message in _run(runs, capsys, argv)


def test_compress_rejects_n_not_below_m(tmp_path, capsys, compressed):
    assert "0 < N < M" in _run(tmp_path, capsys, ["compress", str(compressed), "--nm", "3:2"])


# ---- property-based fuzzing of the config loader ---------------------------------------


def _leaf_paths(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1]


LEAVES = sorted(_leaf_paths(BASE))
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.sampled_from(LEAVES), VALUES), min_size=1, max_size=3))
def test_fuzzed_configs_either_load_or_raise_a_config_error(mutations):
    raw = BASE
    for path, value in mutations:
        raw = _set(raw, path, value)
    try:
        validate_config(raw, "fuzz.yaml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.yaml")
