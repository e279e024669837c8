"""HBM AXI switch (AMD PG276): port rates, the clock crossing, lateral links and routing,
each expectation derived by hand from the config numbers."""

from pathlib import Path

import pytest

from tlmsim.config import MemoryConfig, load_config
from tlmsim.engine.payload import Command, Transaction
from tlmsim.models.accelerator import Accelerator
from tlmsim.models.hbm_switch import HbmSwitchConfig, route, used_ports
from tlmsim.models.memory import Memory
from tlmsim.simulate import build_workload

FLAGSHIP = Path(__file__).resolve().parents[2] / "configs" / "u280_llama7b.yaml"
# One pseudo-channel of the flagship streams at 14.375 GB/s x (1 - (tRP + tRFC + tRCD) / tREFI)
# = 14.375 x (1 - 286 / 3900), its 32 B bursts taking 2227 whole ps instead of 2226.09
# (hbm2_u280 preset; tests/models/test_dram.py derives it).
PC_SUSTAINED = 32_000 / 2227 * (1 - 286 / 3900)  # 13.3155 GB/s


def _hbm(ctx, kernel_clock_mhz=None, dram="hbm2_u280", **switch):
    """The flagship's 32 pseudo-channels (or ``channels`` of them) behind the AXI switch."""
    channels = switch.pop("channels", 32)
    placement = switch.pop("placement_channels", "spread")
    sw = {"ports_used": channels, "lateral_latency_ns": 9, **switch}
    cfg = MemoryConfig(kind="hbm2", channels=channels, bandwidth_gbps=14.4 * channels if dram is None else
                       14.375 * channels, latency_ns=0, burst_bytes=32, interleave_bytes=512,
                       capacity_gib=channels / 4, dram=None if dram is None else {"preset": dram},
                       placement_channels=placement, switch=sw)
    return Memory(ctx, "hbm", cfg, kernel_clock_mhz=kernel_clock_mhz)


def _read(mem, addr, nbytes):
    return mem.schedule(Transaction(Command.READ, addr, nbytes, "t", "x", mem.env.now))


def test_port_rate_is_axi_width_times_axi_clock():
    assert HbmSwitchConfig(ports_used=32, lateral_latency_ns=9).port_gbps == 14.4  # 32 B x 450 MHz (PG276)
    assert HbmSwitchConfig(ports_used=32, lateral_latency_ns=9, axi_clock_mhz=125).port_gbps == 4.0


def test_used_ports_are_spread_evenly_over_the_mini_switches():
    assert used_ports(32, 8) == [0, 4, 8, 12, 16, 20, 24, 28]
    per_switch = [sum(p // 4 == s for p in used_ports(32, 24)) for s in range(8)]
    assert per_switch == [3] * 8
    per_switch = [sum(p // 4 == s for p in used_ports(32, 31)) for s in range(8)]
    assert sorted(per_switch) == [3] + [4] * 7


def test_every_used_port_of_a_mini_switch_carries_an_equal_share():
    # The old mapping sent all four pseudo-channels of a mini-switch through its lowest port.
    # With 16 ports (2 per mini-switch) each port must carry exactly two channels' bytes, locally.
    routes = route(32, 4, 2, 16, (0, 32), PC_SUSTAINED / 14.4, 0.5)
    load = {}
    for ch, shares in enumerate(routes.ports):
        for port, share in shares:
            assert port // 4 == ch // 4  # never leaves its mini-switch: local ports suffice
            load[port] = load.get(port, 0) + share
    assert load == pytest.approx({p: 2.0 for p in used_ports(32, 16)})
    assert not any(routes.links)


def test_the_port_cap_applies_with_one_port_per_channel(ctx):
    # 32 ports at 4 GB/s (256 bit x 125 MHz), one per pseudo-channel: 1 MiB spread over 32 channels
    # is 32 KiB per port = 32768 B / 4 GB/s = 8192 ns, slower than the channel (2.46 us + tRCD).
    mem = _hbm(ctx, axi_clock_mhz=125)
    assert _read(mem, 0, 2**20) == 8_192_000
    assert mem.streaming_gbps() == 128.0


@pytest.mark.parametrize("ports,gbps", [(8, 8 * 14.4), (16, 16 * 14.4), (24, 24 * 14.4),
                                        (31, 32 * PC_SUSTAINED), (32, 32 * PC_SUSTAINED)])
def test_sustained_rate_follows_the_ports_used(ctx, ports, gbps):
    # k <= 24: every mini-switch has k/8 ports for its 4 channels, all alike, so lateral links
    # cannot help: k x 14.4 GB/s. k = 31: mini-switch 7 has 3 ports for 4 channels (53.3 GB/s of
    # demand on 43.2 GB/s of ports) and sends 10.1 GB/s west over two 7.2 GB/s lateral links;
    # mini-switches 6 and 5 pass on what their spare 4.3 GB/s each cannot take: the channels bind.
    mem = _hbm(ctx, ports_used=ports)
    assert mem.streaming_gbps() == pytest.approx(gbps, rel=2e-4)  # flow solved in 1/2520 of a port
    assert (max(mem.hops) > 0) == (ports == 31)


def test_a_small_transfer_through_a_lateral_path_moves_at_half_the_port_rate(ctx):
    # Two mini-switches, one port (port 0, master M0). Channel 5 sits in the other mini-switch:
    # its 4 KiB cross the M0/M1 lateral connection at 50% of 14.4 GB/s = 7.2 GB/s, 568.89 ns,
    # plus one crossing of 9 ns; the channel (14.4 GB/s, ideal) and the port take 284.44 ns.
    mem = _hbm(ctx, dram=None, channels=8, ports_used=1, placement_channels="one")
    far = _read(mem, 5 * mem.channel_bytes, 4096)
    assert far == 568_889 + 9_000
    # A local read issued at the same time goes through the same port after the far one's bytes.
    assert _read(mem, 0, 4096) == 2 * 284_445


def test_the_kernel_side_of_the_clock_crossing_caps_a_port(ctx):
    # A 256-bit kernel master at 250 MHz delivers 8 GB/s, below the port's 14.4 GB/s: one channel's
    # 64 KiB take 65536 B / 8 GB/s = 8192 ns. A 512-bit master (16 GB/s) leaves the port binding.
    narrow = _hbm(ctx, kernel_clock_mhz=250, dram=None, channels=4, placement_channels="one",
                  kernel_width_bits=256)
    assert narrow.switch.port_gbps == 8.0
    assert _read(narrow, 0, 65536) == 8_192_000
    wide = _hbm(ctx, kernel_clock_mhz=250, dram=None, channels=4, placement_channels="one")
    assert wide.switch.port_gbps == 14.4
    # The port then needs 65536 / 14.4 GB/s = 4551.112 ns and the (ideal) channel as fast
    # 2048 bursts of 2223 whole ps = 4552.704 ns: the crossing no longer binds.
    assert _read(wide, 0, 65536) == max(4_551_112, 2048 * 2223)
    assert _hbm(ctx, kernel_clock_mhz=200).switch.port_gbps == pytest.approx(12.8)  # 64 B x 200 MHz


def _decode_step(overrides):
    cfg = load_config(FLAGSHIP, ["workload.prefill_tokens=1", "workload.decode_tokens=1", *overrides])
    acc = Accelerator(cfg, build_workload(cfg))
    step = acc.run()[-1]
    return step.end_ps - step.start_ps, step.bytes_by_memory["hbm"]


def test_axi_ports_at_4_gbps_cap_decode():
    # 32 ports x 4 GB/s = 128 GB/s: a decode step cannot be faster than its HBM bytes / 128 GB/s,
    # and being HBM-bound it is within a few % of that (pipeline head and tail, KV appends).
    ps, nbytes = _decode_step(["memory.hbm.switch.axi_clock_mhz=125"])
    bound = nbytes / 128 * 1000
    assert bound <= ps < 1.03 * bound


def test_decode_speeds_up_monotonically_with_the_ports_used():
    times = {}
    for k in (8, 16, 24, 31, 32):
        times[k], nbytes = _decode_step([f"memory.hbm.switch.ports_used={k}"])
    assert [times[k] for k in (8, 16, 24, 31, 32)] == sorted(times.values(), reverse=True)
    for k in (8, 16, 24):  # port-bound: k x 14.4 GB/s
        assert nbytes / (k * 14.4) * 1000 <= times[k] < 1.03 * nbytes / (k * 14.4) * 1000
    channel_bound = nbytes / (32 * PC_SUSTAINED) * 1000
    assert channel_bound <= times[32] < 1.06 * channel_bound
    assert times[32] <= times[31] < 1.06 * channel_bound  # lateral links carry mini-switch 7's excess


def test_a_port_of_its_own_no_slower_than_its_channel_never_binds(ctx):
    # Why such ports carry no state (HbmSwitch.can_bind): the same bytes through a port at 14.4 GB/s
    # end no later than on their 14.375 GB/s channel. Tracking the ports anyway changes no time.
    import random

    rng = random.Random(7)
    requests = [(rng.randrange(0, 2**26, 32), rng.choice([32, 100, 4096, 2**16, 2**20]), rng.random() < 0.3,
                 rng.choice([0, 0, 1_000, 50_000])) for _ in range(300)]
    untracked, tracked = _hbm(ctx), _hbm(ctx)
    assert not untracked.switch.can_bind
    tracked.switch.can_bind = True
    ends = {untracked: [], tracked: []}
    for addr, nbytes, write, gap in requests:
        if gap:
            ctx.env.run(until=ctx.env.now + gap)
        for mem, log in ends.items():
            command = Command.WRITE if write else Command.READ
            log.append(mem.schedule(Transaction(command, addr, nbytes, "t", "x", ctx.env.now)))
    assert ends[tracked] == ends[untracked]
    assert max(tracked.switch.port_free) > 0  # the ports were used


def test_a_flagship_decode_step_moves_hbm_bytes_within_2_percent_of_shuhai():
    # Shuhai (FCCM 2020) measured up to 425 GB/s of sequential reads on the U280. A whole decode
    # step of the flagship (weights, KV reads and appends, the embedding gather; the step's head
    # and tail included) must sustain that within 2%: it is HBM-bound and its channels idle
    # only at the step boundary (docs/memory.md, "Sustained HBM bandwidth").
    step_ps, nbytes = _decode_step([])
    gbps = nbytes / (step_ps / 1000)
    assert abs(gbps / 425 - 1) < 0.02, gbps
