"""Weight decoder: expands N:M indices and dequantizes INT4/ternary codes for the PEs.

It streams element by element into the PE array, so at tile level decoder and PEs
work in lockstep (``PeArray`` charges each tile max(decode, compute)). This passive
model only answers how long a tile takes to decode.
"""

from __future__ import annotations

from pydantic import Field

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.configbase import CYCLES, Section
from tlmsim.engine.protocol import Frame
from tlmsim.engine.timebase import cycles_to_ps


class DecoderConfig(Section):
    """Weight decoder: N:M index expansion and INT4/ternary dequantization."""

    weights_per_cycle: int = Field(ge=1, le=2**24, description="stored weights decoded per cycle")
    latency_cycles: int = Field(4, **CYCLES)


class WeightDecoder(Component):
    """Decodes ``weights_per_cycle`` stored weights per cycle after a fixed latency."""

    role = "compute"
    WIRING = ("cfg", "clock_mhz")

    def __init__(self, ctx: SimContext, name: str, cfg: DecoderConfig, clock_mhz: float):
        super().__init__(ctx, name)
        self.cfg = cfg
        self.clock_mhz = clock_mhz

    def boundary_state(self, frame: Frame) -> tuple:
        """Nothing: the decoder has no state of its own (the PE array records its work)."""
        return ()

    def decode_cycles(self, stored_weights: int) -> int:
        """Cycles a tile occupies the decoder (its latency overlaps the stream; the PE
        array adds it once to an op's drain)."""
        return -(-stored_weights // self.cfg.weights_per_cycle)

    def decode_ps(self, stored_weights: int) -> int:
        """Time to decode a tile."""
        return cycles_to_ps(self.decode_cycles(stored_weights), self.clock_mhz)

    def ideal_ps(self, stored_weights: int) -> int:
        """Throughput-only lower bound for the roofline."""
        return self.decode_ps(stored_weights)
