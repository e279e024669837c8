"""Where each tensor lives: memory and base address, checked against capacities.

Tensors are aligned to the memory's address-map period with a guard between them
(``Memory.tensor_alignment``), so identical tensors cost the same wherever they lie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from tlmsim.engine.configbase import Section
from tlmsim.engine.errors import CapacityError
from tlmsim.engine.units import ceil_div
from tlmsim.models.memory import addressable_bytes, tensor_alignment

if TYPE_CHECKING:  # the composed config is the application's; components only read it
    from tlmsim.config import Config


class PlacementConfig(Section):
    """Which memories hold each tensor class, tried in order until one has room."""

    weights: list[str] = Field(min_length=1, max_length=16)
    kv_cache: list[str] = Field(min_length=1, max_length=16)
    embeddings: list[str] = Field(min_length=1, max_length=16)


@dataclass(frozen=True)
class Region:
    """A tensor's home: memory name, base address, size."""

    memory: str
    addr: int
    nbytes: int


class Placement:
    """Allocates tensors in order into the first listed memory with room."""

    def __init__(self, cfg: Config):
        self.capacity = {name: addressable_bytes(mem) for name, mem in cfg.memory.items()}
        self.used = dict.fromkeys(cfg.memory, 0)
        self.regions: dict[str, Region] = {}
        self.placement = cfg.placement
        self.cfg = cfg
        self.alignment = {name: tensor_alignment(mem) for name, mem in cfg.memory.items()}

    def place(self, tensor_class: str, tensors: dict[str, int]) -> None:
        """Place ``tensors`` (name -> bytes) of one class ("weights", "kv_cache", "embeddings")."""
        allowed = getattr(self.placement, tensor_class)
        for name, nbytes in tensors.items():
            memory = next((m for m in allowed if self._start(m) + nbytes <= self.capacity[m]), None)
            if memory is None:
                raise CapacityError(self._overflow_message(tensor_class, tensors, allowed))
            start = self._start(memory)
            self.regions[name] = Region(memory, start, nbytes)
            self.used[memory] = start + nbytes

    def _start(self, memory: str) -> int:
        """Where the next tensor in ``memory`` starts: aligned, a guard after the last one."""
        align, guard = self.alignment[memory]
        end = self.used[memory]
        return _align(end + guard, align or 4096) if end else 0

    def __getitem__(self, tensor: str) -> Region:
        return self.regions[tensor]

    def bytes_in(self, memory: str) -> int:
        """Bytes allocated in ``memory``."""
        return self.used[memory]

    def _overflow_message(self, tensor_class: str, tensors: dict[str, int], allowed: list[str]) -> str:
        need = sum(tensors.values()) / 1e9
        room = ", ".join(f"{m}: {(self.capacity[m] - self.used[m]) / 1e9:.2f} GB free of "
                         f"{self.capacity[m] / 1e9:.2f} GB" for m in allowed)
        others = sorted(set(self.capacity) - set(allowed))
        fix = (f"add {others[0]!r} to placement.{tensor_class}" if others else "use a larger memory")
        return (f"placement.{tensor_class}: {need:.2f} GB of {tensor_class} do not fit in {allowed} ({room}); "
                f"{fix} or choose a smaller workload.weight_format / batch / token count")


def _align(nbytes: int, boundary: int) -> int:
    return ceil_div(nbytes, boundary) * boundary
