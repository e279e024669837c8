"""tlmsim validate: every design's simulated figures stay where docs/validation_runs recorded them."""

import csv
from pathlib import Path

import pytest

from tlmsim.cli import main
from tlmsim.validate import DESIGNS, load_designs, summary, validation_rows

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs" / "validation_runs" / "validation.csv"
BAND = 0.02  # a regression band around the recorded simulation, not the published numbers


def _recorded(design: str) -> list[dict]:
    with RECORDED.open() as fh:
        return [r for r in csv.DictReader(fh) if r["design"] == design]


@pytest.mark.parametrize("design", [d.name for d in load_designs().designs])
def test_design_simulates_as_recorded(design):
    rows, recorded = validation_rows(DESIGNS, only=design), _recorded(design)
    assert [(r["metric"], r["published"]) for r in rows] == [(r["metric"], float(r["published"])) for r in recorded]
    for row, old in zip(rows, recorded):
        assert row["simulated"] == pytest.approx(float(old["simulated"]), rel=BAND), (design, row["metric"])
        assert row["bound_by"] == old["bound_by"]


def test_every_point_cites_its_source_and_every_config_marks_its_assumptions():
    for design in load_designs().designs:
        assert all(len(p.source) > 20 for p in design.points)
        text = (DESIGNS.parent / design.config).read_text()
        assert "[assumed]" in text and ("[paper]" in text or "[repo]" in text), design.config


def test_error_is_signed_relative_to_the_published_value_and_summarised():
    rows = [{"error_pct": e} for e in (+10.0, -30.0, 5.0, -1.0)]
    assert summary(rows) == {"points": 4, "median_abs_error_pct": 7.5, "max_abs_error_pct": 30.0}


def test_validate_writes_the_table_and_refuses_a_broken_designs_file(tmp_path, capsys):
    bad = tmp_path / "designs.yaml"
    bad.write_text("designs:\n  - name: x\n    title: t\n    config: c.yaml\n    points: []\n")
    assert main(["validate", "--designs", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "designs.0.points" in err[0]
    assert not (tmp_path / "o").exists()
    assert main(["validate", "--only", "li_kv260", "--out", str(tmp_path / "v"), "-q"]) == 0
    table = (tmp_path / "v" / "validation.md").read_text()
    assert table.startswith("| design | metric |") and "li_kv260" in table and "median absolute error" in table
