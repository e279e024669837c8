"""Time conversions are exact where they should be."""

from tlmsim.engine.timebase import cycles_to_ps, ns_to_ps, transfer_ps


def test_cycles_at_250_mhz_are_4_ns():
    assert cycles_to_ps(3, 250) == 12_000


def test_cycles_at_a_non_integer_period_round_up():
    assert cycles_to_ps(1, 300) == 3334


def test_transfer_of_460_bytes_at_460_gbps_is_1_ns():
    assert transfer_ps(460, 460) == 1000


def test_ns_to_ps():
    assert ns_to_ps(110) == 110_000
