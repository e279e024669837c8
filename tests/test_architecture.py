"""The layout is enforced: import contracts, lint, module size, and a torch-free run path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tlmsim"
BIN = Path(sys.executable).parent
MAX_MODULE_LINES = 400


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the tlmsim found first is the one under root
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "BROKEN" not in proc.stdout and proc.stdout.count("KEPT") >= 5


@pytest.mark.parametrize("module,line,contract", [
    ("engine/bad_import.py", "import tlmsim.cli\n", "never import the application"),
    ("workloads/bad_import.py", "import simpy\n", "Workloads know nothing of SimPy"),
    ("models/bad_import.py", "import tlmsim.config\n", "never import the application"),
    ("engine/bad_layer.py", "from tlmsim.models import buffer\n", "Layers"),
], ids=["engine imports the CLI", "workloads import SimPy", "a component imports the app config",
        "the engine imports a component"])
def test_a_wrong_import_breaks_the_contracts(tmp_path, module, line, contract):
    shutil.copytree(PACKAGE, tmp_path / "tlmsim", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "tlmsim" / module).write_text(f'"""A deliberate mistake."""\n\n{line}')
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    broken = proc.stdout.split("Broken contracts")[-1]
    assert contract in broken and "bad_" in broken, proc.stdout[-2000:]


def test_ruff_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "--output-format", "concise", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_no_module_is_longer_than_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_a_run_with_a_cached_graph_imports_neither_torch_nor_transformers(tmp_path):
    env = {**os.environ, "TLMSIM_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-X", "importtime", "-m", "tlmsim.cli", "run", str(ROOT / "configs" / "u280_llama7b.yaml"),
           "-q", "--set", "workload.prefill_tokens=4", "--set", "workload.decode_tokens=1"]
    cold = subprocess.run([*run, "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True, timeout=600)
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert " torch" in cold.stderr  # the first run traces the model: the check below can fail
    warm = subprocess.run([*run, "--out", str(tmp_path / "b")], env=env, capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in warm.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers")}


def _package_lines_matching(pattern: str) -> dict[str, list[int]]:
    import re

    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, line)]
        if hits:
            found[str(path.relative_to(PACKAGE))] = hits
    return found


def test_no_simpy_or_cpython_internals_are_read():
    assert _package_lines_matching(r"\._queue\b|\._generator\b|gi_frame|gi_yieldfrom|f_lasti|\._value\b") == {}


def test_components_meet_only_through_ports_and_share_one_ceil_div():
    """Every queue between components is a port (engine/ports.py owns the SimPy stores), op
    kinds are the OpKind enum, and integer ceilings come from engine/units.py."""
    assert set(_package_lines_matching(r"simpy\.Store\(")) == {"engine/ports.py"}
    op_kinds = "linear|attn_matmul|vector|embedding|kv_append"
    assert _package_lines_matching(rf"(==|!=|\bin \(?)\s*[\"']({op_kinds})[\"']") == {}
    assert set(_package_lines_matching(r"-\(-")) == {"engine/units.py"}
