"""tlmsim tiny-model -> tlmsim compress -> tlmsim run --model: the compressed-model path."""

import json
from pathlib import Path

import pytest

from tlmsim.cli import main
from tlmsim.workloads.compressed_model import load_manifest

ROOT = Path(__file__).resolve().parents[2]

FLAGSHIP = str(ROOT / "configs" / "u280_llama7b.yaml")
FAST = ["--set", "workload.prefill_tokens=8", "--set", "workload.decode_tokens=2"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "tiny"
    assert main(["-q", "tiny-model", str(out)]) == 0
    return out


def test_compress_then_simulate_uses_the_packed_bytes_of_the_manifest(tiny_dir, tmp_path):
    packed = tmp_path / "tiny-2of4"
    assert main(["-q", "compress", str(tiny_dir), "--nm", "2:4", "--bits", "4", "--out", str(packed)]) == 0
    res = tmp_path / "res"
    assert main(["-q", "run", FLAGSHIP, "--model", str(packed), "--out", str(res), *FAST]) == 0
    result = json.loads((res / "result.json").read_text())
    manifest = load_manifest(packed)
    linears = {n: r for n, r in manifest.items() if "embed" not in n}  # embeddings are gathered, not streamed
    assert len(linears) == 2 * 7 + 1
    assert result["weights"]["total_bytes"] == sum(r.packed_nbytes for r in linears.values())
    assert result["config"]["workload"]["model"] == str(packed)
    assert set(result["weights"]["bytes_by_format"]) == {r.fmt.name for r in linears.values()}


def test_a_model_compressed_for_other_pe_hardware_is_rejected(tiny_dir, tmp_path, capsys):
    packed = tmp_path / "tiny-1of4"
    assert main(["-q", "compress", str(tiny_dir), "--nm", "1:4", "--out", str(packed)]) == 0
    assert main(["-q", "run", FLAGSHIP, "--model", str(packed), "--out", str(tmp_path / "r"), *FAST]) == 2
    assert "set accelerator.pe_array.n/m to 1/4" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_compress_rejects_bad_patterns_without_output(tiny_dir, tmp_path, capsys):
    assert main(["compress", str(tiny_dir), "--nm", "4:4", "--out", str(tmp_path / "x")]) == 2
    assert "0 < N < M" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_compress_needs_a_model_directory(tmp_path, capsys):
    assert main(["compress", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "has no config.json" in capsys.readouterr().err
