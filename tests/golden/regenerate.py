"""Regenerate the golden results every refactor must reproduce exactly (issue 13).

    python tests/golden/regenerate.py            # all configs and studies
    python tests/golden/regenerate.py --check    # compare instead of writing

It stores, gzip-compressed, the numbers of result.json (phases, weights, steps, reuse,
op records, bottleneck report) of the three flagship configs and every row of the
three shipped studies. tests/test_golden.py compares a fresh run against them: every
value stored here must come back identical (new fields are allowed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
CONFIGS = ["u280_llama7b", "u280_llama7b_int4_dense", "u280_llama7b_fp16"]
STUDIES = ["matmul_4096", "llama7b_formats", "llama7b_bandwidth"]
RESULT_KEYS = ("phases", "weights", "steps", "reuse", "ops", "bottlenecks")


def config_result(name: str) -> dict:
    """The kept sections of a fresh run of configs/<name>.yaml."""
    from tlmsim.config import load_config
    from tlmsim.report import bottlenecks
    from tlmsim.simulate import simulate

    data = simulate(load_config(ROOT / "configs" / f"{name}.yaml")).data
    result = {**data, "bottlenecks": bottlenecks(data)}
    return json.loads(json.dumps({k: result[k] for k in RESULT_KEYS}))


def study_rows(name: str) -> list[dict]:
    """The rows of a fresh run of configs/studies/<name>.yaml."""
    from tlmsim.study import run_study

    with tempfile.TemporaryDirectory() as tmp:
        rows = run_study(ROOT / "configs" / "studies" / f"{name}.yaml", Path(tmp) / "points")
    return json.loads(json.dumps(rows))


def path_of(kind: str, name: str) -> Path:
    """Where the golden file of one config or study lives."""
    return GOLDEN / f"{kind}-{name}.json.gz"


def load(kind: str, name: str):
    """The stored golden value."""
    return json.loads(gzip.decompress(path_of(kind, name).read_bytes()))


def differences(golden, fresh, where: str = "") -> list[str]:
    """Paths where ``fresh`` does not reproduce ``golden`` exactly (extra keys in fresh are fine)."""
    if isinstance(golden, dict):
        if not isinstance(fresh, dict):
            return [f"{where}: not a mapping"]
        return [d for k, v in golden.items()
                for d in (differences(v, fresh[k], f"{where}.{k}") if k in fresh else [f"{where}.{k}: missing"])]
    if isinstance(golden, list):
        if not isinstance(fresh, list) or len(golden) != len(fresh):
            return [f"{where}: length {len(golden)} -> {len(fresh) if isinstance(fresh, list) else 'n/a'}"]
        return [d for i, (g, f) in enumerate(zip(golden, fresh)) for d in differences(g, f, f"{where}[{i}]")]
    return [] if golden == fresh or (golden != golden and fresh != fresh) else [f"{where}: {golden!r} -> {fresh!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored files instead of writing")
    parser.add_argument("names", nargs="*", help="only these configs or studies")
    args = parser.parse_args()
    jobs = [("config", n, config_result) for n in CONFIGS] + [("study", n, study_rows) for n in STUDIES]
    failed = 0
    for kind, name, make in jobs:
        if args.names and name not in args.names:
            continue
        fresh = make(name)
        if args.check:
            diffs = differences(load(kind, name), fresh)
            failed += bool(diffs)
            print(f"{kind} {name}: {'identical' if not diffs else f'{len(diffs)} differences, e.g. {diffs[:3]}'}")
        else:
            path_of(kind, name).write_bytes(gzip.compress(json.dumps(fresh, sort_keys=True).encode(), mtime=0))
            print(f"wrote {path_of(kind, name).relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
