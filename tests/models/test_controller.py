"""Program (steps, tiles, descriptor chains, fit checks) and Controller (in-order dispatch).

The tiling expectations are worked by hand for one int4-2:4 layer W[512, 256] (group
size 128), whose packed rows are 98 bytes each: 256 x 4 bit / 2 kept = 64 B of values,
64 groups x 2 indices x 2 bit = 32 B of indices, one fp16 scale per 128 kept weights = 2 B.
The controller is driven with stand-in execution units that take fixed times, so every
dispatch and completion time is known exactly.
"""

import networkx as nx
import pytest
import simpy

from tlmsim.config import validate_config
from tlmsim.engine.errors import ConfigError
from tlmsim.engine.payload import Command, Completion, Transaction
from tlmsim.engine.ports import InitiatorPort, QueueTarget, TargetPort, connect
from tlmsim.models.controller import Controller
from tlmsim.models.pe_array import PeCommand
from tlmsim.models.placement import Placement
from tlmsim.models.program import Program
from tlmsim.models.vector_unit import VectorCommand
from tlmsim.workloads.formats import parse_format
from tlmsim.workloads.phases import Workload
from tlmsim.workloads.symbols import Sym
from tlmsim.workloads.synthetic import single_linear

NAME = "layers.0.proj"
ROW_BYTES = 98  # one packed row of W[512, 256] in int4-2:4 (see the module docstring)
NS = 1000  # ps


def _cfg(raw, bank_kib=19.2, activation_kib=2, **pe):
    """A small accelerator: 4 x 16 PEs of 4 lanes (one beat = 4 lanes x 4 inputs = 16 inputs),
    a 19.2 KiB weight bank (19660 B) and a 2 KiB activation buffer."""
    acc = raw["accelerator"]
    acc["pe_array"].update(rows=4, cols=16, lanes=4, **pe)
    acc["weight_buffer"].update(bank_kib=bank_kib, tile_kib=None)  # one tile per bank
    acc["activation_buffer"]["capacity_kib"] = activation_kib
    return validate_config(raw)


def _program(cfg, graph, prefill=1, decode=0, batch=1, env=None):
    env = env or simpy.Environment()
    workload = Workload(graph, batch, prefill, decode, 16)
    placement = Placement(cfg)
    nodes = workload.node_order
    kind = {n: graph.nodes[n]["kind"] for n in nodes}
    placement.place("kv_cache", {n: workload.kv_cache_bytes(n, prefill + decode)
                                 for n in nodes if kind[n] == "kv_append"})
    placement.place("weights", {"pad": 1000})  # so the layer does not start at address 0
    placement.place("weights", {n: graph.nodes[n]["weight_nbytes"] for n in nodes if kind[n] == "linear"})
    return Program(env, cfg, workload, placement)


def _layer_ops(program, step=0):
    return program.workload.ops(program.steps[step])


def _shape(tiles):
    return [(t.rows, t.k, t.n, t.nbytes, t.offset, t.stored_weights) for t in tiles]


# ---------------------------------------------------------------- steps and layers


def test_steps_are_the_prefill_then_one_decode_step_per_token_with_growing_kv(flagship_raw):
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=5, decode=3, batch=2)
    assert [(s.index, s.phase, s.tokens, s.kv, s.batch) for s in program.steps] == [
        (0, "prefill", 5, 5, 2), (1, "decode", 1, 6, 2), (2, "decode", 1, 7, 2), (3, "decode", 1, 8, 2)]


def test_prefill_only_run_has_one_step(flagship_raw):
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=3, decode=0)
    assert [(s.phase, s.tokens, s.kv) for s in program.steps] == [("prefill", 3, 3)]


def test_layer_start_and_ops_per_layer_of_a_llama(flagship_raw, tiny_llama_graph):
    program = _program(validate_config(flagship_raw), tiny_llama_graph, prefill=4, decode=1)
    ops = _layer_ops(program)
    # embedding, the position elementwise op and the rotary table come first; each LLaMA
    # layer is 20 ops: 2 norms, 7 linears, 2 KV appends, 2 attention matmuls, softmax,
    # rope (elementwise), score scaling (elementwise_1), 2 residual adds, SiLU and the gate product.
    assert program.layer_start == {0: 3, 1: 23}
    assert program.ops_per_layer == 20
    assert ops[3].name == "model.layers.0.input_layernorm" and ops[23].name == "model.layers.1.input_layernorm"
    assert sum(op.kind == "linear" for op in ops[3:23]) == 7


def _layers_graph(linears_per_layer):
    """Layers of chained linears W[64, 64] int4-2:4; layer L has linears_per_layer[L] of them."""
    fmt = parse_format("int4-2:4")
    graph = nx.DiGraph(model_type="synthetic", num_layers=len(linears_per_layer))
    order, previous = 0, None
    for layer, count in enumerate(linears_per_layer):
        for i in range(count):
            name = f"layers.{layer}.proj{i}"
            graph.add_node(name, order=order, kind="linear", module=name, layer=layer, in_features=64,
                           out_features=64, rows=Sym(1, t_pow=1), weight_format=fmt.name,
                           weight_nbytes=fmt.packed_nbytes(64, 64))
            if previous is not None:
                graph.add_edge(previous, name)
            order, previous = order + 1, name
    return graph


def test_layers_of_different_sizes_have_no_ops_per_layer(flagship_raw):
    program = _program(_cfg(flagship_raw), _layers_graph([2, 1, 2]))
    assert program.layer_start == {0: 0, 1: 2, 2: 3}
    assert program.ops_per_layer is None
    same = _program(_cfg(flagship_raw), _layers_graph([2, 2, 2]))
    assert (same.layer_start, same.ops_per_layer) == ({0: 0, 1: 2, 2: 4}, 2)


# ---------------------------------------------------------------- tiles of a linear layer


def test_decode_weights_stream_in_balanced_bank_sized_row_blocks(flagship_raw):
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=1)
    (op,) = _layer_ops(program)
    # 19660 B bank / 98 B per row = 200 rows -> 192 (a multiple of the 16 columns); 512 rows
    # need 3 blocks, balanced to ceil(512 / 3) = 171 -> 176 rows: 176, 176, 160.
    # Kept weights: 176 rows x 64 groups x 2 = 22528.
    assert _shape(program.tiles(op)) == [
        (1, 256, 176, 176 * ROW_BYTES, 0, 22_528),
        (1, 256, 176, 176 * ROW_BYTES, 176 * ROW_BYTES, 22_528),
        (1, 256, 160, 160 * ROW_BYTES, 352 * ROW_BYTES, 20_480)]
    assert sum(t.nbytes for t in program.tiles(op)) == 512 * ROW_BYTES  # every stored byte, once


def test_tokens_come_in_chunks_that_fit_the_activation_buffer(flagship_raw):
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=5)
    (op,) = _layer_ops(program)
    # one token needs (256 inputs + 512 outputs) x 1 byte = 768 B: 2048 B hold 2 tokens;
    # 5 tokens are chunks of 2, 2, 1 and each chunk streams all the weights again.
    tiles = program.tiles(op)
    assert [t.rows for t in tiles] == [2, 2, 2, 2, 2, 2, 1, 1, 1]
    assert [t.offset for t in tiles] == [0, 17_248, 34_496] * 3
    assert [t.n for t in tiles] == [176, 176, 160] * 3


def test_batch_rows_are_chunked_like_tokens(flagship_raw):
    program = _program(_cfg(flagship_raw, activation_kib=8), single_linear(512, 256, "int4-2:4"),
                       prefill=1, decode=1, batch=12)
    (op,) = _layer_ops(program, step=1)
    # 12 rows (1 token x batch 12); 8192 B / 768 B = 10 rows per chunk: 10 then 2
    assert [t.rows for t in program.tiles(op)] == [10, 10, 10, 2, 2, 2]


def test_rows_too_long_for_a_bank_are_sliced_along_k(flagship_raw):
    program = _program(_cfg(flagship_raw, bank_kib=1), single_linear(512, 256, "int4-2:4"), prefill=1)
    (op,) = _layer_ops(program)
    tiles = program.tiles(op)
    # 1024 B hold only 10 rows (< 16 columns): 16 rows are split along k. 16 rows x k inputs
    # take 16 x 98 / 256 = 6.125 B per input: 1024 B hold 167 -> 164 (a multiple of M = 4);
    # 256 inputs balance into 2 slices of 128. 32 row groups x 2 slices; each slice is
    # 16 x 128 of the 512 x 256 weights = 1/64 of 50176 B = 784 B, with 16 x 32 x 2 kept weights.
    assert len(tiles) == 64
    assert {(t.rows, t.k, t.n, t.nbytes, t.stored_weights) for t in tiles} == {(1, 128, 16, 784, 1024)}
    assert [t.offset for t in tiles] == [784 * i for i in range(64)]
    assert all(t.nbytes <= 1024 for t in tiles)


def test_a_bank_that_fits_a_whole_matrix_holds_it_in_one_tile(flagship_raw):
    program = _program(validate_config(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=1)
    (op,) = _layer_ops(program)
    # flagship: 1 MiB banks, 128 columns; 50176 B fit one bank
    assert _shape(program.tiles(op)) == [(1, 256, 512, 50_176, 0, 512 * 128)]


# ---------------------------------------------------------------- fit checks


def test_check_fits_accepts_a_program_that_fits(flagship_raw):
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=5, decode=2)
    program.check_fits()


def test_check_fits_refuses_a_weight_bank_smaller_than_one_beat_of_pe_columns(flagship_raw):
    # 0.09 KiB = 92 B; the smallest tile is 16 columns x 16 inputs (one beat) = 98 B
    program = _program(_cfg(flagship_raw, bank_kib=0.09), single_linear(512, 256, "int4-2:4"))
    with pytest.raises(ConfigError, match=r"^accelerator\.weight_buffer\.bank_kib is too small for one tile of "
                                          r"layers\.0\.proj \(16 rows x 16 inputs need 0\.1 KiB\); increase it$"):
        program.check_fits()


def test_check_fits_refuses_an_activation_buffer_smaller_than_one_token(flagship_raw):
    program = _program(_cfg(flagship_raw, activation_kib=0.5), single_linear(512, 256, "int4-2:4"))
    # one token: 256 + 512 bytes = 0.75 KiB > 0.5 KiB
    with pytest.raises(ConfigError, match=r"^accelerator\.activation_buffer\.capacity_kib is too small for one "
                                          r"token of layers\.0\.proj \(needs 0\.8 KiB\); increase it$"):
        program.check_fits()


def test_check_fits_refuses_a_stored_sparsity_the_pe_array_was_not_built_for(flagship_raw):
    # the config says int4-2:4 (valid for the 2:4 array) but the model holds 1:4 weights
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-1:4"))
    with pytest.raises(ConfigError, match=r"layers\.0\.proj \(stored in workload\.model\) is 1:4 sparse but the "
                                          r"PE array is built for 2:4; set accelerator\.pe_array\.n/m to 1/4"):
        program.check_fits()


def test_check_fits_refuses_ternary_weights_on_an_array_without_the_ternary_mode(flagship_raw):
    program = _program(_cfg(flagship_raw, ternary=False), single_linear(512, 256, "ternary-2:4"))
    with pytest.raises(ConfigError, match=r"is ternary but accelerator\.pe_array\.ternary is false"):
        program.check_fits()


def test_an_accelerator_with_a_too_small_bank_fails_before_simulating(flagship_raw):
    from tlmsim.models.accelerator import Accelerator

    cfg = _cfg(flagship_raw, bank_kib=0.09)
    with pytest.raises(ConfigError, match="weight_buffer.bank_kib is too small"):
        Accelerator(cfg, Workload(single_linear(512, 256, "int4-2:4"), 1, 1, 0, 16))


# ---------------------------------------------------------------- descriptor chains


def test_weight_descriptors_walk_every_step_chunk_by_chunk_and_tile_by_tile(flagship_raw):
    program = _program(_cfg(flagship_raw), single_linear(512, 256, "int4-2:4"), prefill=5, decode=2)
    base = program.placement[NAME]
    assert base.addr > 0  # behind the padding tensor
    blocks = [(0, 17_248), (17_248, 17_248), (34_496, 15_680)]  # (offset, bytes) of the 3 row blocks
    # prefill: 3 token chunks x 3 blocks; each decode step: 3 blocks
    expected = [(base.memory, base.addr + off, nbytes, NAME, chunk * 3 + b)
                for chunk in range(3) for b, (off, nbytes) in enumerate(blocks)]
    expected += [(base.memory, base.addr + off, nbytes, NAME, b)
                 for _ in range(2) for b, (off, nbytes) in enumerate(blocks)]
    descs = list(program.weight_descriptors())
    assert [(d.memory, d.addr, d.nbytes, d.label, d.tile) for d in descs] == expected
    assert all(d.wait_for is None for d in descs)  # weights do not wait for anything
    assert list(program.kv_descriptors()) == []


def test_weight_descriptors_follow_graph_order_and_skip_attention(flagship_raw, tiny_llama_graph):
    program = _program(validate_config(flagship_raw), tiny_llama_graph, prefill=4, decode=1)
    per_layer = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    linears = [f"model.layers.{layer}.{name}" for layer in (0, 1) for name in per_layer] + ["lm_head"]
    descs = list(program.weight_descriptors())
    # every matrix fits a 1 MiB bank and 4 tokens the 8 MiB activation buffer: one tile each, per step
    assert [d.label for d in descs] == linears * 2
    for d in descs:
        region = program.placement[d.label]
        nbytes = tiny_llama_graph.nodes[d.label]["weight_nbytes"]
        assert (d.memory, d.addr, d.nbytes) == (region.memory, region.addr, nbytes)


def test_kv_descriptors_read_the_whole_cache_after_its_append(flagship_raw, tiny_llama_graph):
    program = _program(validate_config(flagship_raw), tiny_llama_graph, prefill=4, decode=2)
    attention = [(f"model.layers.{layer}.self_attn.{mm}", f"model.layers.{layer}.self_attn.{kv}")
                 for layer in (0, 1) for mm, kv in (("matmul", "kv_append"), ("matmul_1", "kv_append_1"))]
    descs = list(program.kv_descriptors())
    assert len(descs) == 3 * 4  # 3 steps x 4 attention matmuls, one tile each
    for i, d in enumerate(descs):
        step, (matmul, source) = program.steps[i // 4], attention[i % 4]
        states = {st.op.name: st for st in program.state(step.index)}
        region = program.placement[source]
        # K or V of 2 KV heads x 16 dims x kv entries x 2 bytes, read from the cache's start
        assert (d.label, d.memory, d.addr, d.nbytes, d.tile) == (matmul, region.memory, region.addr, 64 * step.kv, 0)
        assert d.wait_for is states[source].done  # the DMA waits for this step's KV append


# ---------------------------------------------------------------- controller


def _vec(graph, name, order, deps=()):
    graph.add_node(name, order=order, kind="vector", module=name, layer=None, vector_op="rmsnorm",
                   elements=Sym(8, t_pow=1))
    for dep in deps:
        graph.add_edge(dep, name)


def _diamond():
    """a -> lin -> b -> d and a -> c -> d: c is ready long before b, but comes after it."""
    fmt = parse_format("int4-2:4")
    graph = nx.DiGraph(model_type="synthetic", num_layers=0)
    _vec(graph, "a", 0)
    graph.add_node("lin", order=1, kind="linear", module="lin", layer=None, in_features=256, out_features=512,
                   rows=Sym(1, t_pow=1), weight_format=fmt.name, weight_nbytes=fmt.packed_nbytes(512, 256))
    graph.add_edge("a", "lin")
    _vec(graph, "b", 2, ["lin"])
    _vec(graph, "c", 3, ["a"])
    _vec(graph, "d", 4, ["b", "c"])
    return graph


class _Unit:
    """A stand-in execution unit: one command at a time, each ``duration_ps`` long."""

    def __init__(self, env, payload_type, duration_ps, log):
        self.commands = QueueTarget(env, "unit", payload_type)
        self.done_port = InitiatorPort("unit", Completion)
        env.process(self.run(env, duration_ps, log))

    def run(self, env, duration_ps, log):
        while True:
            cmd = yield self.commands.get()
            log.append((cmd.label, env.now))
            yield env.timeout(duration_ps)
            self.done_port.request(Completion(cmd.work, cmd.label, env.now))


def _controller(ctx, program, memories=(), pe_ps=100 * NS, vector_ps=10 * NS):
    started = []
    pe_unit = _Unit(ctx.env, PeCommand, pe_ps, started)
    vector_unit = _Unit(ctx.env, VectorCommand, vector_ps, started)
    records = []

    def step_done(step, start, end, states):
        records.append((step.index, start, end, [(st.op.name, st.first_issue_ps, st.done_ps) for st in states]))

    controller = Controller(ctx, "controller", program, list(memories), on_step_done=step_done)
    connect(controller.pe_port, pe_unit.commands)
    connect(controller.vector_port, vector_unit.commands)
    for unit in (pe_unit, vector_unit):
        connect(unit.done_port, controller.completions)
    return controller, records, started


def _program_in(ctx, cfg, graph, prefill, decode):
    return _program(cfg, graph, prefill, decode, env=ctx.env)


def test_ops_are_dispatched_in_order_once_their_dependencies_are_done(flagship_raw, ctx):
    program = _program_in(ctx, _cfg(flagship_raw), _diamond(), prefill=2, decode=1)
    controller, records, started = _controller(ctx, program)
    ctx.env.run(until=controller.process)
    # a: 0-10 ns on the vector unit; lin waits for a, runs 10-110 ns on the PEs; b waits for
    # lin. c only needs a, but the controller issues in order: c goes right after b at 110 ns
    # and runs after it on the vector unit (120-130 ns); d waits for both.
    step0 = [("a", 0, 10 * NS), ("lin", 10 * NS, 110 * NS), ("b", 110 * NS, 120 * NS),
             ("c", 110 * NS, 130 * NS), ("d", 130 * NS, 140 * NS)]
    step1 = [(name, issue + 140 * NS, done + 140 * NS) for name, issue, done in step0]
    assert records == [(0, 0, 140 * NS, step0), (1, 140 * NS, 280 * NS, step1)]
    assert started[:5] == [("a", 0), ("lin", 10 * NS), ("b", 110 * NS), ("c", 120 * NS), ("d", 130 * NS)]


def test_each_op_is_done_after_every_op_it_depends_on(flagship_raw, ctx):
    program = _program_in(ctx, _cfg(flagship_raw), _diamond(), prefill=2, decode=0)
    controller, records, _ = _controller(ctx, program)
    ctx.env.run(until=controller.process)
    ((_, _, _, states),) = records
    done = {name: end for name, _, end in states}
    issue = {name: start for name, start, _ in states}
    for child, parents in {"lin": ["a"], "b": ["lin"], "c": ["a"], "d": ["b", "c"]}.items():
        for parent in parents:
            assert issue[child] >= done[parent] and done[child] > done[parent], (child, parent)


def test_controller_accounts_its_waits_for_dependencies_per_phase(flagship_raw, ctx):
    program = _program_in(ctx, _cfg(flagship_raw), _diamond(), prefill=2, decode=1)
    controller, _, _ = _controller(ctx, program)
    ctx.env.run(until=controller.process)
    # lin waits 10 ns for a, b 100 ns for lin, d 20 ns for b and c; c does not wait
    for phase in ("prefill", "decode"):
        assert controller.stats.time_ps[phase]["stall:waiting for dependency"] == 130 * NS


def _embed_then_append():
    graph = nx.DiGraph(model_type="synthetic", num_layers=0)
    graph.add_node("emb", order=0, kind="embedding", module="emb", layer=None, rows=Sym(1, t_pow=1),
                   embedding_dim=8, num_embeddings=16)
    # a KV cache of 4 values per entry
    graph.add_node("kv", order=1, kind="kv_append", module="kv", layer=None, elements=Sym(4, kv_pow=1),
                   new_elements=Sym(4, t_pow=1))
    graph.add_edge("emb", "kv")
    return graph


def test_embedding_gathers_and_kv_appends_are_memory_transactions_at_the_growing_end(flagship_raw, ctx):
    cfg = _cfg(flagship_raw)
    program = _program_in(ctx, cfg, _embed_then_append(), prefill=4, decode=2)
    program.placement.place("embeddings", {"emb": 16 * 8 * 2})
    txns = []

    def serve(txn: Transaction):
        txns.append((txn.command, txn.addr, txn.nbytes, txn.label, txn.stream, ctx.env.now))
        yield ctx.env.timeout(50 * NS)
        return ctx.env.now

    controller, records, _ = _controller(ctx, program, memories=["hbm"])
    connect(controller.ports["hbm"], TargetPort("hbm", Transaction, serve))
    ctx.env.run(until=controller.process)
    emb, kv = program.placement["emb"].addr, program.placement["kv"].addr
    # prefill: 4 tokens x 8 dims x 2 B gathered, 4 entries x 4 values x 2 B appended at the start;
    # decode: 1 token each, appended after the kv - 1 entries already there (8 B per entry)
    R, W = Command.READ, Command.WRITE
    assert txns == [(R, emb, 64, "emb", "controller", 0), (W, kv, 32, "kv", "controller", 50 * NS),
                    (R, emb, 16, "emb", "controller", 100 * NS), (W, kv + 32, 8, "kv", "controller", 150 * NS),
                    (R, emb, 16, "emb", "controller", 200 * NS), (W, kv + 40, 8, "kv", "controller", 250 * NS)]
    assert [(i, s, e) for i, s, e, _ in records] == [(0, 0, 100 * NS), (1, 100 * NS, 200 * NS), (2, 200 * NS, 300 * NS)]


def test_step_records_of_a_llama_run_tile_time_and_respect_dependencies(flagship_raw, tiny_llama_graph):
    from tlmsim.models.accelerator import Accelerator

    flagship_raw["workload"].update(prefill_tokens=4, decode_tokens=2)
    flagship_raw["simulation"] = {"reuse_identical_layers": False}
    acc = Accelerator(validate_config(flagship_raw), Workload(tiny_llama_graph, 1, 4, 2, 16), keep_ops="all")
    steps = acc.run()
    assert [(s.step.phase, s.step.tokens, s.step.kv) for s in steps] == [
        ("prefill", 4, 4), ("decode", 1, 5), ("decode", 1, 6)]
    assert steps[0].start_ps == 0
    for before, after in zip(steps, steps[1:]):
        assert after.start_ps == before.end_ps  # the next step opens when the last op is done
    program_ops = acc.workload.ops(acc.program.steps[0])  # names and dependencies are the same every step
    assert len(program_ops) == tiny_llama_graph.number_of_nodes()
    for s in steps:
        assert s.end_ps == max(op.end_ps for op in s.ops) and s.end_ps > s.start_ps
        issued = []
        for rec, op in zip(s.ops, program_ops, strict=True):
            assert rec.name == op.name
            for d in op.deps:
                assert rec.end_ps > s.ops[d].end_ps, (rec.name, s.ops[d].name)
            if rec.kind in ("vector", "embedding", "kv_append"):  # only dispatch issues these
                assert rec.start_ps >= max((s.ops[d].end_ps for d in op.deps), default=s.start_ps)
                issued.append(rec.start_ps)
            if rec.kind == "attn_matmul":  # read by the KV DMA once its cache is appended
                source = next(d for d in op.deps if s.ops[d].kind == "kv_append")
                assert rec.start_ps >= s.ops[source].end_ps
        assert issued == sorted(issued)  # in-order issue
