"""Chrome trace: valid events, overlapping slices split into nested-safe lanes."""

import json

from tlmsim.trace import Counter, Slice, Tracer, write_chrome_trace


def test_overlapping_slices_of_one_track_go_to_separate_threads(tmp_path):
    slices = [Slice("hbm", "busy", "a", 0, 10_000), Slice("hbm", "busy", "b", 5_000, 20_000),
              Slice("hbm", "busy", "c", 12_000, 13_000), Slice("pe", "busy", "d", 0, 1_000)]
    write_chrome_trace(tmp_path / "t.json", slices, [Counter("buf", 0, 1)])
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    by_slice = {e["name"]: names[e["tid"]] for e in events if e["ph"] == "X"}
    assert by_slice == {"a": "hbm", "b": "hbm [2]", "c": "hbm", "d": "pe"}
    assert [e["ts"] for e in events if e["ph"] == "X" and e["name"] == "b"] == [0.005]  # µs


def test_disabled_tracer_records_nothing():
    tracer = Tracer()
    tracer.enabled = False
    tracer.slice("x", "busy", "n", 0, 5)
    assert tracer.slices == []
