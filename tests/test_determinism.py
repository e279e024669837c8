"""Same config, same results, bit for bit."""

import json
from pathlib import Path

from tlmsim.config import load_config
from tlmsim.simulate import simulate

FLAGSHIP = Path(__file__).resolve().parents[1] / "configs" / "u280_llama7b.yaml"


def test_two_runs_of_one_config_give_identical_results():
    cfg = load_config(FLAGSHIP, ["workload.prefill_tokens=8", "workload.decode_tokens=2", "workload.batch=2"])
    first, second = simulate(cfg), simulate(cfg)
    assert json.dumps(first.data, sort_keys=True) == json.dumps(second.data, sort_keys=True)
    assert [(s.track, s.start_ps, s.end_ps) for s in first.slices] == \
        [(s.track, s.start_ps, s.end_ps) for s in second.slices]
