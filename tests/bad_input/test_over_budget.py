"""A design that does not fit its board: one line naming the resource, need and budget (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlmsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
# One linear op would do, but the CLI runs the config's model: keep it to one prompt token and one step.
TINY_RUN = ["--set", "workload.prefill_tokens=1", "--set", "workload.decode_tokens=1",
            "--set", "trace.prefill=false", "--set", "trace.decode_steps=0"]


@pytest.mark.parametrize("override,fragment", [
    # 4 x 128 packed: 256 PEs x 36 DSPs = 9,216 for the array alone, budget 80 % of 9,024 = 7,219
    ("accelerator.pe_array.cols=128", "design needs 9,350 DSP but the Alveo U280 budget is 7,219 (80% of 9,024"),
    ("accelerator.clock_mhz=1000", "accelerator.clock_mhz=1000 exceeds the Alveo U280 fabric clock ceiling of 300 MHz"),
    ("memory.hbm.capacity_gib=16", "memory.hbm.capacity_gib=16 exceeds the Alveo U280's 8 GiB"),
    ("board.usable.uram=0.5", "design needs 740 URAM but the Alveo U280 budget is 480"),
], ids=["oversized PE array", "over-fast clock", "more HBM than the board", "tighter URAM headroom"])
def test_an_over_budget_design_is_one_line_before_simulating(user_error, override, fragment):
    args = ["run", FLAGSHIP, "--set", override, "--out", "out"]
    if override.startswith("board."):
        args[2:4] = ["--set", "board={preset: u280, usable: {uram: 0.5}}"]
    message = user_error(args, fragment)
    assert "--allow-over-budget" in message


def test_the_same_design_with_allow_over_budget_runs_and_is_marked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(FLAGSHIP), "--set", "accelerator.pe_array.cols=128", "--set", "accelerator.clock_mhz=1000",
                 "--allow-over-budget", "--out", "out", "-q", *TINY_RUN])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["cost"]["what_if"] and result["summary"]["what_if"]
    assert [line.split(" ")[0] for line in result["cost"]["over_budget"]] == ["design", "accelerator.clock_mhz=1000"]
    assert "WHAT-IF (over budget" in printed
