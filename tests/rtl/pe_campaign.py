"""RTL cross-check campaigns: configs, seeded stimulus, one build and two runs per config."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pe_runner
import pe_stimulus
import pytest

from tlmsim.models.pe_core import PeParams

TILES = int(os.environ.get("PE_RTL_TILES", "1000"))  # random tiles per config and run
BASE_SEED = int(os.environ.get("PE_RTL_SEED", "20240604"))
SHAPES = ((1, 1), (1, 3), (2, 2), (3, 4), (4, 2))  # (groups, beats per group) of a tile
STALL_PROB = 0.3  # back-pressured run: chance of out_ready low / of an in_valid gap

# At most 10 builds (~15 s each). The narrow accumulators wrap on about half the tiles.
CONFIGS = {
    "int4_2of4": PeParams(n=2, m=4, lanes=4),
    "int4_1of4": PeParams(n=1, m=4, lanes=4),
    "int4_2of8": PeParams(n=2, m=8, lanes=2),
    "int4_4of8_acc25": PeParams(n=4, m=8, lanes=2, acc_bits=25),
    "ternary_2of4": PeParams(n=2, m=4, lanes=4, ternary=True),
    "ternary_1of4_acc23": PeParams(n=1, m=4, lanes=8, ternary=True, acc_bits=23),
    "ternary_2of8": PeParams(n=2, m=8, lanes=2, ternary=True),
    "ternary_4of8_1lane": PeParams(n=4, m=8, lanes=1, ternary=True),
    # PACK = 2: two token rows share the weights, two INT4 products per multiplier
    "int4_2of4_pack2": PeParams(n=2, m=4, lanes=4),
    "int4_4of8_acc25_pack2": PeParams(n=4, m=8, lanes=2, acc_bits=25),
}
PACK = {"int4_2of4_pack2": 2, "int4_4of8_acc25_pack2": 2}  # Verilog PACK per config; default 1


@dataclass
class Campaign:
    """Stimulus for one config and run mode, and what the RTL produced for it."""

    name: str
    params: PeParams
    seed: int
    rows: list[list[pe_stimulus.Tiles]]  # per token row, one batch per tile shape
    order: list[tuple[int, int]]  # (batch, tile) in the order the tiles were streamed
    observed: dict  # pe_bench.Observed as a dict

    @property
    def batches(self) -> list[pe_stimulus.Tiles]:
        """Row 0's batches (the only row of a PACK = 1 PE)."""
        return self.rows[0]

    @property
    def tag(self) -> str:
        """Names the run and how to reproduce it, for assertion messages."""
        return f"{self.name} seed={self.seed} tiles={len(self.order)} (rerun: PE_RTL_SEED={BASE_SEED})"

    def rtl_results(self, batch: int, row: int = 0) -> np.ndarray:
        """RTL outputs of one batch for one token row, in the batch's tile order."""
        bits = self.params.acc_bits
        out = np.zeros(self.batches[batch].scales.shape[0], dtype=np.int64)
        for (b, t), value in zip(self.order, self.observed["outputs"], strict=True):
            if b == batch:
                out[t] = pe_stimulus.to_signed(value >> (row * bits), bits)
        return out


def make_campaign(name: str, built: pe_runner.BuiltPe, seed: int, stall_prob: float) -> Campaign:
    """Generate seeded tiles of every shape, stream them through the RTL, keep the results."""
    p = built.params
    rng = np.random.default_rng(seed)
    per_shape = -(-TILES // len(SHAPES))
    batches = [pe_stimulus.random_tiles(p, rng, per_shape, g, gb) for g, gb in SHAPES]
    order = [(b, t) for b in range(len(batches)) for t in range(per_shape)]
    order = [order[i] for i in rng.permutation(len(order))[:TILES]]
    rows = [batches] + [[pe_stimulus.another_row(p, rng, t) for t in batches] for _ in range(built.pack - 1)]
    beats = [w for b, t in order
             for w in pe_stimulus.pack_beats(p, batches[b], t, rng, tuple(row[b] for row in rows[1:]))]
    stimulus = {"seed": seed, "beats": beats, "tiles": len(order), "gap_prob": stall_prob, "stall_prob": stall_prob}
    observed = built.run(stimulus, name)
    return Campaign(name, p, seed, rows, order, observed)


class RtlRuns:
    """Builds each config once per session and runs each (config, mode) once."""

    def __init__(self, tmp_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_factory
        self._builds: dict[str, pe_runner.BuiltPe] = {}
        self._campaigns: dict[tuple[str, str], Campaign] = {}

    def built(self, name: str) -> pe_runner.BuiltPe:
        """The Verilator build of config `name`."""
        if name not in self._builds:
            self._builds[name] = pe_runner.build(CONFIGS[name], self._tmp.mktemp(f"nm_pe_{name}"), PACK.get(name, 1))
        return self._builds[name]

    def campaign(self, name: str, mode: str) -> Campaign:
        """Results of mode 'stream' (no stalls) or 'backpressure' for config `name`."""
        key = (name, mode)
        if key not in self._campaigns:
            index = list(CONFIGS).index(name)
            seed = BASE_SEED * 100 + index * 2 + (mode == "backpressure")
            stall = STALL_PROB if mode == "backpressure" else 0.0
            self._campaigns[key] = make_campaign(f"{name}_{mode}", self.built(name), seed, stall)
        return self._campaigns[key]
