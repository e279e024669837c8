"""The program: every step's ops, tiled for this accelerator, shared by controller and DMAs.

The controller dispatches the ops of each step in order; the DMAs walk the same program
ahead of it through their descriptor chains (``weight_descriptors``, ``kv_descriptors``).
Both read it lazily, so steady-state reuse can leave out layers or tiles no reader has
reached yet (``Program.advance``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import simpy

from tlmsim.engine.protocol import NO_REPEAT, Frame, RepeatUnit, Stateful
from tlmsim.models.dma import Descriptor
from tlmsim.models.pe_array import check_runs, tile_order
from tlmsim.models.placement import Placement
from tlmsim.models.tiling import Tile, attention_tiles, linear_tiles, token_chunk
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Op, Step, Workload

if TYPE_CHECKING:  # the composed config is the application's; components only read it
    from tlmsim.config import Config


# What steady-state reuse skips (RepeatUnit.kind): whole decoder layers of a step, or tiles of an op.
LAYER, TILE = "layer", "tile"


@dataclass(slots=True)
class OpState:
    """One op of one step while it runs: its tiles, completion event and timestamps."""

    op: Op
    step: Step
    done: simpy.Event
    tiles: tuple[Tile, ...] = ()
    first_issue_ps: int | None = None
    done_ps: int | None = None
    # Tiles [first, last] skipped by steady-state reuse (the DMA's chain reads it; only the
    # program writes it, for tiles no reader has reached: Program.advance).
    skipped_tiles: list[int] = field(default_factory=list)
    fetched: int = -1  # the last tile the DMA's descriptor chain handed out

    def mark_done(self, event: simpy.Event) -> None:
        """Callback of ``done``: note the completion time."""
        self.done_ps = event.env.now

    def mark_issue(self, now_ps: int) -> None:
        """Note the first time any work of this op started (DMA read or dispatch)."""
        if self.first_issue_ps is None or now_ps < self.first_issue_ps:
            self.first_issue_ps = now_ps


class Program(Stateful):
    """The tiled ops of every step, built lazily and shared by controller and DMAs.

    Its reuse state is the progress of the ops around a boundary and its skip tables, which
    it rewrites only ahead of every reader (``advance``).
    """

    name = "program"
    REUSE_STATE = ("_states", "skipped")
    WIRING = ("env", "cfg", "workload", "placement", "steps", "layer_start", "ops_per_layer")
    CACHES = ("_tile_cache",)

    def __init__(self, env: simpy.Environment, cfg: Config, workload: Workload, placement: Placement):
        self.env = env
        self.cfg = cfg
        self.workload = workload
        self.placement = placement
        self.steps = workload.steps()
        self._states: dict[int, list[OpState]] = {}
        self._tile_cache: dict[tuple, list[Tile]] = {}
        # Decoder layers skipped by steady-state reuse: step index -> (first, last) layer.
        self.skipped: dict[int, tuple[int, int]] = {}
        ops = self.workload.ops(self.steps[0])
        self.layer_start: dict[int, int] = {}  # layer -> index of its first op in a step
        for i, op in enumerate(ops):
            if op.layer is not None:
                self.layer_start.setdefault(op.layer, i)
        sizes = Counter(op.layer for op in ops if op.layer is not None)  # ops per decoder layer
        self.ops_per_layer = next(iter(sizes.values())) if len(set(sizes.values())) == 1 else None

    def check_fits(self) -> None:
        """Tile the first and last steps now, so a buffer too small fails before simulating."""
        pe = self.cfg.accelerator.pe_array
        for step in {self.steps[0], self.steps[-1]}:
            for op in self.workload.ops(step):
                if op.weight_format is not None:
                    check_runs(pe, op.weight_format, f"{op.name} (stored in workload.model)")
                self.tiles(op)

    def state(self, index: int) -> list[OpState]:
        """Op states of step ``index`` (created on first use)."""
        if index not in self._states:
            step = self.steps[index]
            self._states[index] = [self._new_state(op, step) for op in self.workload.ops(step)]
        return self._states[index]

    def is_skipped(self, st: OpState) -> bool:
        """True if ``st`` belongs to a decoder layer skipped by steady-state reuse."""
        skip = self.skipped.get(st.step.index)
        return skip is not None and st.op.layer is not None and skip[0] <= st.op.layer <= skip[1]

    def dependency(self, states: list[OpState], index: int) -> OpState:
        """The op state that stands for ``states[index]``: a skipped layer's op is represented by
        the same op of the simulated layer that replaced the skipped run."""
        st = states[index]
        if not self.is_skipped(st):
            return st
        first, last = self.skipped[st.step.index]
        return states[index - (last - first + 1) * self.ops_per_layer]

    def states_if_built(self, index: int) -> list[OpState]:
        """Op states of step ``index`` if some process already asked for them, else []."""
        return self._states.get(index, [])

    def forget(self, index: int) -> None:
        """Drop a finished step's states."""
        self._states.pop(index, None)

    def _new_state(self, op: Op, step: Step) -> OpState:
        st = OpState(op, step, self.env.event(), self.tiles(op))
        st.done.callbacks.append(st.mark_done)
        return st

    def tiles(self, op: Op) -> tuple[Tile, ...]:
        """Tiles of ``op`` on this accelerator (cached: decode steps repeat shapes)."""
        key = (op.name, op.rows, op.k, op.n, op.groups, op.operand_bytes)
        if key not in self._tile_cache:
            self._tile_cache[key] = tuple(self._make_tiles(op))
        return self._tile_cache[key]

    def _make_tiles(self, op: Op) -> list[Tile]:
        acc = self.cfg.accelerator
        if op.kind is OpKind.LINEAR:
            chunk = token_chunk(op, int(acc.activation_buffer.capacity_kib * 1024), self.cfg.workload.activation_bits)
            pe = acc.pe_array
            one_beat = pe.lanes * (op.weight_format.m if op.weight_format.sparse else pe.n)
            buf = acc.weight_buffer
            field = "tile_kib" if buf.tile_bytes < buf.bank_bytes else "bank_kib"  # what limits the tile
            return linear_tiles(op, buf.tile_bytes, pe.cols, chunk, one_beat, f"accelerator.weight_buffer.{field}")
        if op.kind is OpKind.ATTN_MATMUL and op.operand_bytes:
            return attention_tiles(op, acc.kv_buffer.tile_bytes)
        return []

    def weight_descriptors(self):
        """Descriptor chain of the weight DMA: every linear layer's tiles, in order."""
        yield from self._descriptors(OpKind.LINEAR)

    def kv_descriptors(self):
        """Descriptor chain of the KV DMA: attention operands, each after its KV append."""
        yield from self._descriptors(OpKind.ATTN_MATMUL)

    def _descriptors(self, kind: OpKind):
        for step in self.steps:
            states = self.state(step.index)
            by_name = {st.op.name: st for st in states}
            for st in states:
                if st.op.kind is not kind or not st.tiles or self.is_skipped(st):
                    continue
                region = self.placement[st.op.operand_tensor]
                wait = by_name[st.op.operand_tensor].done if kind is OpKind.ATTN_MATMUL else None
                for index in tile_order(len(st.tiles), lambda st=st: st.skipped_tiles):
                    tile = st.tiles[index]
                    st.fetched = index
                    yield Descriptor(region.memory, region.addr + tile.offset, tile.nbytes, st.op.name,
                                     wait_for=wait, on_issue=st.mark_issue, tile=index, step=st.step.index)

    # -- steady-state reuse (tlmsim/engine/protocol.py) --------------------------------

    def boundary_state(self, frame: Frame):
        """Progress of the ops around the boundary (``frame.position`` is a ``Boundary`` of
        tlmsim/models/steady_state.py: the start of a decoder layer, or a tile of an op)."""
        where = frame.position
        if where.layer is None:
            return self._running_ops(where.step)
        return self._layer_progress(where.step, where.layer, frame)

    def _layer_progress(self, step: int, layer: int, frame: Frame):
        """Which ops of layers ``layer - 1`` and ``layer`` are done and since when those of
        ``layer`` run; NO_REPEAT unless all older layers are done and no later one has started
        (and unless the step already skips layers)."""
        start, per = self.layer_start, self.ops_per_layer
        previous, current = start.get(layer - 1), start[layer]
        if step in self.skipped or per is None or previous is None or current != previous + per:
            return NO_REPEAT
        states = self._states.get(step, [])
        older = [st for st in states[:previous] if st.first_issue_ps is not None or st.op.layer is not None]
        if not all(st.done.processed for st in older):
            return NO_REPEAT
        if any(st.first_issue_ps is not None for st in states[current + per:]):
            return NO_REPEAT
        return (tuple((st.done.processed, st.done.triggered) for st in states[previous:current]),
                tuple((st.done.processed, st.done.triggered,
                       None if st.first_issue_ps is None else frame.time(st.first_issue_ps))
                      for st in states[current:current + per]))

    def _running_ops(self, step: int) -> tuple:
        """Which ops have started and are not done yet (in this step and any prefetched one)."""
        out = []
        for index in (step, step + 1):
            for i, st in enumerate(self._states.get(index, ())):
                if st.first_issue_ps is not None and not st.done.processed:
                    out.append((index - step, i, st.done.triggered, tuple(st.skipped_tiles)))
        return tuple(out)

    def can_advance(self, unit: RepeatUnit) -> bool:
        """Only work no reader has reached can be left out: layers none of whose ops the
        controller or a DMA has touched, tiles after the last one the DMA's chain handed out."""
        if unit.kind == LAYER:
            return unit.step not in self.skipped and all(
                st.fetched < 0 and st.first_issue_ps is None for st in self._layer_states(unit))
        if unit.kind == TILE:
            st = self._op_state(unit.step, unit.label)
            return st is not None and not st.skipped_tiles and st.fetched == unit.first - 1
        return True

    def advance(self, unit: RepeatUnit) -> None:
        """Leave the skipped layers or tiles out of the program (every reader reads it lazily)."""
        if unit.kind == LAYER:
            self.skipped[unit.step] = (unit.first, unit.last)
        elif unit.kind == TILE:
            self._op_state(unit.step, unit.label).skipped_tiles[:] = [unit.first, unit.last]

    def _layer_states(self, unit: RepeatUnit) -> list[OpState]:
        states = self._states.get(unit.step, [])
        return states[self.layer_start[unit.first]:self.layer_start[unit.last] + self.ops_per_layer]

    def _op_state(self, step: int, name: str | None) -> OpState | None:
        return next((st for st in self._states.get(step, ()) if st.op.name == name), None)
