"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

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


def _demo_commands() -> list[list[str]]:
    """The README's compressed-model demo, as argument lists for ``tlmsim``."""
    import shlex

    block = next(b for b in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
                 if "tiny-model" in b)
    text = block.replace("\\\n", " ")
    return [shlex.split(part.strip())[1:] for part in text.split("&&")]


def test_the_readme_demo_leaves_the_flagship_results_untouched(tmp_path, monkeypatch):
    from tlmsim.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    fast = ["--set", "workload.prefill_tokens=4", "--set", "workload.decode_tokens=1"]
    assert main(["-q", "run", "configs/u280_llama7b.yaml", *fast]) == 0
    flagship = tmp_path / "results" / "u280_llama7b"
    before = {p.name: p.read_bytes() for p in flagship.iterdir()}
    commands = _demo_commands()
    assert [c[0] for c in commands] == ["tiny-model", "compress", "run"]
    for args in commands:
        args = [a.replace("/tmp/", f"{tmp_path}/") for a in args]
        assert main(["-q", *args]) == 0, args
    assert {p.name: p.read_bytes() for p in flagship.iterdir()} == before
    assert (tmp_path / "results" / "u280_llama7b-tiny-2of4" / "result.json").is_file()
