"""Steady-state reuse is a protocol: state a component does not declare turns reuse off
(slower, never wrong), and the engine itself reads no SimPy or CPython internals."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import simpy

import tlmsim.models.accelerator as builder
from tlmsim.config import load_config
from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.protocol import UNKNOWN, Frame, RepeatUnit, Stateful, declaration_problems
from tlmsim.engine.reuse import Environment, ReuseEngine
from tlmsim.engine.trace import Tracer
from tlmsim.models.accelerator import Accelerator
from tlmsim.models.pe_array import PeArray
from tlmsim.models.vector_unit import VectorUnit
from tlmsim.simulate import build_workload, summarize

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
SHORT = ["workload.prefill_tokens=8", "workload.decode_tokens=2"]
OFF_FOR_THE_RUN = "steady-state reuse is off for this run (slower, never wrong)"


def _run(reuse: bool):
    """(result.json without the config and the reuse report, the accelerator) of a short flagship run."""
    cfg = load_config(FLAGSHIP, [*SHORT, f"simulation.reuse_identical_layers={str(reuse).lower()}"])
    acc = Accelerator(cfg, build_workload(cfg))
    result = summarize(cfg, acc, acc.run())
    del result["config"], result["reuse"]
    return json.dumps(result, sort_keys=True), acc


@pytest.fixture(scope="module")
def plain_without_reuse() -> str:
    """The short run simulated event by event, with the shipped components."""
    return _run(False)[0]


# ---------------------------------------------------------------- hidden state in a real run


class CountingPeArray(PeArray):
    """A PE array with state it does not declare: every 1000th tile stalls 1 us."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tiles_done = 0

    def _compute(self, *args):
        self.tiles_done += 1
        if self.tiles_done % 1000 == 0:
            yield self.env.timeout(1_000_000)
        yield from super()._compute(*args)


class SilentVectorUnit(VectorUnit):
    """A vector unit that does not say what its state is."""

    def boundary_state(self, frame):
        return UNKNOWN


def test_undeclared_state_turns_reuse_off_and_the_result_is_the_simulated_one(monkeypatch, caplog):
    monkeypatch.setattr(builder, "PeArray", CountingPeArray)
    with caplog.at_level(logging.WARNING, logger="tlmsim"):
        with_reuse, acc = _run(True)
    without, plain = _run(False)
    assert acc.reuse.disabled_reason == "pe_array has undeclared state 'tiles_done'"
    assert f"pe_array has undeclared state 'tiles_done': {OFF_FOR_THE_RUN}" in caplog.messages
    assert acc.reuse.layers_skipped == acc.reuse.tiles_skipped == 0
    assert with_reuse == without
    assert acc.pe_array.tiles_done == plain.pe_array.tiles_done > 1000  # the stalls happened


def test_the_hidden_stalls_change_the_result(monkeypatch, plain_without_reuse):
    # So the test above compares runs that reuse would have got wrong.
    monkeypatch.setattr(builder, "PeArray", CountingPeArray)
    assert _run(True)[0] != plain_without_reuse


def test_a_component_that_does_not_declare_its_boundary_state_turns_reuse_off(monkeypatch, caplog,
                                                                             plain_without_reuse):
    monkeypatch.setattr(builder, "VectorUnit", SilentVectorUnit)
    with caplog.at_level(logging.WARNING, logger="tlmsim"):
        with_reuse, acc = _run(True)
    assert acc.reuse.disabled_reason == "vector_unit does not declare its boundary state"
    assert f"vector_unit does not declare its boundary state: {OFF_FOR_THE_RUN}" in caplog.messages
    assert acc.reuse.layers_skipped == 0
    assert with_reuse == plain_without_reuse  # the unit behaves as the shipped one


def test_the_reuse_report_says_why_reuse_was_off():
    cfg = load_config(FLAGSHIP, [*SHORT, "simulation.reuse_identical_layers=false"])
    acc = Accelerator(cfg, build_workload(cfg))
    report = summarize(cfg, acc, acc.run())["reuse"]
    assert report == {"layers_skipped": 0, "tiles_skipped": 0,
                      "disabled_reason": "off in the config (simulation.reuse_identical_layers: false)"}


# ---------------------------------------------------------------- the completeness check


class Part(Stateful):
    """An owned part: its owner serializes it."""

    REUSE_STATE = ("level",)

    def __init__(self):
        self.level = 0


class Block(Stateful):
    name = "block"
    REUSE_STATE = ("busy", "part")
    WIRING = ("cfg",)
    CACHES = ("_memo",)

    def __init__(self):
        self.cfg, self.busy, self.part, self._memo = {"x": 1}, False, Part(), {}

    def boundary_state(self, frame):
        return (self.busy, self.part.level)


def test_declared_attributes_pass_the_check():
    block = Block()
    assert declaration_problems(block, "block", frozenset({id(block)})) == []


def test_the_check_names_each_undeclared_attribute_of_a_part_and_of_what_it_owns():
    block = Block()
    block.hidden, block.part.extra = 1, None
    assert declaration_problems(block, "block", frozenset({id(block)})) == [
        "block has undeclared state 'hidden'", "block.part has undeclared state 'extra'"]


def test_an_attribute_with_the_value_of_a_declared_one_is_still_found():
    block = Block()
    block.copy_of_busy = block.busy  # the same object: a check by value alone would miss it
    assert declaration_problems(block, "block") == ["block has undeclared state 'copy_of_busy'"]


def test_a_class_that_declares_state_without_serializing_it_is_refused():
    class Counting(Block):
        REUSE_STATE = ("count",)

        def __init__(self):
            super().__init__()
            self.count = 0

    counting = Counting()
    assert declaration_problems(counting, "block", frozenset({id(counting)})) == [
        "block declares reuse state in Counting, which does not define boundary_state"]


def test_the_engine_turns_reuse_off_for_an_attribute_that_appears_during_the_run(caplog):
    ctx = SimContext(Environment(), Tracer(), phase="test")
    ctx.register(Block())
    engine = ReuseEngine(ctx, True)
    assert engine.enabled
    ctx.components[0].late = 1
    with caplog.at_level(logging.WARNING, logger="tlmsim"):
        assert engine.mark(Frame(0, _Here())) is None
    assert engine.disabled_reason == "block has undeclared state 'late'"
    assert caplog.messages == [f"block has undeclared state 'late': {OFF_FOR_THE_RUN}"]


def test_the_engine_needs_an_environment_that_keeps_its_pending_events():
    ctx = SimContext(simpy.Environment(), Tracer(), phase="test")
    engine = ReuseEngine(ctx, True)
    assert not engine.enabled and "pending events" in engine.disabled_reason


# ---------------------------------------------------------------- the engine on a toy system


class _Here:
    """A frame position that keeps names and addresses as they are."""

    def name(self, label, step=None):
        return label

    def base(self, label):
        return 0

    def index(self, label, unit):
        return unit


class Ticker(Component):
    """Busy 4 ps of every 10 ps, forever."""

    REUSE_STATE = ("since",)

    def __init__(self, ctx):
        super().__init__(ctx, "ticker")
        self.since = 0
        self.process = self.start(self.run())

    def run(self):
        while True:
            self.since = self.env.now
            yield self.env.timeout(4)
            self.record("busy", self.since, self.env.now, "tick")
            yield self.env.timeout(6)

    def boundary_state(self, frame):
        return (frame.time(self.since),)


def test_a_skip_scales_the_statistics_and_puts_the_trace_back():
    ctx = SimContext(Environment(), Tracer(), phase="test")
    ticker = Ticker(ctx)
    engine = ReuseEngine(ctx, True)
    ctx.env.run(until=10)
    first = engine.mark(Frame(ctx.env.now, _Here()))
    ctx.env.run(until=20)
    second = engine.mark(Frame(ctx.env.now, _Here()))
    assert engine.repeats(first, second)
    skip = engine.skip(RepeatUnit("period", 0, 1, 3), first, second)
    assert skip is not None and skip.shift_ps == 30
    ctx.env.run(until=25)
    engine.finish()
    # simulated: ticks at 0, 10, 20; the skipped periods 20-50 put three ticks at 20, 30, 40,
    # and the tick simulated at 20 happened at 50
    assert ticker.stats.time_ps["test"]["busy"] == 4 * 6
    assert [(s.start_ps, s.end_ps) for s in ctx.tracer.slices] == [(0, 4), (10, 14), (20, 24), (30, 34),
                                                                   (40, 44), (50, 54)]
    assert engine.real_time(21) == 51 and engine.real_time(20) == 20


def test_the_table_of_pending_events_names_their_owners_in_processing_order():
    ctx = SimContext(Environment(), Tracer(), phase="test")
    env, seen = ctx.env, []
    Ticker(ctx)

    def probe():
        yield env.timeout(2)
        done = env.event()
        done.succeed()  # due now, after the ticker's timeout in the order of scheduling
        seen.append(env.pending(env.now))

    env.process(probe())
    env.run(until=3)
    # (due, priority, kind, owner): the probe's event, run()'s stop event at 3 (urgent), the ticker's
    assert seen == [((0, 1, "Event", None), (1, 0, "Event", None), (2, 1, "Timeout", "ticker"))]


# ---------------------------------------------------------------- no internals


# Attributes of SimPy events, environments and processes, and of CPython generators and frames.
INTERNALS = re.compile(r"\.(_queue|_eid|_now|_active_proc|_value|_ok|_defused|_generator|_target|_resume)\b"
                       r"|gi_frame|gi_yieldfrom|gi_code|f_lasti|f_locals|_getframe")


def test_the_package_reads_no_simpy_or_cpython_internals():
    # `grep "_queue\|_generator\|gi_frame\|gi_yieldfrom\|f_lasti\|_value"` finds only names
    # such as q_values or encode_value; none of them reads an internal attribute.
    sources = sorted((ROOT / "tlmsim").rglob("*.py"))
    assert sources
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in sources
            for n, line in enumerate(path.read_text().splitlines(), 1) if INTERNALS.search(line)]
    assert hits == []
