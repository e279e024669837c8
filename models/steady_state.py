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
``tests/models/test_steady_state.py`` checks that runs with and without reuse give
identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from tlmsim.models.controller import OpState


@dataclass
class Skip:
    """One run of skipped layers: layers ``first``..``last`` of ``step``, each ``period_ps`` long."""

    step: int
    layer: int  # the simulated layer L, which stands for layer ``last`` (L + k) once skipped
    first: int
    last: int
    at_ps: int  # simulated time of the skip (start of ``layer``)
    period_ps: int

    @property
    def shift_ps(self) -> int:
        """Time the skipped layers take."""
        return (self.last - self.first + 1) * self.period_ps


@dataclass
class _Mark:
    step: int
    layer: int
    at_ps: int
    signature: tuple
    stats: dict


class LayerReuse:
    """Detects the steady state at decoder-layer boundaries and skips repeated layers."""

    def __init__(self, acc):
        self.acc = acc
        self.env: simpy.Environment = acc.env
        self.program = acc.program
        self.enabled = acc.cfg.simulation.reuse_identical_layers and self.program.ops_per_layer is not None
        self.skips: list[Skip] = []
        self.layers_skipped = 0
        self._mark: _Mark | None = None
        self._layer_keys: dict[tuple[int, int], tuple | None] = {}
        self._op_keys: dict[tuple[int, int], tuple] = {}

    # -- detection -------------------------------------------------------------------

    def at_layer_start(self, step, layer: int, states: list[OpState]) -> None:
        """Called by the controller just before it dispatches the first op of ``layer``."""
        if not self.enabled or self.acc.ctx.tracer.enabled:
            self._mark = None
            return
        for dma in (self.acc.weight_dma, self.acc.kv_dma):
            dma.close_intervals()
        now = self.env.now
        mark = _Mark(step.index, layer, now, self.signature(step.index, layer, states, now), self._snapshot())
        previous, self._mark = self._mark, mark
        if (previous is None or previous.step != step.index or previous.layer != layer - 1
                or mark.signature is None or previous.signature != mark.signature
                or step.index in self.program.skipped):
            return
        count = self._identical_layers_after(step.index, layer, states)
        if count > 0:
            self._skip(step.index, layer, count, previous, mark)

    def _identical_layers_after(self, step: int, layer: int, states: list[OpState]) -> int:
        """How many layers after ``layer`` are identical to it and to ``layer - 1``."""
        key = self._layer_key(step, layer, states)
        if key is None or self._layer_key(step, layer - 1, states) != key:
            return 0
        count = 0
        while self._layer_key(step, layer + count + 1, states) == key:
            count += 1
        return count

    def _layer_key(self, step: int, layer: int, states: list[OpState]) -> tuple | None:
        """What decides a layer's simulation: its ops without their names, their tiles, the
        memory of each operand and its address modulo that memory's alignment period."""
        if (step, layer) in self._layer_keys:
            return self._layer_keys[(step, layer)]
        start = self.program.layer_start.get(layer)
        key = None
        if start is not None:
            span = states[start:start + self.program.ops_per_layer]
            if all(st.op.layer == layer for st in span):
                key = tuple(self._op_key(st, states) for st in span)
                if any(part is None for part in key):
                    key = None
        self._layer_keys[(step, layer)] = key
        return key

    def _op_key(self, st: OpState, states: list[OpState]) -> tuple | None:
        key = (id(st.op), id(st.tiles))  # linear ops and their tiles are shared by decode steps
        if key not in self._op_keys:
            self._op_keys[key] = (st.op, st.tiles, self._compute_op_key(st, states))
        return self._op_keys[key][2]

    def _compute_op_key(self, st: OpState, states: list[OpState]) -> tuple | None:
        op = st.op
        deps = tuple(self._relative_name(states[d].op.name, op.layer) for d in op.deps)
        where = None
        if op.operand_tensor is not None:
            region = self.acc.placement[op.operand_tensor]
            align, guard = self.acc.placement.alignment[region.memory]
            if not guard:
                return None  # tensors not aligned to the address-map period: costs depend on place
            where = (region.memory, region.addr % align)
        return (op.kind, deps, op.groups, op.rows, op.k, op.n, op.weight_format, op.operand_bytes, op.vector_op,
                op.elements, op.write_bytes, op.read_bytes, tuple(st.tiles), where)

    def signature(self, step: int, layer: int, states: list[OpState], now: int) -> tuple | None:
        """The whole system's state relative to ``now`` and to ``layer``; None if it cannot
        repeat (work of older layers still pending, or of later layers already started)."""
        ops = self._op_states(step, layer, states, now)
        if ops is None:
            return None
        acc = self.acc
        rel_cmd = lambda cmd: None if cmd is None else self._relative_name(cmd.label, layer)  # noqa: E731
        parts = [ops,
                 acc.weight_dma.state(now, lambda d: self._relative_descriptor(d, step, layer)),
                 acc.kv_dma.state(now, lambda d: self._relative_descriptor(d, step, layer)),
                 acc.weight_buffer.state(now), acc.kv_buffer.state(now),
                 acc.pe_array.state(now, rel_cmd), acc.vector_unit.state(now, rel_cmd),
                 tuple(mem.state(now, lambda label, m=mem: self._relative_channel(label, layer, m))
                       for mem in acc.memories.values()),
                 self._queue(now, layer),
                 tuple(_position(proc) for proc in self._processes())]
        return tuple(parts)

    def _op_states(self, step: int, layer: int, states: list[OpState], now: int) -> tuple | None:
        out = []
        for st in states:
            started, done = st.first_issue_ps is not None, st.done.processed
            if st.op.layer is None:
                if started and not done:
                    return None
                continue
            if st.op.layer < layer - 1 and not done:
                return None
            if st.op.layer > layer and started:
                return None
            if st.op.layer == layer - 1:
                out.append((-1, done, st.done.triggered))
            elif st.op.layer == layer:  # reads of this layer the DMAs have already issued
                out.append((0, done, st.done.triggered, None if not started else st.first_issue_ps - now))
        return tuple(out)

    def _relative_name(self, name: str, layer: int):
        op_layer, position = self._where(name)
        return (None, name) if op_layer is None else (op_layer - layer, position)

    def _where(self, name: str) -> tuple[int | None, int]:
        if not hasattr(self, "_positions"):
            ops = self.program.workload.ops(self.program.steps[0])
            self._positions = {op.name: (op.layer, i - self.program.layer_start.get(op.layer, 0))
                               for i, op in enumerate(ops)}
        return self._positions[name]

    def _relative_descriptor(self, desc, step: int, layer: int):
        if desc is None:
            return None
        st = desc.tag
        return (st.step.index - step, self._relative_name(st.op.name, layer),
                desc.addr - self.acc.placement[st.op.operand_tensor].addr)

    def _relative_channel(self, label: str, layer: int, memory):
        op_layer, _ = self._where(label)
        tensor = self._operand(label)
        base = memory.local_chunk(self.acc.placement[tensor].addr) if tensor else 0
        return self._relative_name(label, layer), base

    def _operand(self, name: str) -> str | None:
        if not hasattr(self, "_operands"):
            ops = self.program.workload.ops(self.program.steps[0])
            self._operands = {op.name: op.operand_tensor for op in ops}
        return self._operands[name]

    def _queue(self, now: int, layer: int) -> tuple:
        """Every scheduled SimPy event: when (relative), what it carries, who waits for it."""
        names = {id(proc): name for name, proc in self._named_processes()}
        out = []
        for when, priority, _eid, event in sorted(self.env._queue, key=lambda e: e[:3]):  # noqa: SLF001
            value = getattr(event, "_value", None)
            if isinstance(value, int) and not isinstance(value, bool):
                value = ("t", value - now)
            elif hasattr(value, "label"):
                value = self._relative_name(value.label, layer)
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
            snap[("channels", name)] = [list(row) for row in mem.channel_ps.get(phase, [])]
        return snap

    def _skip(self, step: int, layer: int, count: int, previous: _Mark, mark: _Mark) -> None:
        period = mark.at_ps - previous.at_ps
        skip = Skip(step, layer, layer + 1, layer + count, mark.at_ps, period)
        self.program.skipped[step] = (skip.first, skip.last)
        self.skips.append(skip)
        self.layers_skipped += count
        self._add_skipped_stats(previous.stats, mark.stats, count)

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
            table = mem.channel_ps.get(phase)
            for ch, (row0, row1) in enumerate(zip(rows0, rows1)):
                table[ch][0] += count * (row1[0] - row0[0])
                table[ch][1] += count * (row1[1] - row0[1])

    # -- simulated time -> real time -------------------------------------------------

    def shift_before(self, t: int, strict: bool = True) -> int:
        """Total time skipped before simulated time ``t``."""
        return sum(s.shift_ps for s in self.skips if (s.at_ps < t if strict else s.at_ps <= t))

    def real_time(self, t: int | None) -> int | None:
        """The time ``t`` of the simulation stands for once skipped layers are put back."""
        return None if t is None else t + self.shift_before(t)

    def finish_step(self, step: int, states: list[OpState]) -> None:
        """Put real times on every op state of a finished step, the skipped ones included."""
        self._layer_keys = {k: v for k, v in self._layer_keys.items() if k[0] > step}
        if len(self._op_keys) > 20_000:  # attention ops are new objects every step
            self._op_keys.clear()
        skip = next((s for s in self.skips if s.step == step), None)
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
    gen = getattr(process, "_generator", None)
    while gen is not None and getattr(gen, "gi_frame", None) is not None:
        out.append((gen.gi_code.co_name, gen.gi_frame.f_lasti))
        gen = getattr(gen, "gi_yieldfrom", None)
    return tuple(out)
