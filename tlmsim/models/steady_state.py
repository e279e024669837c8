"""Steady-state reuse: skip decoder layers whose simulation would repeat the previous one.

A decode step streams 32 identical decoder layers. Once the accelerator settles, the
state of every component at the start of layer L (buffer occupancy, reads in flight,
channel free times, open DRAM rows, refresh debt, queued commands, pending events) is
the state at the start of layer L-1 moved forward by the layer's duration D. The
simulation is deterministic, so from then on every further identical layer takes exactly
D and leaves the same state again: simulating it would only repeat the same events.

At each layer start the controller calls ``at_layer_start``. It compares a *signature*
of the whole system, every time taken relative to now and every address relative to
its tensor, with the signature at the previous layer start. If they are equal and the
next k layers are identical to this one (same ops, tiles, memories, and address
alignment: ``Placement`` aligns every tensor to its memory's address-map period with a
guard, so a layer's DRAM costs do not depend on where it lies), layers L+1..L+k are
dropped from the program; the simulated layer L then stands for layer L+k. The skipped
layers are accounted exactly: every statistic grows by k times its growth over the
last layer, and every timestamp after the skip moves by k x D. Nothing is estimated:
if anything differs (a different refresh phase under ``refresh: windowed``, a DMA that
has not caught up yet) the signatures differ and the layer is simulated.
The same holds inside an op whose tiles repeat (the fp16 ``lm_head``: 250 evenly spaced
1 MiB tiles): ``at_tile_start`` compares signatures tile to tile and skips the remaining
identical tiles, moving the DRAM rows they would have opened along. Traced steps are
reused too: the skipped period's trace records are copied one period apart (renamed to
the layers they stand for). ``tests/models/test_steady_state.py`` checks that runs with
and without reuse give identical results and traces.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from functools import cached_property

import simpy

from tlmsim.models.controller import OpState

MIN_TILE_RUN = 8  # shorter runs of identical tiles are not worth checking
MAX_TILE_TRIES = 12  # tile checkpoints per op before giving up on a steady state


@dataclass
class Skip:
    """One skipped run: layers (or tiles) ``first``..``last`` of ``step``, each ``period_ps`` long."""

    step: int
    layer: int | None  # the simulated layer L, which stands for layer ``last`` (L + k); None: tiles
    first: int
    last: int
    at_ps: int  # simulated time of the skip (start of ``layer``, or of the tile before ``first``)
    period_ps: int

    @property
    def shift_ps(self) -> int:
        """Time the skipped layers take."""
        return (self.last - self.first + 1) * self.period_ps


@dataclass(frozen=True)
class _Frame:
    """What a signature is relative to: a decoder layer, or one tile of an op whose tiles repeat."""

    step: int
    layer: int | None = None
    op: str | None = None
    tile: int = 0
    tile_offset: int = 0  # byte offset of that tile in the op's operand


@dataclass
class _Mark:
    """The system at one layer (or tile) boundary."""

    step: int
    position: int  # the layer (or tile) that starts here
    at_ps: int
    signature: tuple
    stats: dict
    traced: tuple[int, int]  # trace records so far (slices, counters)


class SteadyStateReuse:
    """Detects the steady state at decoder-layer and tile boundaries and skips what repeats."""

    def __init__(self, acc):
        self.acc = acc
        self.env: simpy.Environment = acc.env
        self.program = acc.program
        self.enabled = acc.cfg.simulation.reuse_identical_layers and self.program.ops_per_layer is not None
        self.skips: list[Skip] = []
        self._skip_times: list[int] = []  # when each skip happened
        self._shifts: list[int] = [0]  # time skipped before the i-th skip
        self.layers_skipped = 0
        self._mark: _Mark | None = None
        self.tiles_skipped = 0
        self._tile_mark: tuple[int, _Mark] | None = None
        self._tile_tries: dict[int, int] = {}
        self._tile_runs: dict[int, tuple] = {}

    # -- detection -------------------------------------------------------------------

    def at_layer_start(self, step, layer: int, states: list[OpState]) -> None:
        """Called by the controller just before it dispatches the first op of ``layer``."""
        for dma in (self.acc.weight_dma, self.acc.kv_dma):
            dma.close_intervals()  # with or without reuse: traces split the same way
        if not self.enabled:
            return
        now = self.env.now
        frame = _Frame(step.index, layer=layer)
        signature = self.signature(frame, self._layer_op_states(layer, states, now), now)
        mark = _Mark(step.index, layer, now, signature, self._snapshot(), self.acc.ctx.tracer.mark())
        previous, self._mark = self._mark, mark
        if (previous is None or previous.step != step.index or previous.position != layer - 1
                or mark.signature is None or previous.signature != mark.signature
                or step.index in self.program.skipped):
            return
        count = self._identical_layers_after(layer)
        if count > 0:
            self._skip(step.index, layer, count, previous, mark)

    def at_tile_start(self, cmd, index: int) -> None:
        """Called by the PE array before it waits for tile ``index`` of ``cmd``: skips the
        op's remaining identical tiles once the system state repeats from tile to tile."""
        st = cmd.tag
        # Only ops outside the decoder layers: inside them, skipped layers already account for
        # the repetition, and a tile skip inside the period of a layer skip would shift it.
        if st is None or st.op.layer is not None:
            return
        run = self._tile_run(st, index)
        if run is None:
            return
        for dma in (self.acc.weight_dma, self.acc.kv_dma):
            dma.close_intervals()  # with or without reuse: statistics and traces split the same way
        if (not self.enabled or st.skipped_tiles or self._tile_tries.get(id(st), 0) > MAX_TILE_TRIES
                or not run[0] <= index - 1 < index < run[1]):
            return
        self._tile_tries[id(st)] = self._tile_tries.get(id(st), 0) + 1
        now = self.env.now
        frame = _Frame(st.step.index, op=st.op.name, tile=index, tile_offset=st.tiles[index].offset)
        mark = _Mark(st.step.index, index, now, self.signature(frame, self._running_op_states(st.step.index), now),
                     self._snapshot(), self.acc.ctx.tracer.mark())
        previous, self._tile_mark = self._tile_mark, (id(st), mark)
        if previous is None or previous[0] != id(st) or previous[1].step != mark.step \
                or previous[1].position != index - 1 or mark.signature is None \
                or previous[1].signature != mark.signature:
            return
        dma = self.acc.weight_dma if cmd.decoded else self.acc.kv_dma
        current = dma.current
        if current is None or current.tag is not st or dma.activity != "reserve":
            return  # the DMA is past this op: nothing left to skip
        _, last, stride = run
        count = last - current.tile
        if count < 1:
            return
        self._skip_tiles(st, dma, current, count, stride, previous[1], mark)

    def _tile_run(self, st: OpState, index: int) -> tuple[int, int, int] | None:
        """(first tile, last tile, byte stride) of the run of identical, evenly spaced tiles
        holding tile ``index``, if the stride keeps DRAM costs identical (a multiple of the
        memory's alignment period); else None."""
        runs = self._tile_runs.get(id(st.tiles))
        if runs is None:
            runs = self._tile_runs[id(st.tiles)] = (st.tiles, self._find_tile_runs(st))
        for first, last, stride in runs[1]:
            if first <= index <= last:
                return first, last, stride
        return None

    def _find_tile_runs(self, st: OpState) -> list[tuple[int, int, int]]:
        if st.op.operand_tensor is None:
            return []
        align, _ = self.acc.placement.alignment[self.acc.placement[st.op.operand_tensor].memory]
        tiles, runs, i = st.tiles, [], 0
        shape = lambda t: (t.groups, t.rows, t.k, t.n, t.nbytes, t.stored_weights)  # noqa: E731
        while i + 1 < len(tiles):
            stride, j = tiles[i + 1].offset - tiles[i].offset, i
            while (j + 1 < len(tiles) and shape(tiles[j + 1]) == shape(tiles[i])
                   and tiles[j + 1].offset - tiles[j].offset == stride):
                j += 1
            if j - i + 1 >= MIN_TILE_RUN and align and stride % align == 0:
                runs.append((i, j, stride))
            i = max(j, i + 1)
        return runs

    def _skip_tiles(self, st: OpState, dma, current, count: int, stride: int, previous: _Mark, mark: _Mark) -> None:
        """Skip tiles current+1 .. current+count: the read the DMA is about to issue becomes
        that of tile current+count, and the DRAM rows the op left open move with it."""
        period = mark.at_ps - previous.at_ps
        st.skipped_tiles[:] = [current.tile + 1, current.tile + count]
        dma.current = replace(current, addr=current.addr + count * stride, tile=current.tile + count)
        for mem in self.acc.memories.values():
            mem.move_open_rows(st.op.name, count * stride)
        self._add_skip(Skip(st.step.index, None, current.tile + 1, current.tile + count, mark.at_ps, period))
        self.tiles_skipped += count
        self._add_skipped_stats(previous.stats, mark.stats, count)
        tracer = self.acc.ctx.tracer
        tracer.repeat(previous.traced, mark.traced, count, period, lambda name, _j: name)

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
        workload, placement = self.program.workload, self.acc.placement
        graph, order = workload.graph, workload.node_order
        nodes: dict[int, list[str]] = {}
        for name in order:
            if graph.nodes[name]["layer"] is not None:
                nodes.setdefault(graph.nodes[name]["layer"], []).append(name)
        classes = {}
        for layer, names in nodes.items():
            frame = _Frame(0, layer=layer)
            parts = []
            for name in names:
                data = graph.nodes[name]
                attrs = tuple(sorted((k, self._relative_name(v, frame) if k == "kv_source" else v)
                                     for k, v in data.items() if k not in ("order", "module", "layer")))
                deps = tuple(self._relative_name(order[d], frame) for d in workload.ops_deps(name))
                parts.append((attrs, deps, self._where_placed(name if name in placement.regions else
                                                             data.get("kv_source"))))
            classes[layer] = None if any(p[2] is False for p in parts) else tuple(parts)
        return classes

    def _where_placed(self, tensor: str | None):
        """(memory, address modulo its alignment period) of ``tensor``; False if tensors of that
        memory are not aligned (their costs depend on where they lie)."""
        if tensor is None:
            return None
        region = self.acc.placement[tensor]
        align, _ = self.acc.placement.alignment[region.memory]
        return (region.memory, region.addr % align) if align else False

    def signature(self, frame: _Frame, ops: tuple | None, now: int) -> tuple | None:
        """The whole system's state relative to ``now`` and to ``frame``; None if it cannot
        repeat (``ops``, the op states' part, is None)."""
        if ops is None:
            return None
        acc = self.acc
        rel_cmd = lambda cmd: None if cmd is None else self._relative_name(cmd.label, frame)  # noqa: E731
        rel_desc = lambda desc: self._relative_descriptor(desc, frame)  # noqa: E731
        pe_base = frame.tile if acc.pe_array.cmd is not None and acc.pe_array.cmd.label == frame.op else 0
        parts = [ops,
                 acc.weight_dma.state(now, rel_desc), acc.kv_dma.state(now, rel_desc),
                 acc.weight_buffer.state(now), acc.kv_buffer.state(now),
                 acc.pe_array.state(now, rel_cmd, pe_base), acc.vector_unit.state(now, rel_cmd),
                 tuple(mem.state(now, lambda label, m=mem: self._relative_channel(label, frame, m))
                       for mem in acc.memories.values()),
                 self._queue(now, frame),
                 tuple(_position(proc) for proc in self._processes())]
        return tuple(parts)

    def _layer_op_states(self, layer: int, states: list[OpState], now: int) -> tuple | None:
        """Progress of the ops around a layer boundary; None unless all older layers are done
        and no later layer has started."""
        start, per = self.program.layer_start, self.program.ops_per_layer
        previous, current = start.get(layer - 1), start[layer]
        if previous is None or current != previous + per:
            return None
        if not all(st.done.processed for st in states[:previous] if st.first_issue_ps is not None or st.op.layer is not None):
            return None
        if any(st.first_issue_ps is not None for st in states[current + per:]):
            return None
        return (tuple((st.done.processed, st.done.triggered) for st in states[previous:current]),
                tuple((st.done.processed, st.done.triggered, None if st.first_issue_ps is None else st.first_issue_ps - now)
                      for st in states[current:current + per]))

    def _running_op_states(self, step: int) -> tuple:
        """Which ops have started and are not done yet (in this step and any prefetched one)."""
        out = []
        for index in (step, step + 1):
            for i, st in enumerate(self.program.states_if_built(index)):
                if st.first_issue_ps is not None and not st.done.processed:
                    out.append((index - step, i, st.done.triggered))
        return tuple(out)

    def _relative_name(self, name: str, frame: _Frame):
        if frame.layer is None:
            return name
        op_layer, position = self._where(name)
        return (None, name) if op_layer is None else (op_layer - frame.layer, position)

    def _where(self, name: str) -> tuple[int | None, int]:
        """(layer, position in the layer) of op ``name``; (None, index in the step) outside layers."""
        return self._positions[name]

    @cached_property
    def _step_ops(self):
        """The ops of a step, in order (names, layers and operands are the same in every step)."""
        return self.program.workload.ops(self.program.steps[0])

    @cached_property
    def _positions(self) -> dict[str, tuple[int | None, int]]:
        return {op.name: (op.layer, i - self.program.layer_start.get(op.layer, 0)) for i, op in enumerate(self._step_ops)}

    @cached_property
    def _operands(self) -> dict[str, str | None]:
        return {op.name: op.operand_tensor for op in self._step_ops}

    @cached_property
    def _names(self) -> list[str]:
        return [op.name for op in self._step_ops]

    def _relative_descriptor(self, desc, frame: _Frame):
        if desc is None:
            return None
        st = desc.tag
        base = self.acc.placement[st.op.operand_tensor].addr + (frame.tile_offset if st.op.name == frame.op else 0)
        return (st.step.index - frame.step, self._relative_name(st.op.name, frame), desc.addr - base)

    def _relative_channel(self, label: str, frame: _Frame, memory):
        tensor = self._operands[label]
        base = 0
        if tensor:
            base = memory.local_chunk(self.acc.placement[tensor].addr + (frame.tile_offset if label == frame.op else 0))
        return self._relative_name(label, frame), base


    def _queue(self, now: int, frame: _Frame) -> tuple:
        """Every scheduled SimPy event: when (relative), what it carries, who waits for it."""
        names = {id(proc): name for name, proc in self._named_processes()}
        out = []
        for when, priority, _eid, event in sorted(self.env._queue, key=lambda e: e[:3]):  # noqa: SLF001
            value = event._value  # noqa: SLF001  (SimPy 4 internals, pinned <5: fail loudly if they change)
            if isinstance(value, int) and not isinstance(value, bool):
                value = ("t", value - now)
            elif hasattr(value, "label"):
                value = self._relative_name(value.label, frame)
            else:
                value = type(value).__name__
            waiters = tuple(_describe(cb, names) for cb in (event.callbacks or ()))
            out.append((when - now, priority, type(event).__name__, value, waiters))
        return tuple(out)

    def _named_processes(self):
        acc = self.acc
        return [("controller", acc.controller.process), ("weight_dma", acc.weight_dma.process),
                ("kv_dma", acc.kv_dma.process), ("pe_array", acc.pe_array.process),
                ("vector_unit", acc.vector_unit.process)]

    def _processes(self):
        return [proc for _, proc in self._named_processes()]

    # -- skipping --------------------------------------------------------------------

    def _snapshot(self) -> dict:
        """Every statistic of every component, to measure one layer's contribution."""
        phase = self.acc.ctx.phase
        snap = {}
        for name, comp in self.acc.components.items():
            snap[name] = ({k: v for k, v in comp.stats.time_ps.get(phase, {}).items()},
                          {k: v for k, v in comp.stats.counts.get(phase, {}).items()})
        for name, mem in self.acc.memories.items():
            snap[("channels", name)] = tuple(list(column) for column in mem.channel_ps.get(phase, ([], [])))
        return snap

    def _skip(self, step: int, layer: int, count: int, previous: _Mark, mark: _Mark) -> None:
        period = mark.at_ps - previous.at_ps
        skip = Skip(step, layer, layer + 1, layer + count, mark.at_ps, period)
        self.program.skipped[step] = (skip.first, skip.last)
        self._add_skip(skip)
        self.layers_skipped += count
        self._add_skipped_stats(previous.stats, mark.stats, count)
        tracer = self.acc.ctx.tracer
        tracer.repeat(previous.traced, mark.traced, count, period, self._layer_name)
        # What layers L-1 and L record from now on happens in layers L+k-1 and L+k.
        moved = {layer - 1, layer}
        tracer.rename = lambda name: (self._layer_name(name, count) if self._positions.get(name, (None,))[0] in moved
                                      else name)

    def _layer_name(self, name: str, layers: int) -> str:
        """The name of op ``name``'s counterpart ``layers`` decoder layers later (names that are
        not decoder-layer ops are kept)."""
        op_layer, position = self._positions.get(name, (None, 0))
        if op_layer is None:
            return name
        return self._names[self.program.layer_start[op_layer + layers] + position]

    def _add_skipped_stats(self, before: dict, after: dict, count: int) -> None:
        phase = self.acc.ctx.phase
        for name, comp in self.acc.components.items():
            (t0, c0), (t1, c1) = before[name], after[name]
            for key, value in t1.items():
                if value != t0.get(key, 0):
                    comp.stats.time_ps[phase][key] += count * (value - t0.get(key, 0))
            for key, value in c1.items():
                if value != c0.get(key, 0):
                    comp.stats.counts[phase][key] += count * (value - c0.get(key, 0))
        for name, mem in self.acc.memories.items():
            rows0, rows1 = before[("channels", name)], after[("channels", name)]
            for column, before_, after_ in zip(mem.channel_ps.get(phase, ([], [])), rows0, rows1):
                for ch, (value0, value1) in enumerate(zip(before_, after_)):
                    column[ch] += count * (value1 - value0)

    # -- simulated time -> real time -------------------------------------------------

    def _add_skip(self, skip: Skip) -> None:
        self.skips.append(skip)
        self._skip_times.append(skip.at_ps)
        self._shifts.append(self._shifts[-1] + skip.shift_ps)
        self.acc.ctx.tracer.offset_ps = self._shifts[-1]  # records from now on are this much later

    def shift_before(self, t: int) -> int:
        """Total time skipped before simulated time ``t`` (skips are in time order)."""
        return self._shifts[bisect.bisect_left(self._skip_times, t)]

    def real_time(self, t: int | None) -> int | None:
        """The time ``t`` of the simulation stands for once skipped layers are put back."""
        return None if t is None else t + self.shift_before(t)

    def finish_step(self, step: int, states: list[OpState]) -> None:
        """Put real times on every op state of a finished step, the skipped ones included."""
        self._tile_tries.clear()
        self._tile_mark = None
        self.acc.ctx.tracer.rename = None
        skip = next((s for s in self.skips if s.step == step and s.layer is not None), None)
        special = {}
        if skip is not None:
            before = self.shift_before(skip.at_ps)
            for st in states:
                if st.op.layer == skip.layer - 1:
                    special[id(st)] = before  # layer L-1 is itself, whenever it finished
                elif st.op.layer == skip.layer:
                    special[id(st)] = before + skip.shift_ps  # layer L ran as layer L + k
        for st in states:
            if id(st) in special:
                st.first_issue_ps += special[id(st)]
                st.done_ps += special[id(st)]
            elif not self.program.is_skipped(st):
                st.first_issue_ps, st.done_ps = self.real_time(st.first_issue_ps), self.real_time(st.done_ps)
        if skip is not None:
            self._fill_skipped(skip, states)

    def _fill_skipped(self, skip: Skip, states: list[OpState]) -> None:
        """Layer L+k ran as the simulated layer L; layers L..L+k-1 repeat layer L-1, one
        period apart."""
        per, start = self.program.ops_per_layer, self.program.layer_start
        count = skip.last - skip.first + 1
        simulated = states[start[skip.layer]:start[skip.layer] + per]
        last = states[start[skip.last]:start[skip.last] + per]
        for src, dst in zip(simulated, last):
            dst.first_issue_ps, dst.done_ps = src.first_issue_ps, src.done_ps
        model = states[start[skip.layer - 1]:start[skip.layer - 1] + per]
        for j in range(1, count + 1):
            target = states[start[skip.layer - 1 + j]:start[skip.layer - 1 + j] + per]
            for src, dst in zip(model, target):
                dst.first_issue_ps = src.first_issue_ps + j * skip.period_ps
                dst.done_ps = src.done_ps + j * skip.period_ps


def _describe(callback, names: dict[int, str]) -> tuple:
    """A scheduled event's waiter in terms that do not depend on object identity."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, simpy.Process):
        gen = owner._generator  # noqa: SLF001
        return ("process", names.get(id(owner), gen.__qualname__), _position(owner))
    if owner is not None:
        return (type(owner).__name__, callback.__func__.__name__, getattr(owner, "name", None))
    return ("function", getattr(callback, "__qualname__", repr(type(callback))))


def _position(process: simpy.Process) -> tuple:
    """Where a process's generator (and the generators it delegates to) is suspended."""
    out = []
    gen = process._generator  # noqa: SLF001
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        out.append((gen.gi_code.co_name, gen.gi_frame.f_lasti))
        gen = getattr(gen, "gi_yieldfrom", None)
    return tuple(out)
