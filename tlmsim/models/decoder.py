"""Weight decoder: expands N:M indices and dequantizes INT4/ternary codes for the PEs.

It streams element by element into the PE array, so at tile level decoder and PEs
work in lockstep: the PE array sends each weight tile through ``stream_port`` with the
time it needs to consume it, and the tile takes max(decode, consume). The decoder
accounts its own busy time and the back-pressure from the PEs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from tlmsim.engine.component import Component, SimContext
from tlmsim.engine.configbase import CYCLES, Section
from tlmsim.engine.ports import TargetPort
from tlmsim.engine.protocol import Frame
from tlmsim.engine.timebase import cycles_to_ps
from tlmsim.engine.units import ceil_div


class DecoderConfig(Section):
    """Weight decoder: N:M index expansion and INT4/ternary dequantization."""

    weights_per_cycle: int = Field(ge=1, le=2**24, description="stored weights decoded per cycle")
    latency_cycles: int = Field(4, **CYCLES)


@dataclass(frozen=True)
class DecodeStream:
    """Stream one weight tile of ``stored_weights`` from a bank that delivers it in
    ``supply_ps`` to a consumer that needs ``consume_ps`` for it."""

    label: str
    stored_weights: int
    consume_ps: int
    supply_ps: int = 0


class WeightDecoder(Component):
    """Decodes ``weights_per_cycle`` stored weights per cycle after a fixed latency."""

    role = "compute"
    WIRING = ("cfg", "clock_mhz", "stream_port")

    def __init__(self, ctx: SimContext, name: str, cfg: DecoderConfig, clock_mhz: float):
        super().__init__(ctx, name)
        self.cfg = cfg
        self.clock_mhz = clock_mhz
        self.stream_port = TargetPort(name, DecodeStream, self.stream)

    def stream(self, tile: DecodeStream):
        """Blocking transport: decode ``tile`` in lockstep with its consumer; returns the
        decode time once both are done."""
        start = self.env.now
        decode = self.decode_ps(tile.stored_weights)
        fed = max(decode, tile.supply_ps)
        yield self.env.timeout(max(fed, tile.consume_ps))
        self.record("busy", start, start + decode, tile.label, weights=tile.stored_weights)
        self.record("stall:waiting for weight buffer", start + decode, start + fed, tile.label)
        self.record("stall:back-pressure from PEs", start + fed, start + tile.consume_ps, tile.label)
        return fed

    def boundary_state(self, frame: Frame) -> tuple:
        """Nothing: a tile in the stream is the PE array's state (its process waits on it)."""
        return ()

    def decode_cycles(self, stored_weights: int) -> int:
        """Cycles a tile occupies the decoder (its latency overlaps the stream; the PE
        array adds it once to an op's drain)."""
        return ceil_div(stored_weights, self.cfg.weights_per_cycle)

    def decode_ps(self, stored_weights: int) -> int:
        """Time to decode a tile."""
        return cycles_to_ps(self.decode_cycles(stored_weights), self.clock_mhz)

    def ideal_ps(self, stored_weights: int) -> int:
        """Throughput-only lower bound for the roofline."""
        return self.decode_ps(stored_weights)
