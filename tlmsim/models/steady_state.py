"""Steady-state reuse of a decoder program: which layers and tiles repeat, and where.

A decode step streams 32 identical decoder layers. Once the accelerator settles, the
state of every component at the start of layer L is the state at the start of layer L-1
moved forward by the layer's duration D. The simulation is deterministic, so from then on
every further identical layer takes exactly D and leaves the same state again.

The protocol that decides "the same state" is generic (tlmsim/reuse.py): every component
declares its boundary state relative to a ``Frame``. This module is the decoder-specific
part behind it:

* ``Boundary`` is a frame's position: the start of decoder layer L of a step (names are
  taken relative to L: (layers after L, position in the layer); addresses relative to the
  op's operand tensor), or tile i of an op whose tiles repeat (the fp16 ``lm_head``: 250
  evenly spaced 1 MiB tiles; addresses relative to tile i's).
* ``SteadyStateReuse`` marks every layer start (``at_layer_start``, from the controller)
  and, inside such ops, every tile start (``at_tile_start``, from the PE array). When a
  mark's signature equals the previous one and the next k layers are identical to this
  one (same ops, tiles, memories and address alignment: ``Placement`` aligns every tensor
  to its memory's address-map period with a guard, so a layer's DRAM costs do not depend on
  where it lies), the engine skips layers L+1..L+k: the program leaves them out, and the
  simulated layer L stands for layer L+k. Tiles likewise: the DMA's next read becomes that
  of the last skipped tile and the DRAM rows move along.
* After each step, ``finish_step`` gives every op its real times: skipped layers are
  copies of the last period, one period apart. Statistics and traces are put back by the
  engine at the end of the run.

Nothing is estimated: if anything differs (a different refresh phase under
``refresh: windowed``, a DMA that has not caught up yet) the signatures differ and the
layer is simulated. ``tests/models/test_steady_state.py`` checks that runs with and without
reuse give identical results and traces.
"""

from __future__ import annotations

import math
from functools import cached_property

from tlmsim.engine.component import SimContext
from tlmsim.engine.protocol import Frame, RepeatUnit
from tlmsim.engine.reuse import Mark, ReuseEngine
from tlmsim.models.placement import Placement
from tlmsim.models.program import LAYER, TILE, OpState, Program

MIN_TILE_RUN = 8  # shorter runs of identical tiles are not worth checking
MAX_TILE_PERIOD = 8  # tiles per repeating period at most (else the run is simulated in full)
# Tile checkpoints: every tile of the first EARLY_TILE_CHECKS of a run (a steady state found at
# once), then a pair of consecutive tiles every TILE_CHECK_EVERY (one reached after a long
# transient, e.g. a deep buffer draining slowly), so checks cost 2 / TILE_CHECK_EVERY of the tiles.
EARLY_TILE_CHECKS = 12
TILE_CHECK_EVERY = 16


class Layout:
    """Where every op of a step lies: its layer and position in it, its operand's address."""

    def __init__(self, program: Program, placement: Placement):
        ops = program.workload.ops(program.steps[0])  # names, layers and operands are the same every step
        self.names = [op.name for op in ops]
        self.positions = {op.name: (op.layer, i - program.layer_start.get(op.layer, 0)) for i, op in enumerate(ops)}
        self.bases = {op.name: placement[op.operand_tensor].addr if op.operand_tensor else 0 for op in ops}
        self.layer_start = program.layer_start

    def layer_name(self, name: str, layers: int) -> str:
        """The name of op ``name``'s counterpart ``layers`` decoder layers later (names that are
        not decoder-layer ops are kept)."""
        op_layer, position = self.positions.get(name, (None, 0))
        if op_layer is None:
            return name
        return self.names[self.layer_start[op_layer + layers] + position]


class Boundary:
    """A frame's position: the start of decoder layer ``layer`` of ``step``, or tile ``tile``
    of op ``op`` (whose bytes start ``tile_offset`` into its operand)."""

    __slots__ = ("layout", "step", "layer", "op", "tile", "tile_offset")

    def __init__(self, layout: Layout, step: int, layer: int | None = None, op: str | None = None, tile: int = 0,
                 tile_offset: int = 0):
        self.layout, self.step, self.layer, self.op, self.tile, self.tile_offset = \
            layout, step, layer, op, tile, tile_offset

    def name(self, label: str, step: int | None = None):
        """(layers after this one, position in the layer) of a layer op; (None, name) of another."""
        if self.layer is None:
            relative = label
        else:
            op_layer, position = self.layout.positions[label]
            relative = (None, label) if op_layer is None else (op_layer - self.layer, position)
        return relative if step is None else (step - self.step, relative)

    def base(self, label: str) -> int:
        """The address of the op's operand (of this tile, for the boundary's own op)."""
        return self.layout.bases.get(label, 0) + (self.tile_offset if label == self.op else 0)

    def index(self, label: str, unit: int) -> int:
        """Tile ``unit`` of op ``label``, counted from this boundary's tile for its own op."""
        return unit - self.tile if label == self.op else unit


class SteadyStateReuse:
    """Detects the steady state at decoder-layer and tile boundaries and skips what repeats."""

    def __init__(self, ctx: SimContext, program: Program, placement: Placement, enabled: bool):
        self.env = ctx.env
        self.program = program
        self.placement = placement
        reason = None
        if not enabled:
            reason = "off in the config (simulation.reuse_identical_layers: false)"
        elif program.ops_per_layer is None:
            reason = "the program has no decoder layers of equal size"
        self.engine = ReuseEngine(ctx, reason is None, reason)
        self.layout = Layout(program, placement)
        self.layers_skipped = 0
        self.tiles_skipped = 0
        self._mark: tuple[int, int, Mark] | None = None  # (step, layer, mark) at the last layer start
        self._tile_marks_of: tuple[int, int] | None = None  # (id of op state, step) of the tile marks kept
        self._tile_marks: dict[int, Mark] = {}  # tile -> mark, until the tile a period later compares with it
        self._tile_runs: dict[int, tuple] = {}

    @property
    def disabled_reason(self) -> str | None:
        """Why reuse was off for this run (None: it was on)."""
        return self.engine.disabled_reason

    # -- layers ----------------------------------------------------------------------

    def at_layer_start(self, step, layer: int, states: list[OpState]) -> None:
        """Called by the controller just before it dispatches the first op of ``layer``."""
        self.engine.boundary()  # with or without reuse: records split the same way
        if not self.engine.enabled:
            return
        mark = self.engine.mark(Frame(self.env.now, Boundary(self.layout, step.index, layer=layer)))
        previous, self._mark = self._mark, (step.index, layer, mark)
        if previous is None or previous[:2] != (step.index, layer - 1) or not self.engine.repeats(previous[2], mark):
            return
        count = self._identical_layers_after(layer)
        if count > 0:
            self._skip_layers(step.index, layer, count, previous[2], mark)

    def _skip_layers(self, step: int, layer: int, count: int, previous: Mark, mark: Mark) -> None:
        """Skip layers layer+1 .. layer+count: what layers L-1 and L record from now on happens
        in layers L+k-1 and L+k."""
        moved = {layer - 1, layer}
        positions, layer_name = self.layout.positions, self.layout.layer_name

        def later(name: str) -> str:
            return layer_name(name, count) if positions.get(name, (None,))[0] in moved else name

        unit = RepeatUnit(LAYER, step, layer + 1, layer + count)
        if self.engine.skip(unit, previous, mark, copy_name=layer_name, later_name=later) is not None:
            self.layers_skipped += count

    def _identical_layers_after(self, layer: int) -> int:
        """How many layers after ``layer`` are identical to it and to ``layer - 1``."""
        classes = self._layer_classes
        key = classes.get(layer)
        if key is None or classes.get(layer - 1) != key:
            return 0
        count = 0
        while classes.get(layer + count + 1) == key:
            count += 1
        return count

    @cached_property
    def _layer_classes(self) -> dict[int, tuple | None]:
        """Per decoder layer, everything that decides its simulation apart from names: each
        node's attributes (sizes are the same functions of tokens and KV length), its
        dependencies relative to the layer, and where its operand lies modulo the memory's
        alignment period. Equal classes simulate identically in every step."""
        workload, placement = self.program.workload, self.placement
        graph, order = workload.graph, workload.node_order
        nodes: dict[int, list[str]] = {}
        for name in order:
            if graph.nodes[name]["layer"] is not None:
                nodes.setdefault(graph.nodes[name]["layer"], []).append(name)
        classes = {}
        for layer, names in nodes.items():
            where = Boundary(self.layout, 0, layer=layer)
            parts = []
            for name in names:
                data = graph.nodes[name]
                attrs = tuple(sorted((k, where.name(v) if k == "kv_source" else v)
                                     for k, v in data.items() if k not in ("order", "module", "layer")))
                deps = tuple(where.name(order[d]) for d in workload.ops_deps(name))
                parts.append((attrs, deps, self._where_placed(name if name in placement.regions else
                                                             data.get("kv_source"))))
            classes[layer] = None if any(p[2] is False for p in parts) else tuple(parts)
        return classes

    def _where_placed(self, tensor: str | None):
        """(memory, address modulo its alignment period) of ``tensor``; False if tensors of that
        memory are not aligned (their costs depend on where they lie)."""
        if tensor is None:
            return None
        region = self.placement[tensor]
        align, _ = self.placement.alignment[region.memory]
        return (region.memory, region.addr % align) if align else False

    # -- tiles -----------------------------------------------------------------------

    def at_tile_start(self, cmd, index: int) -> None:
        """Called by the PE array before it waits for tile ``index`` of ``cmd``: skips the
        op's remaining identical tiles once the system state repeats from one tile period to
        the next (one tile, or a few whose strides add up to the memory's alignment period)."""
        st = self.program.state(cmd.work[0])[cmd.work[1]]
        # Only ops outside the decoder layers: inside them, skipped layers already account for
        # the repetition, and a tile skip inside the period of a layer skip would shift it.
        if st is None or st.op.layer is not None:
            return
        run = self._tile_run(st, index)
        if run is None:
            return
        self.engine.boundary()  # with or without reuse: records split the same way
        first, last, stride, period = run
        offset = index - first
        checked = offset <= EARLY_TILE_CHECKS + period or offset % TILE_CHECK_EVERY in (0, period)
        inside = first <= index - period and index < last
        if not self.engine.enabled or st.skipped_tiles or not checked or not inside:
            return
        where = Boundary(self.layout, st.step.index, op=st.op.name, tile=index, tile_offset=st.tiles[index].offset)
        mark = self.engine.mark(Frame(self.env.now, where))
        if self._tile_marks_of != (id(st), st.step.index):
            self._tile_marks_of, self._tile_marks = (id(st), st.step.index), {}
        previous = self._tile_marks.get(index - period)
        self._tile_marks = {t: m for t, m in self._tile_marks.items() if t > index - period}
        self._tile_marks[index] = mark
        if previous is None or not self.engine.repeats(previous, mark):
            return
        # The DMA holds tile ``fetched`` (not issued yet): it becomes the last skipped tile.
        periods = (last - st.fetched) // period
        if periods < 1:
            return  # the DMA is (nearly) past this run: nothing left to skip
        unit = RepeatUnit(TILE, st.step.index, st.fetched + 1, st.fetched + periods * period, label=st.op.name,
                          stride_bytes=stride, units_per_period=period)
        if self.engine.skip(unit, previous, mark) is not None:
            self.tiles_skipped += unit.count

    def _tile_run(self, st: OpState, index: int) -> tuple[int, int, int, int] | None:
        """(first tile, last tile, byte stride, tiles per period) of the run of identical,
        evenly spaced tiles holding tile ``index``, if DRAM costs repeat every few tiles (their
        strides add up to a multiple of the memory's alignment period); else None."""
        runs = self._tile_runs.get(id(st.tiles))
        if runs is None:
            runs = self._tile_runs[id(st.tiles)] = (st.tiles, self._find_tile_runs(st))
        for run in runs[1]:
            if run[0] <= index <= run[1]:
                return run
        return None

    def _find_tile_runs(self, st: OpState) -> list[tuple[int, int, int, int]]:
        if st.op.operand_tensor is None:
            return []
        align, _ = self.placement.alignment[self.placement[st.op.operand_tensor].memory]
        tiles, runs, i = st.tiles, [], 0
        shape = lambda t: (t.groups, t.rows, t.k, t.n, t.nbytes, t.stored_weights)  # noqa: E731
        while i + 1 < len(tiles):
            stride, j = tiles[i + 1].offset - tiles[i].offset, i
            while (j + 1 < len(tiles) and shape(tiles[j + 1]) == shape(tiles[i])
                   and tiles[j + 1].offset - tiles[j].offset == stride):
                j += 1
            period = align // math.gcd(stride, align) if align and stride > 0 else 0
            if 0 < period <= MAX_TILE_PERIOD and j - i + 1 >= MIN_TILE_RUN + period - 1:
                runs.append((i, j, stride, period))
            i = max(j, i + 1)
        return runs

    # -- putting skipped work back -----------------------------------------------------

    def real_time(self, t: int | None) -> int | None:
        """The time ``t`` of the simulation stands for once skipped work is put back."""
        return self.engine.real_time(t)

    def finish(self) -> None:
        """After the run: statistics and traces get the skipped work back."""
        self.engine.finish()

    def finish_step(self, step: int, states: list[OpState]) -> None:
        """Put real times on every op state of a finished step, the skipped ones included."""
        self._tile_marks_of, self._tile_marks = None, {}
        self.engine.end_renames()
        skip = next((s for s in self.engine.skips if s.unit.kind == LAYER and s.unit.step == step), None)
        special = {}
        if skip is not None:
            before, layer = self.engine.shift_before(skip.at_ps), skip.unit.first - 1
            for st in states:
                if st.op.layer == layer - 1:
                    special[id(st)] = before  # layer L-1 is itself, whenever it finished
                elif st.op.layer == layer:
                    special[id(st)] = before + skip.shift_ps  # layer L ran as layer L + k
        for st in states:
            if id(st) in special:
                st.first_issue_ps += special[id(st)]
                st.done_ps += special[id(st)]
            elif not self.program.is_skipped(st):
                st.first_issue_ps, st.done_ps = self.real_time(st.first_issue_ps), self.real_time(st.done_ps)
        if skip is not None:
            self._fill_skipped(skip.unit, skip.period_ps, states)

    def _fill_skipped(self, unit: RepeatUnit, period_ps: int, states: list[OpState]) -> None:
        """Layer L+k ran as the simulated layer L; layers L..L+k-1 repeat layer L-1, one
        period apart."""
        per, start = self.program.ops_per_layer, self.program.layer_start
        layer = unit.first - 1
        simulated = states[start[layer]:start[layer] + per]
        last = states[start[unit.last]:start[unit.last] + per]
        for src, dst in zip(simulated, last):
            dst.first_issue_ps, dst.done_ps = src.first_issue_ps, src.done_ps
        model = states[start[layer - 1]:start[layer - 1] + per]
        for j in range(1, unit.count + 1):
            target = states[start[layer - 1 + j]:start[layer - 1 + j] + per]
            for src, dst in zip(model, target):
                dst.first_issue_ps = src.first_issue_ps + j * period_ps
                dst.done_ps = src.done_ps + j * period_ps
