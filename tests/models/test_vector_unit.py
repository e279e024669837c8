"""Vector unit: cycles = ceil(elements * cost / lanes) + latency."""

import pytest
import simpy

from tlmsim.config import VectorUnitConfig
from tlmsim.models.vector_unit import VectorCommand, VectorUnit


def test_vector_op_time_matches_hand_count(ctx):
    unit = VectorUnit(ctx, "vec", VectorUnitConfig(lanes=64, latency_cycles=16), 250, simpy.Store(ctx.env))
    done = ctx.env.event()
    unit.commands.put(VectorCommand("norm", "rmsnorm", 4096, done))
    ctx.env.run(until=done)
    assert ctx.env.now == (4096 * 2 // 64 + 16) * 4000


def test_unknown_vector_op_names_the_config_field(ctx):
    unit = VectorUnit(ctx, "vec", VectorUnitConfig(lanes=8), 250, simpy.Store(ctx.env))
    with pytest.raises(KeyError, match="cycles_per_element"):
        unit.op_ps("gelu_tanh_fancy", 10)
