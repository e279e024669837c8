"""Timeline and sweep plots: files written from records alone, lanes in component order."""

import math

from tlmsim.engine.trace import Counter, Slice
from tlmsim.plots import is_number, sweep_plot, timeline
from tlmsim.report import window_utilisation

PNG = b"\x89PNG\r\n\x1a\n"


def _records():
    slices = [Slice("pe_array", "busy", "q", 0, 400_000),
              Slice("pe_array", "stall:waiting for operands", "q", 400_000, 600_000),
              Slice("hbm", "busy", "q", 0, 500_000, {"bytes": 4096}),
              Slice("hbm", "busy", "k", 100_000, 900_000, {"bytes": 4096}),
              Slice("weight_dma", "busy", "x", 0, 900_000),
              Slice("vector_unit", "busy", "n", 700_000, 800_000)]
    counters = [Counter("weight_buffer tiles held", 0, 1), Counter("weight_buffer tiles held", 300_000, 2)]
    return slices, counters


def test_timeline_writes_png_and_svg_with_lanes_in_component_order(tmp_path):
    slices, counters = _records()
    util = window_utilisation(slices, 0, 1_000_000, {"hbm": 460})
    paths = [tmp_path / "t.png", tmp_path / "t.svg"]
    lanes = timeline(slices, counters, 0, 1_000_000, paths, "test", util, {"hbm": 460.0, "ddr": 38.4})
    assert lanes == ["hbm", "ddr", "weight_dma", "weight_buffer", "pe_array", "vector_unit"]
    assert paths[0].read_bytes()[:8] == PNG and b"<svg" in paths[1].read_bytes()[:500]


def test_timeline_of_an_empty_window_still_draws_every_lane(tmp_path):
    slices, counters = _records()
    lanes = timeline(slices, counters, 10**9, 2 * 10**9, [tmp_path / "t.png"], "idle", {}, {"hbm": 460.0})
    assert "pe_array" in lanes and (tmp_path / "t.png").stat().st_size > 1000


def test_sweep_plot_handles_failed_points_and_series(tmp_path):
    rows = [{"bw": bw, "batch": b, "status": "ok", "tokens_per_s": min(bw, 300.0) * b, "bound_by": "hbm",
             "bandwidth_bound_tokens_per_s": float(bw * b), "compute_bound_tokens_per_s": 300.0 * b}
            for bw in (100, 200, 400) for b in (1, 2)] + [{"bw": 800, "batch": 1, "status": "error"}]
    sweep_plot(rows, "bw", [tmp_path / "s.png"], "t", knee_x=300.0, series_field="batch")
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG


def test_is_number_rejects_bools_strings_and_infinities():
    assert [is_number(v) for v in (1, 2.5, True, "3", math.inf)] == [True, True, False, False, False]
