"""What a design costs on its board: resources per component, % of the board, the budget check.

``design_cost(cfg)`` is result.json's ``cost`` block (None without ``board:``);
``check_budget(cfg)`` runs before a simulation and refuses a design that does not fit
its board (one line naming the resource, the need and the budget; exit 2) unless
``simulation.allow_over_budget`` makes it a what-if, which the result then records.
"""

from __future__ import annotations

from tlmsim.config import Config
from tlmsim.engine.errors import ConfigError
from tlmsim.models.board import RESOURCE_KINDS, check_design
from tlmsim.models.resources import design_resources, total

# Synthesis family of the PE for a board family: Yosys has no Versal DSP58 mapping, so a
# Versal fabric is counted with the UltraScale+ PE (DSP58 is at least as wide as DSP48E2).
SYNTH_FAMILY = {"xcup": "xcup", "versal": "xcup"}


def design_cost(cfg: Config) -> dict | None:
    """Resources (per component and total), their share of the board, and what exceeds it."""
    if cfg.board is None:
        return None
    hard = frozenset(name for name, mem in cfg.board.memories.items() if mem.hard_controller)
    lines = design_resources(cfg.accelerator, cfg.memory, cfg.workload.activation_bits,
                             SYNTH_FAMILY[cfg.board.family], hard)
    used = total(lines)
    board = cfg.board
    over = budget_problems(cfg, used.to_json())
    return {
        "board": board.name,
        "components": {name: line.to_json() for name, line in lines.items()},
        "total": used.to_json(),
        "board_total": board.resources.model_dump(),
        "share_of_board": {k: getattr(used, k) / getattr(board.resources, k) if getattr(board.resources, k) else None
                           for k in RESOURCE_KINDS},
        "budget": {k: board.budget(k) for k in RESOURCE_KINDS},
        "over_budget": over,
        "what_if": bool(over),
    }


def budget_problems(cfg: Config, used: dict) -> list[str]:
    """Every way the design exceeds its board (resources, clock ceiling, memories)."""
    memories = {name: (m.kind, m.capacity_gib, m.bandwidth_gbps) for name, m in cfg.memory.items()}
    return check_design(cfg.board, used, cfg.accelerator.clock_mhz, memories)


def check_budget(cfg: Config) -> dict | None:
    """The cost block, after refusing an over-budget design that is not a what-if."""
    cost = design_cost(cfg)
    if cost and cost["over_budget"] and not cfg.simulation.allow_over_budget:
        first = cost["over_budget"][0]
        more = len(cost["over_budget"]) - 1
        raise ConfigError(f"{first}{f' (and {more} more)' if more else ''}; use a smaller design, a slower clock "
                          "or a larger board, or run it as a what-if with --allow-over-budget")
    return cost
