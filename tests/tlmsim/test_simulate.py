"""simulate(): a config in, a RunResult of plain data out (no live simulator object)."""

import dataclasses
import gc
import json
import weakref
from pathlib import Path

import pytest

import tlmsim.simulate
from tlmsim.config import load_config
from tlmsim.models.accelerator import Accelerator
from tlmsim.results import BOUNDING_ROLES, RunResult, validate_result, with_roles
from tlmsim.simulate import simulate
from tlmsim.workloads.synthetic import single_linear

FLAGSHIP = Path(__file__).resolve().parents[2] / "configs" / "u280_llama7b.yaml"
SHORT = ["workload.prefill_tokens=4", "workload.decode_tokens=2"]
NO_TRACE = ["trace.prefill=false", "trace.decode_steps=0"]
FLAGSHIP_ROLES = {"hbm": "memory", "ddr": "memory", "weight_dma": "transfer", "kv_dma": "transfer",
                  "weight_buffer": "buffer", "kv_buffer": "buffer", "decoder": "compute", "pe_array": "compute",
                  "vector_unit": "compute", "controller": "control"}


@pytest.fixture(scope="module")
def run():
    return simulate(load_config(FLAGSHIP, SHORT))


def test_returns_a_run_result_of_plain_json_data(run):
    assert isinstance(run, RunResult)
    assert json.loads(json.dumps(run.data)) == run.data  # nothing but JSON types
    assert run.data["summary"]["decode_tokens_per_s"] == run.data["phases"]["decode"]["tokens_per_s"]
    validate_result(run.data)
    assert "wall_time_s" not in run.data and run.wall_time_s > 0  # wall time differs run to run


def test_components_are_recorded_with_the_role_their_class_declares(run):
    assert {name: info["role"] for name, info in run.data["components"].items()} == FLAGSHIP_ROLES
    assert list(run.data["components"]) == list(run.data["phases"]["prefill"]["utilisation"])
    assert run.components("memory") == ["hbm", "ddr"]
    assert run.components() == list(FLAGSHIP_ROLES)


def test_the_bounding_component_is_the_busiest_memory_or_compute_component(run):
    for phase in run.data["phases"].values():
        busy = {c: phase["utilisation"][c]["busy"] for c in with_roles(run.data["components"], *BOUNDING_ROLES)}
        assert phase["bounding_component"] == max(busy, key=busy.get)
    assert run.data["phases"]["decode"]["bounding_component"] == "hbm"


def test_trace_records_come_with_the_result_when_tracing_is_on(run):
    assert run.traced and run.slices and run.counters
    assert {s.track for s in run.slices} <= set(run.data["components"])


def test_no_trace_records_when_tracing_is_off():
    quiet = simulate(load_config(FLAGSHIP, [*SHORT, *NO_TRACE]))
    assert (quiet.slices, quiet.counters, quiet.traced) == ((), (), False)


def test_two_runs_give_identical_data():
    cfg = load_config(FLAGSHIP, ["workload.prefill_tokens=2", "workload.decode_tokens=1", *NO_TRACE])
    assert json.dumps(simulate(cfg).data) == json.dumps(simulate(cfg).data)


def test_a_graph_passed_in_is_simulated_instead_of_the_model():
    cfg = load_config(FLAGSHIP, ["workload.prefill_tokens=1", "workload.decode_tokens=0"])
    data = simulate(cfg, graph=single_linear(512, 1024, "int4-2:4", cfg.workload.group_size)).data
    assert [op["name"] for op in data["ops"]] == ["layers.0.proj"]
    assert data["model"] is None and "decode" not in data["phases"]
    validate_result(data)


def test_progress_is_reported_after_each_step():
    calls = []
    simulate(load_config(FLAGSHIP, ["workload.prefill_tokens=1", "workload.decode_tokens=2", *NO_TRACE]),
             progress=lambda done, total, phase: calls.append((done, total, phase)))
    assert calls == [(1, 3, "prefill"), (2, 3, "decode"), (3, 3, "decode")]


def test_the_accelerator_is_neither_reachable_from_the_result_nor_kept_alive(monkeypatch):
    built = []

    class Watched(Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(weakref.ref(self))
    monkeypatch.setattr(tlmsim.simulate, "Accelerator", Watched)
    result = simulate(load_config(FLAGSHIP, ["workload.prefill_tokens=1", "workload.decode_tokens=1"]))
    gc.collect()
    assert len(built) == 1 and built[0]() is None  # freed: nothing in the result refers to it
    assert result.slices and all(type(getattr(result, f.name)) in (dict, tuple, float)
                                 for f in dataclasses.fields(result))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.data = {}
