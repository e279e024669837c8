"""Config loading: valid configs load; every mistake names the field and the fix."""

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from tlmsim.config import load_config, validate_config
from tlmsim.engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["u280_llama7b", "u280_llama7b_int4_dense", "u280_llama7b_fp16"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.memory["hbm"].channels == 32


def _error(raw) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(raw, "cfg.yaml")
    return str(err.value)


def test_unknown_field_is_named(flagship_raw):
    flagship_raw["accelerator"]["pe_array"]["colz"] = 3
    assert "unknown field 'accelerator.pe_array.colz'" in _error(flagship_raw)


def test_n_not_below_m_is_rejected_with_the_rule(flagship_raw):
    flagship_raw["accelerator"]["pe_array"].update(n=4, m=4)
    assert "n=4 must be < m=4" in _error(flagship_raw)


def test_zero_bandwidth_names_the_field(flagship_raw):
    flagship_raw["memory"]["hbm"]["bandwidth_gbps"] = 0
    msg = _error(flagship_raw)
    assert "memory.hbm.bandwidth_gbps" in msg and "greater than 0" in msg


def test_sparse_format_must_match_the_pe_array(flagship_raw):
    flagship_raw["workload"]["weight_format"] = "int4-1:8"
    assert "set accelerator.pe_array.n/m to 1/8" in _error(flagship_raw)


def test_placement_must_name_defined_memories(flagship_raw):
    flagship_raw["placement"]["weights"] = ["hbm3"]
    assert "placement.weights names memory 'hbm3'" in _error(flagship_raw)


def test_buffers_must_fit_the_fpga(flagship_raw):
    flagship_raw["accelerator"]["activation_buffer"]["capacity_kib"] = 40000
    assert "URAM" in _error(flagship_raw)


def test_unknown_weight_format(flagship_raw):
    flagship_raw["workload"]["weight_format"] = "int3"
    assert "unknown weight format 'int3'" in _error(flagship_raw)


def test_broken_yaml_reports_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmemory: [\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_sets_nested_fields_and_rejects_unknown_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text((ROOT / "configs" / "u280_llama7b.yaml").read_text())
    cfg = load_config(path, ["memory.hbm.bandwidth_gbps=230", "workload.decode_tokens=4"])
    assert cfg.memory["hbm"].bandwidth_gbps == 230 and cfg.workload.decode_tokens == 4
    with pytest.raises(ConfigError, match="'nosuch' is not a section"):
        load_config(path, ["nosuch.x=1"])


def test_resolved_config_round_trips(flagship_raw):
    cfg = validate_config(flagship_raw)
    again = validate_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert again == cfg


# ---- input hardening: the safe YAML loader, ranges, strict types, --set attribution ----


def test_every_shipped_config_and_study_override_validates():
    from tlmsim.study import StudyConfig

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)
    for path in sorted((ROOT / "configs" / "studies").glob("*.yaml")):
        study = StudyConfig.model_validate(yaml.safe_load(path.read_text()))
        load_config((path.parent / study.base).resolve(), study.overrides)


def test_the_documented_ranges_are_the_schema():
    from tlmsim.config import numeric_ranges

    text = (ROOT / "docs" / "configs.md").read_text()
    table = text[text.index("## Input rules and ranges"):]
    documented = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|$", table, re.M)
    assert documented == list(numeric_ranges())


def test_every_number_of_the_resolved_flagship_has_a_range(flagship_raw):
    from tlmsim.config import numeric_ranges

    patterns = [p for p, _ in numeric_ranges()]

    def numbers(node, prefix=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from numbers(value, f"{prefix}{key}.")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            yield prefix[:-1]

    dumped = validate_config(flagship_raw).model_dump()
    dumped["memory"]["hbm"]["channel_range"] = 0  # a tuple in the dump; its items have a range
    missing = [p for p in numbers(dumped) if not any(fnmatch.fnmatchcase(p, pat) for pat in patterns)]
    assert not missing


def test_the_saved_resolved_config_loads_back_equal(tmp_path, flagship_raw):
    cfg = validate_config(flagship_raw)
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))  # what `tlmsim run` writes
    assert load_config(saved) == cfg


@pytest.mark.parametrize("field,value,fragment", [
    ("accelerator.clock_mhz", float("inf"), "accelerator.clock_mhz: Input should be a finite number"),
    ("accelerator.clock_mhz", 1e-300, "the allowed range is (0.001, 2000] MHz"),
    ("accelerator.clock_mhz", True, "accelerator.clock_mhz: Input should be a valid number (got True)"),
    ("workload.batch", True, "workload.batch: Input should be a valid integer (got True)"),
    ("workload.batch", 2.0, "workload.batch: Input should be a valid integer (got 2.0)"),
    ("workload.kv_bits", 3, "workload.kv_bits: Input should be 4, 8 or 16"),
    ("workload.decode_tokens", 2**21, "the allowed range is [0, 1048576]"),
    ("name", 7, "name: Input should be a valid string"),
])
def test_numbers_are_finite_in_range_and_never_coerced(flagship_raw, field, value, fragment):
    section, key = field.rsplit(".", 1) if "." in field else ("", field)
    node = flagship_raw
    for part in filter(None, section.split(".")):
        node = node[part]
    node[key] = value
    assert fragment in _error(flagship_raw)


def test_an_int_is_a_valid_float(flagship_raw):
    flagship_raw["accelerator"]["clock_mhz"] = 300
    assert validate_config(flagship_raw).accelerator.clock_mhz == 300.0


def test_decode_steps_may_not_exceed_decode_tokens_but_a_prefill_only_run_keeps_the_default(flagship_raw):
    flagship_raw["workload"]["decode_tokens"] = 0
    assert validate_config(flagship_raw).trace.decode_steps == 1
    flagship_raw["workload"]["decode_tokens"] = 2
    flagship_raw["trace"]["decode_steps"] = 3
    assert "trace.decode_steps=3 exceeds workload.decode_tokens=2" in _error(flagship_raw)


def test_messages_stay_on_one_line_and_short(flagship_raw):
    flagship_raw["memory"]["a\nb" * 100] = flagship_raw["memory"].pop("ddr")
    flagship_raw["name"] = "x\n" * 10_000
    msg = _error(flagship_raw)
    assert "\n" not in msg and len(msg) < 500


def test_a_set_error_names_the_set_and_a_file_error_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text((ROOT / "configs" / "u280_llama7b.yaml").read_text().replace("clock_mhz: 250", "clock_mhz: .inf"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: accelerator.clock_mhz"):
        load_config(path, ["workload.batch=2"])
    with pytest.raises(ConfigError, match=r"^--set accelerator.clock_mhz=-1: accelerator.clock_mhz"):
        load_config(ROOT / "configs" / "u280_llama7b.yaml", ["workload.batch=2", "accelerator.clock_mhz=-1"])
    with pytest.raises(ConfigError, match=r"^--set accelerator.pe_array.n=1: workload.weight_format int4-2:4"):
        load_config(ROOT / "configs" / "u280_llama7b.yaml", ["accelerator.pe_array.n=1"])


def test_apply_override_keeps_n_m_text_and_reads_yaml():
    from tlmsim.config import apply_override

    raw = {"workload": {}}
    apply_override(raw, "workload.pattern=2:4")
    apply_override(raw, "workload.batch= 8")
    apply_override(raw, "workload.scale=1e3")
    apply_override(raw, "trace.prefill=false")  # a section the file left out
    assert raw == {"workload": {"pattern": "2:4", "batch": 8, "scale": 1000.0}, "trace": {"prefill": False}}


# ---- tlmsim.engine.yamlio ---------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    ("2:4", "2:4"), ("1:30:00", "1:30:00"), ("1e9", 1e9), ("-2.5E-3", -0.0025), ("1.0e+9", 1e9),
    ("0x10", 16), ("1_000", 1000), (".inf", float("inf")), ("yes", True), ("'7'", "7"),
    ("{a: 1, b: [x, 2:4]}", {"a": 1, "b": ["x", "2:4"]}),
])
def test_safe_loader_reads_numbers_as_people_write_them(text, value):
    from tlmsim.engine.yamlio import load_yaml_text

    assert load_yaml_text(text, "t") == value


@pytest.mark.parametrize("text,fragment", [
    ("a: 1\nb: 2\na: 3\n", "t at line 3, column 1: duplicate key 'a' (first at line 1)"),
    ("a: {x: 1, y: 2, x: 3}", "duplicate key 'x'"),
    ("1: a\n1.0: b\n", "duplicate key 1.0"),
    ("a: &x 1\nb: *x\n", "t at line 1, column 4: YAML anchors and aliases (&x, *x)"),
    ("<<: {a: 1}", "merge keys"),
    ("a: !!python/object/apply:os.system [ls]", "no tags"),
    ("a: [" * 100 + "]" * 100, "nesting is deeper than 64"),
    ("a: [1,\n", "t is not valid YAML at line 2, column 1"),
    ("a: 1\n---\nb: 2\n", "expected a single document"),
    ("a: " + "7" * 5000, "cannot be read"),
    ("a: 2001-13-45", "cannot be read (month must be in 1..12)"),
])
def test_safe_loader_refuses_ambiguous_or_unsafe_yaml(text, fragment):
    from tlmsim.engine.yamlio import load_yaml_text

    with pytest.raises(ConfigError) as err:
        load_yaml_text(text, "t")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_safe_loader_caps_the_size_of_text_and_files(tmp_path):
    from tlmsim.engine.yamlio import MAX_BYTES, load_yaml_file, load_yaml_text

    with pytest.raises(ConfigError, match="1 MiB"):
        load_yaml_text("#" * (MAX_BYTES + 1), "t")
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" + "#" * MAX_BYTES)
    with pytest.raises(ConfigError, match="1 MiB"):
        load_yaml_file(big)


def test_a_pipe_is_refused_instead_of_blocking(tmp_path):
    import os

    from tlmsim.engine.yamlio import load_yaml_file

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_yaml_file(fifo)


def test_clip_makes_one_short_printable_line():
    from tlmsim.engine.yamlio import clip, short_repr

    assert clip("a\nb\x00c") == "a\\nb\\x00c"
    assert clip("x" * 100, 10) == "xxxxxxx..."
    assert len(short_repr("y" * 10**6)) == 60
