"""Config loading: valid configs load; every mistake names the field and the fix."""

from pathlib import Path

import pytest
import yaml

from tlmsim.config import load_config, validate_config
from tlmsim.errors import ConfigError

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
