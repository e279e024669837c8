"""The DRAM timing config of one channel and its cited presets (tlmsim/models/presets/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tlmsim.engine.configbase import TIME_NS, Section
from tlmsim.engine.yamlio import load_yaml_file, short_repr

AddressMapping = Literal["row_column_bank", "row_bank_column", "bank_row_column"]


class DramTimingConfig(Section):
    """DRAM organisation and command timing of one channel (times in ns).

    ``preset`` names a file in ``tlmsim/models/presets/`` (e.g. ``hbm2_u280``, ``ddr4_2400``)
    whose values fill every field not given here; the file cites each value's source.
    """

    preset: str | None = Field(None, description="preset file in tlmsim/models/presets/; explicit fields override it")
    bank_groups: int = Field(ge=1, le=64)
    banks: int = Field(ge=1, le=1024, description="banks per channel (all bank groups)")
    row_bytes: int = Field(ge=1, le=2**20, description="row (page) size per channel")
    address_mapping: AddressMapping = Field(
        "row_column_bank", description="order of the local-address fields, most significant first")
    t_rcd_ns: float = Field(**TIME_NS, description="ACTIVATE to READ/WRITE")
    t_rp_ns: float = Field(**TIME_NS, description="PRECHARGE period")
    t_ras_ns: float = Field(**TIME_NS, description="ACTIVATE to PRECHARGE")
    t_cl_ns: float = Field(**TIME_NS, description="READ to first data (part of latency_ns; documented)")
    t_ccd_s_ns: float = Field(**TIME_NS, description="column to column, different bank group")
    t_ccd_l_ns: float = Field(**TIME_NS, description="column to column, same bank group")
    t_rrd_s_ns: float = Field(**TIME_NS, description="ACTIVATE to ACTIVATE, different bank group")
    t_faw_ns: float = Field(**TIME_NS, description="window of four ACTIVATEs")
    t_refi_ns: float = Field(**TIME_NS, description="refresh interval; 0 disables refresh")
    t_rfc_ns: float = Field(**TIME_NS, description="refresh cycle time (channel blocked)")
    refresh: Literal["postponed", "windowed"] = Field(
        "postponed", description="postponed: the controller defers refreshes while busy (at most "
        "refresh_postpone_max) and catches up in idle time; windowed: fixed blocked windows [m tREFI - tRFC, m tREFI)")
    refresh_postpone_max: int = Field(8, ge=0, le=64, description="refreshes the controller may postpone (JEDEC: 8)")
    t_wtr_ns: float = Field(**TIME_NS, description="write-to-read bus turnaround (tCWL + burst + tWTR)")
    t_rtw_ns: float = Field(**TIME_NS, description="read-to-write bus turnaround")
    controller_efficiency: float = Field(1.0, gt=0.1, le=1.0, description=(
        "bursts the controller issues per burst slot the timing above leaves free (command scheduling, "
        "arbitration, PHY); a calibration constant where a preset sets it (its source says how it was fitted)"))

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data):
        if isinstance(data, dict) and data.get("preset") is not None:
            return {**_dram_preset(data["preset"]), **data}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.banks % self.bank_groups:
            raise ValueError(f"banks={self.banks} must be a multiple of bank_groups={self.bank_groups}")
        if self.t_refi_ns and self.refresh_block_ns >= self.t_refi_ns:
            raise ValueError(f"t_rp_ns + t_rfc_ns + t_rcd_ns = {self.refresh_block_ns} (one refresh) must be "
                             f"< t_refi_ns={self.t_refi_ns}")
        return self

    @property
    def refresh_block_ns(self) -> float:
        """Channel time one all-bank refresh takes from a streaming channel: close the open rows
        (tRP: an all-bank REFRESH needs every bank precharged, JEDEC JESD235 "Refresh Command"),
        refresh (tRFC), then re-open the stream's row (tRCD: every bank is closed, so the bank
        rotation that hides activations has no transfer to overlap with)."""
        return self.t_rp_ns + self.t_rfc_ns + self.t_rcd_ns

    @property
    def t_rc_ns(self) -> float:
        """ACTIVATE to ACTIVATE in the same bank."""
        return self.t_ras_ns + self.t_rp_ns


def _dram_preset(name) -> dict:
    """Fields of a DRAM timing preset (tlmsim/models/presets/<name>.yaml)."""
    from importlib import resources

    folder = resources.files("tlmsim.models") / "presets"
    known = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    if name not in known:  # also keeps paths such as ../../x out of the lookup
        raise ValueError(f"unknown DRAM timing preset {short_repr(name)}; use one of {known}")
    preset = load_yaml_file(folder / f"{name}.yaml", f"DRAM timing preset {name}")
    if not isinstance(preset, dict):
        raise ValueError(f"DRAM timing preset {name} is not a mapping of fields; fix tlmsim/models/presets/{name}.yaml")
    return preset
