"""Bottleneck report: critical-path attribution by hand-computed examples; windows."""

import pytest

from tlmsim.engine.errors import UserError
from tlmsim.engine.trace import Slice
from tlmsim.report import (
    bottlenecks,
    check_window_traced,
    critical_path,
    format_report,
    parse_window,
    resolve_window,
    window_utilisation,
)


def _op(name, layer, start, time, bound_by, roofline, step=1, phase="decode"):
    return {"name": name, "layer": layer, "start_s": start, "time_s": time, "bound_by": bound_by,
            "roofline_s": roofline, "step": step, "phase": phase, "kind": "linear"}


# Step 1: a (hbm) 0-4, b (pe) 1-3 hidden under a, c (vector) 4-5, d (hbm, layer 1) 4.5-8.
OPS = [_op("model.layers.0.a", 0, 0.0, 4.0, "hbm", 3.0), _op("model.layers.0.b", 0, 1.0, 2.0, "pe_array", 2.0),
       _op("model.layers.0.c", 0, 4.0, 1.0, "vector_unit", 1.0), _op("model.layers.1.a", 1, 4.5, 3.5, "hbm", 3.0),
       _op("lm_head", None, 0.0, 0.5, "hbm", 0.5, step=0, phase="prefill")]


def test_exposed_times_sum_to_the_step_and_hidden_ops_get_only_their_tail():
    path = {op["name"]: exposed for op, exposed in critical_path(OPS[:4])}
    # completion order b(3), a(4), c(5), d(8): b owns 1..3 from step start 0 -> 3, a 3..4, c 4..5, d 5..8
    assert path == {"model.layers.0.b": 3.0, "model.layers.0.a": 1.0, "model.layers.0.c": 1.0, "model.layers.1.a": 3.0}
    assert sum(path.values()) == 8.0


def test_report_attributes_steps_and_layers_to_bounding_components():
    report = bottlenecks({"ops": OPS})
    prefill, decode = report["steps"]
    assert (prefill["step"], prefill["time_s"], prefill["bound_by"]) == (0, 0.5, "hbm")
    assert decode["by_component_s"] == {"hbm": 4.0, "pe_array": 3.0, "vector_unit": 1.0}
    assert decode["bound_by"] == "hbm" and decode["bound_share"] == 0.5
    layers = {entry["layer"]: entry for entry in decode["layers"]}
    assert layers[0]["bound_by"] == "pe_array" and layers[0]["exposed_s"] == 5.0
    assert layers[1]["bound_by"] == "hbm" and layers[1]["exposed_s"] == 3.0
    text = format_report(report)
    assert "decode 1" in text and "50.0%" in text and "model.layers.*.a" in text


def test_margin_uses_per_op_demands_when_present():
    op = {**OPS[0], "demand_s": {"hbm": 3.0, "decoder": 1.5, "pe_array": 0.5}}
    rows = bottlenecks({"ops": [op]})["steps"][0]["ops"]
    assert rows[0]["margin"] == 2.0 and rows[0]["x_roofline"] == pytest.approx(4 / 3)


@pytest.mark.parametrize("spec,parts", [("all", {}), ("step:0", {"step": 0}), ("layer:3", {"layer": 3}),
                                        ("step:1,layer:2", {"step": 1, "layer": 2})])
def test_window_specs_parse(spec, parts):
    assert parse_window(spec) == parts


@pytest.mark.parametrize("spec", ["layer", "layer:x", "token:1", "step:1,step:2", ""])
def test_bad_window_specs_are_user_errors(spec):
    with pytest.raises(UserError, match="timeline-window"):
        parse_window(spec)


def test_untraced_step_is_rejected_before_simulating():
    check_window_traced("step:1", True, 1, 32)
    with pytest.raises(UserError, match="trace.decode_steps"):
        check_window_traced("step:2", True, 1, 32)


def test_layer_window_spans_that_layers_ops_of_the_first_decode_step():
    result = {"ops": OPS}
    start, end, label = resolve_window(result, "layer:0", (0, 10**13))
    assert (start, end) == (0, 5 * 10**12) and "decoder layer 0" in label
    assert resolve_window(result, "all", (7, 9)) == (7, 9, "whole traced run")
    with pytest.raises(UserError, match="no such step/layer"):
        resolve_window(result, "layer:5", (0, 10**13))


def test_memory_utilisation_is_bytes_over_peak_and_clips_to_the_window():
    # 1000 B in 1 ns is 1000 GB/s: at that peak the memory is 100% busy
    slices = [Slice("hbm", "busy", "x", 0, 1000, {"bytes": 1000}), Slice("pe", "busy", "y", 500, 1500)]
    util = window_utilisation(slices, 0, 1000, {"hbm": 1000.0})
    assert util == {"hbm": {"busy": pytest.approx(1.0)}, "pe": {"busy": 0.5}}
