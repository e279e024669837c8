"""Whole-system checks against the analytic roofline (independent of the event model)."""

import pytest

from tlmsim.config import validate_config
from tlmsim.engine.timebase import cycles_to_ps
from tlmsim.models.accelerator import Accelerator
from tlmsim.workloads.phases import Workload
from tlmsim.workloads.synthetic import single_linear


def _run_lone(flagship_raw, shape, spec, tokens, with_system=False):
    cfg = validate_config(flagship_raw)
    graph = single_linear(*shape, spec)
    acc = Accelerator(cfg, Workload(graph, 1, tokens, 0, 16))
    (step,) = acc.run()
    (op,) = step.ops
    return (op, acc) if with_system else op


def _pipeline_ps(acc) -> int:
    """What double buffering cannot hide in a lone layer: its first tile's transfer from
    memory before any compute, and its last tile streamed out of its bank (read port,
    decoder, array: the slowest) plus the array's drain after the last transfer."""
    st = acc.program.state(0)[0]
    first, last = st.tiles[0], st.tiles[-1]
    memory = acc.memories[acc.placement[st.op.operand_tensor].memory]
    fmt, pe = st.op.weight_format, acc.pe_array
    stream = max(acc.weight_buffer.drain_ps(last.nbytes), acc.decoder.decode_ps(last.stored_weights),
                 cycles_to_ps(pe.tile_cycles(fmt, last), pe.clock_mhz))
    drain = cycles_to_ps(pe.fill_cycles(pe.pe_params(fmt)) + acc.decoder.cfg.latency_cycles, pe.clock_mhz)
    return memory.min_transfer_ps(first.nbytes) + memory.latency_ps + stream + drain


@pytest.mark.parametrize("shape", [(4096, 4096), (11008, 4096), (4096, 11008)])
@pytest.mark.parametrize("spec", ["int4-2:4", "int4", "fp16"])
@pytest.mark.parametrize("tokens", [1, 128])
def test_lone_layer_with_double_buffering_is_its_bound_plus_one_tile_of_pipeline(flagship_raw, shape, spec, tokens):
    if spec == "fp16":
        flagship_raw["placement"]["weights"] = ["hbm", "ddr"]
    op, acc = _run_lone(flagship_raw, shape, spec, tokens, with_system=True)
    simulated = op.end_ps - op.start_ps
    assert simulated >= op.bound_ps
    assert simulated <= op.bound_ps + _pipeline_ps(acc), (op.bound_by, simulated / op.bound_ps)


def test_single_buffering_exposes_memory_and_compute_in_series(flagship_raw):
    """With one slot there is no overlap: the model must get slower, not stay at the bound."""
    flagship_raw["accelerator"]["weight_buffer"].update(banks=2, bank_kib=1024, tile_kib=None)
    double = _run_lone(flagship_raw, (4096, 4096), "int4-2:4", 1)
    flagship_raw["accelerator"]["weight_buffer"]["banks"] = 1
    single = _run_lone(flagship_raw, (4096, 4096), "int4-2:4", 1)
    assert (single.end_ps - single.start_ps) > 1.2 * (double.end_ps - double.start_ps)


def test_every_op_of_a_small_model_run_respects_its_bound(flagship_raw, tiny_llama_graph):
    flagship_raw["workload"].update(prefill_tokens=16, decode_tokens=3, batch=2)
    cfg = validate_config(flagship_raw)
    acc = Accelerator(cfg, Workload(tiny_llama_graph, 2, 16, 3, 16), keep_ops="all")
    steps = acc.run()
    ops = [op for s in steps for op in s.ops]
    assert len(ops) == 4 * tiny_llama_graph.number_of_nodes()
    for op in ops:
        assert op.end_ps - op.start_ps >= op.bound_ps, op.name
    for s in steps:
        assert s.end_ps - s.start_ps >= max(s.demands_ps.values())


def test_capacity_overflow_names_the_placement_field_and_the_fix(flagship_raw):
    from tlmsim.engine.errors import CapacityError

    cfg = validate_config(flagship_raw)
    graph = single_linear(4096 * 64, 4096 * 8, "fp16")  # 17 GB of fp16 weights
    with pytest.raises(CapacityError, match=r"placement\.weights.*add 'ddr' to placement\.weights"):
        Accelerator(cfg, Workload(graph, 1, 1, 0, 16))


def test_every_byte_read_is_accounted_to_its_step_phase(flagship_raw):
    # The DMAs prefetch from time 0, before the controller opens the first step: those
    # reads must still count in the prefill (they once went to a phase of their own).
    cfg = validate_config(flagship_raw)
    graph = single_linear(4096, 4096, "int4-2:4")
    acc = Accelerator(cfg, Workload(graph, 1, 1, 0, 16))
    acc.run()
    hbm = acc.memories["hbm"].stats
    assert set(hbm.counts) == {"prefill"}
    assert hbm.counts["prefill"]["read_bytes"] == graph.nodes["layers.0.proj"]["weight_nbytes"]
    assert acc.weight_dma.stats.counts["prefill"]["bytes"] == graph.nodes["layers.0.proj"]["weight_nbytes"]
