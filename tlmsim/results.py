"""What a run produces: ``RunResult`` (simulate's return value) and the schema of result.json.

The application (CLI, sweeps, studies, reports, plots) reads these records only, never
live simulator objects. ``RunResult.data`` is the plain, JSON-ready result dict;
``tlmsim run`` writes it as result.json with two more fields (``wall_time_s`` and
``bottlenecks``). ``ResultFile`` is the pydantic model of that file; its JSON schema is
committed as docs/result_schema.json and regenerated with ``python -m tlmsim.results``
(a test checks the two agree).

Components are told apart by the ``role`` each component class declares
(tlmsim/component.py), recorded in ``data["components"]``: nothing here or in the
application lists component names.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tlmsim.engine.trace import Counter, Slice

# Version of result.json's layout: 2 added schema_version, tlmsim_version, summary and the
# weight breakdown (decoder layers, lm_head, embedding table); 3 added components (their roles);
# 4 added cost (resources per component against the board), energy and per-phase counts.
SCHEMA_VERSION = 4
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "result_schema.json"

# In architectural order (memories, DMAs, buffers, compute, controller): lanes and tables follow it.
ROLES = ("memory", "transfer", "buffer", "compute", "control")
Role = Literal["memory", "transfer", "buffer", "compute", "control"]
# Throughput resources that can bound a run: memories, buffers (their bank ports) and compute
# units (DMAs only wait on memories and buffers; the controller only sequences).
BOUNDING_ROLES = ("memory", "buffer", "compute")
# Components that do work, shown in busy tables (buffers and the controller only wait).
WORKING_ROLES = ("memory", "transfer", "compute")


@dataclass(frozen=True)
class RunResult:
    """One finished simulation as plain data: the result dict and the trace records."""

    data: dict  # result.json's content (see ResultFile)
    slices: tuple[Slice, ...] = ()  # traced intervals (empty when the config traces no step)
    counters: tuple[Counter, ...] = ()  # traced counter samples (buffer occupancy)
    wall_time_s: float = 0.0  # how long simulate() took (not in ``data``: it differs run to run)

    @property
    def traced(self) -> bool:
        """True if the run recorded a trace."""
        return bool(self.slices or self.counters)

    def components(self, *roles: str) -> list[str]:
        """Names of the run's components with one of ``roles`` (all without roles)."""
        return with_roles(self.data["components"], *roles)


def with_roles(components: dict[str, dict], *roles: str) -> list[str]:
    """Names in ``components`` (result["components"]) whose role is one of ``roles``
    (all of them if none is given), in the simulator's order."""
    return [name for name, info in components.items() if not roles or info["role"] in roles]


def in_role_order(components: dict[str, dict]) -> list[str]:
    """Component names grouped by role in architectural order (ROLES)."""
    return [name for role in ROLES for name in with_roles(components, role)]


# ---------------------------------------------------------------- result.json's schema


class _Record(BaseModel):
    """A part of result.json: every field is known, so a new one must be added here."""

    model_config = ConfigDict(extra="forbid")


class Component(_Record):
    """What a component is to the application."""

    role: Role


class ModelSource(_Record):
    """Which model config the layer graph was built from."""

    name: str
    kind: str = Field(description="shipped (tlmsim/workloads/model_configs) or local (a folder)")
    path: str
    config_sha256: str
    manifest_sha256: str | None = Field(description="manifest.json of a tlmsim compress folder, if any")


class Phase(_Record):
    """Metrics of one phase (prefill or decode); the last four are decode only."""

    steps: int
    time_s: float
    roofline_time_s: float = Field(description="sum over steps of the largest resource demand")
    roofline_bound_by: str
    demand_s: dict[str, float] = Field(description="analytic demand per resource, summed over steps")
    bytes_by_memory: dict[str, int]
    utilisation: dict[str, dict[str, float]] = Field(description="component -> state -> fraction of the phase")
    bounding_component: str = Field(description="the busiest memory or compute component")
    channels: dict[str, list[dict[str, float]]] = Field(description="memory -> per channel busy/overhead/idle")
    counts: dict[str, dict[str, int]] = Field(description="component -> event counts (bytes moved, ...)")
    tokens_per_s: float | None = None
    ms_per_token: float | None = Field(None, description="ms per step (a step makes batch tokens)")
    bytes_per_step: dict[str, float] | None = None
    bandwidth_bound_tokens_per_s: float | None = None


class Phases(_Record):
    """The run's phases."""

    prefill: Phase
    decode: Phase | None = None


class Weights(_Record):
    """Weight bytes, exact packed sizes."""

    bytes_by_format: dict[str, int]
    total_bytes: int
    decoder_layer_bytes: int
    lm_head_bytes: int
    embedding_bytes: int
    allocated_bytes_by_memory: dict[str, int]
    storage_bytes_per_weight: dict[str, float]


class OpRecord(_Record):
    """One op of a kept step (prefill, first and last decode step)."""

    name: str
    kind: str
    layer: int | None
    step: int
    phase: Literal["prefill", "decode"]
    time_s: float
    start_s: float
    roofline_s: float
    bound_by: str
    demand_s: dict[str, float]
    bytes: int


class Window(_Record):
    """The span timeline.png shows by default."""

    start_ps: int
    end_ps: int
    label: str


class StepSpan(_Record):
    """When one step ran."""

    index: int
    phase: Literal["prefill", "decode"]
    kv: int
    start_ps: int
    end_ps: int
    demand_bound_s: float = Field(description="the step's busiest resource's summed demand (its bytes at peak "
                                              "bandwidth, its multiplies, decodes and vector elements at peak rate): "
                                              "a lower bound of its time, less what the buffers prefetched for it "
                                              "during the step before (at most their capacity)")
    demand_bound_by: str


class Reuse(BaseModel):
    """What steady-state reuse accounted without simulating (tlmsim/models/steady_state.py)."""

    model_config = ConfigDict(extra="allow")  # the reuse engine may report more (e.g. why it was off)

    layers_skipped: int
    tiles_skipped: int


class ResourceLine(_Record):
    """FPGA primitives of one component and where the numbers come from."""

    dsp: int
    lut: int
    ff: int
    bram36: float
    uram: int
    source: str = Field(description="synthesized, exact primitive count, published table, or estimate")


class Resources(_Record):
    """FPGA primitive totals."""

    dsp: int
    lut: int
    ff: int
    bram36: float
    uram: int


class Cost(_Record):
    """The design's resources against its board (tlmsim/cost.py)."""

    board: str
    components: dict[str, ResourceLine]
    total: Resources
    board_total: Resources
    share_of_board: dict[str, float | None] = Field(description="resource -> used / board total")
    budget: dict[str, int] = Field(description="resource -> usable count (board.usable x total)")
    over_budget: list[str] = Field(description="each way the design exceeds the board; empty if it fits")
    what_if: bool = Field(description="true: the design exceeds its board and ran only with --allow-over-budget")


class PhaseEnergy(_Record):
    """Energy of one phase (tlmsim/energy.py)."""

    joules: dict[str, float] = Field(description="component (or static, clock_tree) -> J")
    total_j: float
    average_w: float
    dynamic_w: float
    tokens: int
    j_per_token: float
    tokens_per_j: float


class Energy(_Record):
    """Energy and power per phase, from the run's records and cited constants."""

    constants: str = Field(description="the energy preset used")
    phases: dict[str, PhaseEnergy]


class Summary(_Record):
    """The headline numbers (tlmsim.report.summary_block); decode fields are null without decode."""

    ttft_s: float
    prefill_tokens_per_s: float
    prefill_roofline_bound_s: float
    prefill_bottleneck: str
    decode_tokens_per_s: float | None
    decode_ms_per_step: float | None
    decode_tokens_per_step: int
    decode_bandwidth_bound_tokens_per_s: float | None
    decode_bottleneck: str | None
    weight_bytes: int
    embedding_bytes: int
    prefill_j_per_token: float | None = Field(None, description="null without a board")
    decode_j_per_token: float | None = None
    decode_tokens_per_j: float | None = None
    decode_power_w: float | None = Field(None, description="average board power while decoding")
    what_if: bool = Field(False, description="the design exceeds its board (run with --allow-over-budget)")


class Attribution(_Record):
    """Critical-path time of a step or layer and the resources it is bound by."""

    exposed_s: float
    bound_by: str
    bound_share: float
    by_component_s: dict[str, float]
    op_bounds_sum_s: float = Field(description="sum of the ops' own roofline bounds; not a bound of the group "
                                               "(ops overlap): the step's bound is steps[].demand_bound_s")


class LayerReport(Attribution):
    """One layer of a step (null: ops outside decoder layers)."""

    layer: int | None


class OpReport(_Record):
    """One op on a step's critical path."""

    name: str
    layer: int | None
    exposed_s: float
    time_s: float
    roofline_s: float
    bound_by: str
    x_roofline: float | None
    margin: float | None


class StepReport(Attribution):
    """The bottleneck report of one step."""

    step: int
    phase: Literal["prefill", "decode"]
    time_s: float
    layers: list[LayerReport]
    ops: list[OpReport]


class Bottlenecks(_Record):
    """The bottleneck report (tlmsim.report.bottlenecks)."""

    method: str
    steps: list[StepReport]


class ResultFile(_Record):
    """result.json: one simulation's metrics, records and resolved config."""

    schema_version: int = Field(description=f"layout version ({SCHEMA_VERSION} is the layout described here)")
    tlmsim_version: str
    name: str = Field(description="the config's name")
    model: ModelSource | None = Field(description="null for a synthetic graph")
    components: dict[str, Component]
    phases: Phases
    weights: Weights
    ops: list[OpRecord]
    timeline_window: Window
    steps: list[StepSpan]
    reuse: Reuse
    config: dict[str, Any] = Field(description="the fully resolved config (tlmsim.config.Config)")
    cost: Cost | None = Field(description="null without board:")
    energy: Energy | None = Field(description="null without board:")
    summary: Summary
    wall_time_s: float | None = Field(None, description="written by tlmsim run")
    bottlenecks: Bottlenecks | None = Field(None, description="written by tlmsim run")


def validate_result(data: dict) -> ResultFile:
    """Check a result dict (or a loaded result.json) against the schema (pydantic's error otherwise)."""
    return ResultFile.model_validate(data)


def schema_text() -> str:
    """docs/result_schema.json's text as this version of tlmsim generates it."""
    return json.dumps(ResultFile.model_json_schema(), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m tlmsim.results [--check] [PATH]``: write (or check) the result.json schema."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=SCHEMA_PATH)
    parser.add_argument("--check", action="store_true", help="exit 1 if PATH differs instead of writing it")
    args = parser.parse_args(argv)
    if args.check:
        same = args.path.is_file() and args.path.read_text() == schema_text()
        print(f"{args.path}: {'up to date' if same else 'out of date; run python -m tlmsim.results'}")
        return 0 if same else 1
    args.path.write_text(schema_text())
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
