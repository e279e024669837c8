"""The README's commands are the ones CI runs."""

from pathlib import Path

import re

ROOT = Path(__file__).resolve().parents[1]


def _code_lines():
    text = (ROOT / "README.md").read_text()
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = next(line for line in _code_lines() if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci]


def test_readme_runs_the_flagship():
    assert any("tlmsim run configs/u280_llama7b.yaml" in line for line in _code_lines())
