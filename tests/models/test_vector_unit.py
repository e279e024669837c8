"""Vector unit: cycles = ceil(elements * cost / lanes) + latency."""

import pytest
from conftest import Issuer

from tlmsim.config import VectorUnitConfig
from tlmsim.models.vector_unit import VectorCommand, VectorUnit


def test_vector_op_time_matches_hand_count(ctx):
    unit = VectorUnit(ctx, "vec", VectorUnitConfig(lanes=64, latency_cycles=16), 250)
    issuer = Issuer(ctx.env, unit, VectorCommand)
    issuer.send(VectorCommand("norm", "rmsnorm", 4096, "w"), VectorCommand("act", "activation", 64, "v"))
    ctx.env.run()
    first = (4096 * 2 // 64 + 16) * 4000
    assert issuer.done == [("w", first), ("v", first + (64 * 2 // 64 + 16) * 4000)]


def test_unknown_vector_op_names_the_config_field(ctx):
    unit = VectorUnit(ctx, "vec", VectorUnitConfig(lanes=8), 250)
    with pytest.raises(KeyError, match="cycles_per_element"):
        unit.op_ps("gelu_tanh_fancy", 10)
