"""Exact reuse is a protocol: state a component does not declare turns reuse off for the
run (slower, never wrong), and no SimPy or CPython internals are read anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tlmsim.models.accelerator as accelerator_module
from tlmsim.config import load_config
from tlmsim.engine.component import Component
from tlmsim.engine.reuse import UNKNOWN, declaration_problems
from tlmsim.models.accelerator import Accelerator
from tlmsim.models.pe_array import PeArray
from tlmsim.simulate import build_workload, summarize

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
SHORT = ["workload.prefill_tokens=8", "workload.decode_tokens=2"]
STALL_EVERY = 1000  # tiles
STALL_PS = 40_000


class CountingPeArray(PeArray):
    """A PE array with a stall every 1000 tiles, counted in an attribute nobody declared."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tiles_seen = 0

    def _tile_ps(self, fmt, tile, decoded):
        self.tiles_seen += 1
        compute, decode = super()._tile_ps(fmt, tile, decoded)
        return compute + (STALL_PS if self.tiles_seen % STALL_EVERY == 0 else 0), decode


class SecretivePeArray(PeArray):
    """A PE array that declares it cannot say what its state is."""

    def boundary_state(self, frame):
        return UNKNOWN


def _run(monkeypatch, pe_class, reuse: bool) -> tuple[dict, object]:
    monkeypatch.setattr(accelerator_module, "PeArray", pe_class)
    cfg = load_config(FLAGSHIP, [*SHORT, f"simulation.reuse_identical_layers={str(reuse).lower()}"])
    acc = Accelerator(cfg, build_workload(cfg))
    result = summarize(cfg, acc, acc.run())
    return result, acc


def _numbers(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k not in ("config", "reuse")}, sort_keys=True)


@pytest.mark.parametrize("pe_class,reason", [(CountingPeArray, "tiles_seen"), (SecretivePeArray, "UNKNOWN")],
                         ids=["undeclared attribute", "unknown boundary state"])
def test_undeclared_state_turns_reuse_off_and_the_result_equals_reuse_off(monkeypatch, caplog, pe_class, reason):
    with_reuse, acc = _run(monkeypatch, pe_class, True)
    assert acc.reuse.layers_skipped == 0 and acc.reuse.tiles_skipped == 0
    assert "pe_array" in with_reuse["reuse"]["disabled_reason"]
    assert reason in with_reuse["reuse"]["disabled_reason"] or reason == "UNKNOWN"
    assert any("reuse" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    without, _ = _run(monkeypatch, pe_class, False)
    assert _numbers(with_reuse) == _numbers(without)


def test_the_hidden_stall_really_changes_the_result(monkeypatch):
    """Otherwise the test above could not tell a wrong skip from a right one."""
    plain, acc = _run(monkeypatch, PeArray, True)
    counting, _ = _run(monkeypatch, CountingPeArray, False)
    assert acc.reuse.layers_skipped > 0 and plain["reuse"]["disabled_reason"] is None
    assert counting["steps"][-1]["end_ps"] > plain["steps"][-1]["end_ps"]  # the PE-bound prefill is longer


def test_the_declaration_check_names_the_attribute(ctx):
    class Widget(Component):
        REUSE_STATE = ("level",)
        WIRING = ()

        def __init__(self, ctx, name):
            super().__init__(ctx, name)
            self.level = 0

    widget = Widget(ctx, "widget")
    assert declaration_problems(widget, "widget") == []
    widget.surprise = 1
    problems = declaration_problems(widget, "widget")
    assert len(problems) == 1 and "surprise" in problems[0] and "widget" in problems[0]


INTERNALS = re.compile(r"\._queue\b|\._generator\b|\bgi_frame\b|\bgi_yieldfrom\b|\bf_lasti\b|\._value\b")


def test_no_simpy_or_cpython_internals_are_read():
    found = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "tlmsim").rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if INTERNALS.search(line)]
    assert found == []
