"""FPGA boards: device resources, memories, clock ceiling and power, from cited presets.

A config names its board (``board: u280``, or ``board: {preset: u280, usable: {dsp: 0.9}}``
to override fields); the preset lives in ``tlmsim/models/presets/boards/<name>.yaml`` with
the data sheet each number comes from. ``check_design`` compares a design's resources,
clock and memories with the board and returns one line per excess; the application turns
them into an error (exit 2) unless the run is a what-if (``--allow-over-budget``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from tlmsim.engine.configbase import BANDWIDTH_GBPS, CLOCK_MHZ, PORTS, Section
from tlmsim.engine.yamlio import load_yaml_file, short_repr

RESOURCE_KINDS = ("dsp", "lut", "ff", "bram36", "uram")
Family = Literal["xcup", "versal"]


class DeviceResources(Section):
    """Primitive counts of the FPGA (data sheet totals)."""

    dsp: int = Field(ge=0, le=10**6)
    lut: int = Field(ge=0, le=10**8)
    ff: int = Field(ge=0, le=10**8)
    bram36: int = Field(ge=0, le=10**6)
    uram: int = Field(ge=0, le=10**6)


class UsableFraction(Section):
    """Share of each resource a design may use and still close timing (routability headroom)."""

    dsp: float = Field(0.8, gt=0, le=1)
    lut: float = Field(0.7, gt=0, le=1)
    ff: float = Field(0.5, gt=0, le=1)
    bram36: float = Field(0.8, gt=0, le=1)
    uram: float = Field(0.8, gt=0, le=1)


class BoardMemory(Section):
    """One memory of the board: kind, channels, capacity and peak bandwidth."""

    kind: Literal["hbm2", "hbm2e", "ddr4", "lpddr4"]
    channels: int = Field(**PORTS)
    capacity_gib: float = Field(gt=0, le=16384)
    bandwidth_gbps: float = Field(**BANDWIDTH_GBPS)
    hard_controller: bool = Field(False, description="controller in hard silicon (Zynq PS, Versal DDRMC/HBM): "
                                                     "costs no fabric resources")


class BoardConfig(Section):
    """A board: its device, memories, the fabric clock ceiling and its power."""

    preset: str | None = Field(None, description="file in tlmsim/models/presets/boards/; fields here override it")
    name: str = Field(max_length=80)
    device: str = Field(max_length=80)
    family: Family = Field(description="synthesis family of the fabric (xcup = UltraScale+)")
    resources: DeviceResources
    usable: UsableFraction = UsableFraction()
    memories: dict[str, BoardMemory] = Field(max_length=8)
    max_clock_mhz: float = Field(**CLOCK_MHZ, description="highest fabric clock of published designs")
    static_power_w: float = Field(gt=0, le=1000, description="board power with the design loaded and idle")
    max_power_w: float = Field(gt=0, le=1000, description="the board's power limit")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data):
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict) and data.get("preset") is not None:
            preset = board_preset(data["preset"])
            merged = {**preset, **data}
            for part in ("usable",):  # a partial override keeps the preset's other fields
                if isinstance(preset.get(part), dict) and isinstance(data.get(part), dict):
                    merged[part] = {**preset[part], **data[part]}
            return merged
        return data

    def budget(self, kind: str) -> int:
        """How many of a resource a design may use (usable fraction of the device)."""
        return int(getattr(self.resources, kind) * getattr(self.usable, kind))


def board_names() -> list[str]:
    """The shipped board presets."""
    from importlib import resources

    folder = resources.files("tlmsim.models") / "presets" / "boards"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def board_preset(name) -> dict:
    """Fields of a board preset (tlmsim/models/presets/boards/<name>.yaml)."""
    from importlib import resources

    known = board_names()
    if name not in known:  # also keeps paths out of the lookup
        raise ValueError(f"unknown board {short_repr(name)}; use one of {known}")
    folder = resources.files("tlmsim.models") / "presets" / "boards"
    preset = load_yaml_file(folder / f"{name}.yaml", f"board preset {name}")
    if not isinstance(preset, dict):
        raise ValueError(f"board preset {name} is not a mapping; fix tlmsim/models/presets/boards/{name}.yaml")
    return preset


def check_design(board: BoardConfig, used: Mapping[str, float], clock_mhz: float,
                 memories: Mapping[str, tuple[str, float, float]]) -> list[str]:
    """One line per way the design exceeds the board (empty: it fits).

    ``used``: resource kind -> count; ``memories``: config memory name -> (kind, capacity
    GiB, bandwidth GB/s), each matched with the board memory of the same name.
    """
    problems = [_resource_problem(board, kind, used.get(kind, 0)) for kind in RESOURCE_KINDS]
    if clock_mhz > board.max_clock_mhz:
        problems.append(f"accelerator.clock_mhz={clock_mhz:g} exceeds the {board.name} fabric clock ceiling of "
                        f"{board.max_clock_mhz:g} MHz ({board.family} designs, docs/cost.md)")
    problems += [_memory_problem(board, name, *spec) for name, spec in memories.items()]
    return [p for p in problems if p]


def _resource_problem(board: BoardConfig, kind: str, need: float) -> str | None:
    budget = board.budget(kind)
    if need <= budget:
        return None
    total = getattr(board.resources, kind)
    return (f"design needs {need:,.0f} {kind.upper()} but the {board.name} budget is {budget:,} "
            f"({getattr(board.usable, kind):.0%} of {total:,}; board.usable.{kind})")


def _memory_problem(board: BoardConfig, name: str, kind: str, capacity_gib: float, bandwidth_gbps: float) -> str | None:
    mem = board.memories.get(name)
    if mem is None:
        return f"memory.{name} is not on the {board.name} (it has {sorted(board.memories) or 'none'})"
    if kind != "generic" and kind != mem.kind.removesuffix("e"):
        return f"memory.{name}.kind={kind} but the {board.name}'s {name} is {mem.kind}"
    if capacity_gib > mem.capacity_gib:
        return f"memory.{name}.capacity_gib={capacity_gib:g} exceeds the {board.name}'s {mem.capacity_gib:g} GiB"
    if bandwidth_gbps > mem.bandwidth_gbps * (1 + 1e-9):
        return (f"memory.{name}.bandwidth_gbps={bandwidth_gbps:g} exceeds the {board.name}'s "
                f"{mem.bandwidth_gbps:g} GB/s")
    return None


class EnergyConstants(Section):
    """Dynamic energy per event of one FPGA family (tlmsim/models/presets/energy/<family>.yaml)."""

    hbm2_pj_per_bit: float = Field(gt=0, le=1000)
    hbm2e_pj_per_bit: float = Field(gt=0, le=1000)
    ddr4_pj_per_bit: float = Field(gt=0, le=1000)
    generic_pj_per_bit: float = Field(gt=0, le=1000)
    dsp_pj_per_op: float = Field(gt=0, le=1000)
    lut_pj_per_toggle: float = Field(gt=0, le=1000)
    ff_pj_per_toggle: float = Field(gt=0, le=1000)
    toggle_rate: float = Field(gt=0, le=1)
    clock_pj_per_ff_cycle: float = Field(gt=0, le=1000)
    uram_pj_per_bit: float = Field(gt=0, le=1000)
    bram_pj_per_bit: float = Field(gt=0, le=1000)
    axi_pj_per_bit: float = Field(gt=0, le=1000)
    vector_pj_per_lane_cycle: float = Field(gt=0, le=10000)

    def memory_pj_per_bit(self, kind: str) -> float:
        """Device energy per bit moved for a memory kind (hbm2, ddr4, generic)."""
        return getattr(self, f"{kind}_pj_per_bit")


def energy_constants(family: str) -> EnergyConstants:
    """The cited energy preset of a fabric family."""
    from importlib import resources

    path = resources.files("tlmsim.models") / "presets" / "energy" / f"{family}.yaml"
    return EnergyConstants.model_validate(load_yaml_file(path, f"energy preset {family}"))
