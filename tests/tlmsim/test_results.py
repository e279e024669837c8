"""result.json's schema (docs/result_schema.json) and the role helpers of tlmsim.results."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tlmsim import results
from tlmsim.cli import main

FLAGSHIP = str(Path(__file__).resolve().parents[2] / "configs" / "u280_llama7b.yaml")


@pytest.fixture(scope="module")
def result_json(tmp_path_factory):
    """A flagship result.json as ``tlmsim run`` writes it (with wall time and bottlenecks)."""
    out = tmp_path_factory.mktemp("run") / "res"
    assert main(["-q", "run", FLAGSHIP, "--out", str(out), "--set", "workload.prefill_tokens=4",
                 "--set", "workload.decode_tokens=1"]) == 0
    return json.loads((out / "result.json").read_text())


def test_the_committed_schema_is_the_generated_one():
    assert results.SCHEMA_PATH.read_text() == results.schema_text(), "run: python -m tlmsim.results"
    assert results.main(["--check"]) == 0


def test_a_flagship_result_json_validates_against_the_schema(result_json):
    document = results.validate_result(result_json)
    assert document.schema_version == results.SCHEMA_VERSION
    assert document.bottlenecks is not None and document.wall_time_s > 0
    assert document.components["pe_array"].role == "compute"


def test_unknown_fields_and_roles_are_rejected(result_json):
    with pytest.raises(ValidationError, match="extra"):
        results.validate_result({**result_json, "surprise": 1})
    with pytest.raises(ValidationError, match="role"):
        results.validate_result({**result_json, "components": {"gpu": {"role": "accelerator"}}})


def test_the_reuse_block_may_carry_more_than_its_counts(result_json):
    results.validate_result({**result_json, "reuse": {**result_json["reuse"], "disabled_reason": "not periodic"}})


def test_roles_select_and_order_components():
    components = {"ctl": {"role": "control"}, "pe": {"role": "compute"}, "m1": {"role": "memory"},
                  "buf": {"role": "buffer"}, "m2": {"role": "memory"}, "dma": {"role": "transfer"}}
    assert results.with_roles(components, "memory", "compute") == ["pe", "m1", "m2"]
    assert results.with_roles(components) == list(components)
    assert results.in_role_order(components) == ["m1", "m2", "dma", "buf", "pe", "ctl"]
    run = results.RunResult({"components": components})
    assert run.components(*results.WORKING_ROLES) == ["pe", "m1", "m2", "dma"] and not run.traced
