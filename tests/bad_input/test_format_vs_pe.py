"""A model whose stored format the PE array cannot run is refused, whatever path it came by
(workload.weight_format is checked by the config; a compressed model's manifest here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlmsim.cli import main

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "configs" / "u280_llama7b.yaml"
FAST = ["--set", "workload.prefill_tokens=4", "--set", "workload.decode_tokens=1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmt")
    assert main(["-q", "tiny-model", str(root / "tiny")]) == 0
    return root


@pytest.mark.parametrize("compress,overrides,fragment", [
    (["--bits", "ternary", "--nm", "2:4"], ["accelerator.pe_array.ternary=false"], "pe_array.ternary is false"),
    (["--bits", "ternary"], ["accelerator.pe_array.ternary=false"], "pe_array.ternary is false"),
    (["--bits", "4", "--nm", "1:4"], [], "set accelerator.pe_array.n/m to 1/4"),
    (["--bits", "4", "--nm", "2:8"], [], "set accelerator.pe_array.n/m to 2/8"),
], ids=["ternary 2:4 on an INT4-only PE", "dense ternary on an INT4-only PE", "1:4 on a 2:4 PE", "2:8 on a 2:4 PE"])
def test_a_stored_format_the_pe_cannot_run_is_refused(tmp_path, tiny, user_error, compress, overrides, fragment):
    model = tiny / ("c" + "_".join(compress).replace(":", "of").replace("-", ""))
    if not model.exists():
        assert main(["-q", "compress", str(tiny / "tiny"), *compress, "--out", str(model)]) == 0
    sets = [x for o in overrides for x in ("--set", o)]
    user_error(["run", FLAGSHIP, "--model", model, "--out", tmp_path / "r", *FAST, *sets], fragment)
