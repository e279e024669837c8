"""Chrome trace: valid events, overlapping slices split into nested-safe lanes."""

import json

from tlmsim.engine.trace import Counter, Slice, Tracer, bandwidth_series, write_chrome_trace


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


# ---------------------------------------------------------------- a real run's trace

from collections import Counter as Count  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    from tlmsim.config import load_config
    from tlmsim.report import memory_peaks, trace_markers
    from tlmsim.simulate import simulate

    cfg = load_config(ROOT / "configs" / "u280_llama7b.yaml", ["workload.prefill_tokens=1", "workload.decode_tokens=1"])
    run = simulate(cfg)
    path = tmp_path_factory.mktemp("trace") / "trace.json"
    write_chrome_trace(path, run.slices, run.counters, memories=memory_peaks(run.data),
                       layer_of={op["name"]: op["layer"] for op in run.data["ops"]}, markers=trace_markers(run.data))
    return run, json.loads(path.read_text())


def check_trace_format(trace: dict) -> None:
    """The Chrome trace-event rules Perfetto's JSON importer relies on."""
    assert trace["displayTimeUnit"] in ("ns", "ms") and isinstance(trace["traceEvents"], list)
    named_pids, named_threads, lanes = set(), set(), {}
    for e in trace["traceEvents"]:
        assert e["ph"] in ("X", "C", "M") and isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert isinstance(e["name"], str) and e["name"]
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index")
            (named_pids if e["name"] == "process_name" else named_threads).add((e["pid"], e["tid"]))
        elif e["ph"] == "X":
            assert e["ts"] >= 0 and e["dur"] > 0 and isinstance(e["args"], dict)
            lanes.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
        else:
            assert all(isinstance(v, (int, float)) for v in e["args"].values())
    assert set(lanes) <= named_threads and {p for p, _ in lanes} <= {p for p, _ in named_pids}
    for spans in lanes.values():  # X events on one thread must not overlap
        spans.sort()
        assert all(b[0] >= a[1] - 1e-9 for a, b in zip(spans, spans[1:]))


def test_real_trace_follows_the_format(traced_run):
    check_trace_format(traced_run[1])


def test_one_process_per_component_with_every_traced_slice(traced_run):
    run, trace = traced_run
    events = trace["traceEvents"]
    process = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    tracks = {s.track for s in run.slices} | {c.track.split(" ")[0] for c in run.counters}
    assert set(process.values()) == tracks | {"workload"}
    per_component = Count(process[e["pid"]] for e in events if e["ph"] == "X" and process[e["pid"]] != "workload")
    assert per_component == Count(s.track for s in run.slices)
    assert sum(1 for e in events if e["ph"] == "C" and "tiles held" in e["name"]) == len(run.counters)


def test_transactions_carry_bytes_and_layer_and_memories_get_a_bandwidth_counter(traced_run):
    run, trace = traced_run
    events = trace["traceEvents"]
    process = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    reads = [e for e in events if e["ph"] == "X" and process[e["pid"]] == "hbm"]
    assert reads and all(e["args"]["bytes"] > 0 for e in reads)
    assert any(e["args"].get("layer") == 31 for e in reads)
    samples = [(e["ts"], e["args"]["value"]) for e in events if e["ph"] == "C" and e["name"] == "hbm bandwidth (GB/s)"]
    # Bytes are spread over the window their data moves in (the memory's data_ps), which never
    # overlaps beyond the peak; binning may still round: allow 1% over the 460 GB/s peak.
    assert samples and 0 < max(v for _, v in samples) <= 460 * 1.01
    # the counter integrates back to the traced bytes: GB/s x µs = 1e3 B
    moved = sum(v * (b[0] - a[0]) * 1e3 for (a, b), v in zip(zip(samples, samples[1:]), (v for _, v in samples)))
    assert moved == pytest.approx(sum(s.args["bytes"] for s in run.slices if s.track == "hbm"), rel=1e-6)


def test_bandwidth_series_conserves_bytes():
    slices = [Slice("m", "busy", "a", 0, 1000, {"bytes": 500}), Slice("m", "busy", "b", 250, 750, {"bytes": 1000})]
    series = bandwidth_series(slices, "m", bins=4)
    widths = [b[0] - a[0] for a, b in zip(series, series[1:])]
    moved = sum(gbps / 1000 * w for (_, gbps), w in zip(series, widths))  # GB/s -> B/ps
    assert moved == pytest.approx(1500) and series[-1] == (1000, 0.0)
