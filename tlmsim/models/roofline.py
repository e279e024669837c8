"""Roofline bookkeeping: every op's and step's analytic demands on each resource.

An op's demand on a resource is the time that resource alone needs for the op's work at
its peak rate (bytes / memory bandwidth with DRAM overheads at best, multiplies / PE
array rate, weights / decoder rate, elements / vector lanes). A single op cannot beat its
largest demand (its roofline bound); a step's demand per resource is the sum over its
ops (memory demands from the step's total bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tlmsim.models.decoder import WeightDecoder
from tlmsim.models.memory import Memory
from tlmsim.models.pe_array import PeArray
from tlmsim.models.placement import Placement
from tlmsim.models.program import OpState
from tlmsim.models.vector_unit import VectorUnit
from tlmsim.workloads.ops import OpKind
from tlmsim.workloads.phases import Op, Step


@dataclass
class OpRecord:
    """What one op did: its simulated span and its analytic (roofline) demands."""

    name: str
    kind: OpKind
    layer: int | None
    step: int
    phase: str
    start_ps: int
    end_ps: int
    demands_ps: dict[str, int]
    bytes_by_memory: dict[str, int]

    @property
    def bound_ps(self) -> int:
        """Roofline bound: the largest single-resource demand."""
        return max(self.demands_ps.values(), default=0)

    @property
    def bound_by(self) -> str:
        """The resource with the largest demand."""
        return max(self.demands_ps, key=self.demands_ps.get) if self.demands_ps else "none"


@dataclass
class StepRecord:
    """Timing and roofline totals of one step."""

    step: Step
    start_ps: int
    end_ps: int
    demands_ps: dict[str, int]
    bytes_by_memory: dict[str, int]
    ops: list[OpRecord] = field(default_factory=list)


class Roofline:
    """Demands of ops and steps on one accelerator's memories and compute units."""

    def __init__(self, memories: dict[str, Memory], pe_array: PeArray, decoder: WeightDecoder,
                 vector_unit: VectorUnit, placement: Placement):
        self.memories = memories
        self.pe_array = pe_array
        self.decoder = decoder
        self.vector_unit = vector_unit
        self.placement = placement
        self._demands: dict[tuple, tuple] = {}
        self._shared_demands: dict[tuple[int, int], tuple[dict, dict]] = {}

    def step(self, step: Step, states: list[OpState], shared: set[str], keep_ops: bool
             ) -> tuple[dict[str, int], dict[str, int], list[OpRecord]]:
        """(demands, bytes per memory, op records if ``keep_ops``) of one finished step; the ops
        in ``shared`` (the same in every step with as many new tokens) are summed once."""
        records = []
        if keep_ops:
            demands, moved = self._add_demands({}, {}, states)
            records = [OpRecord(st.op.name, st.op.kind, st.op.layer, st.step.index, st.step.phase, st.first_issue_ps,
                                st.done_ps, *map(dict, self._op_demands(st))) for st in states]
        else:
            key = (step.tokens, step.batch)
            if key not in self._shared_demands:
                self._shared_demands[key] = self._add_demands({}, {}, [st for st in states if st.op.name in shared])
            demands, moved = map(dict, self._shared_demands[key])
            self._add_demands(demands, moved, [st for st in states if st.op.name not in shared])
        for mem, nbytes in moved.items():
            demands[mem] = self.memories[mem].min_transfer_ps(nbytes)
        return demands, moved, records

    def _add_demands(self, demands: dict[str, int], moved: dict[str, int],
                     states: list[OpState]) -> tuple[dict[str, int], dict[str, int]]:
        """Add the compute demands and bytes of ``states`` to the totals (memory demands follow
        from the bytes of the whole step)."""
        for st in states:
            op_demands, op_moved = self._op_demands(st)
            for key, value in op_demands.items():
                if key not in self.memories:
                    demands[key] = demands.get(key, 0) + value
            for mem, nbytes in op_moved.items():
                moved[mem] = moved.get(mem, 0) + nbytes
        return demands, moved

    def _op_demands(self, st: OpState) -> tuple[dict[str, int], dict[str, int]]:
        """(roofline demands, bytes per memory) of one op (remembered for ops that decode steps
        share: the same op and tile objects, or the same vector op size)."""
        op = st.op
        if op.kind is OpKind.LINEAR:
            key = (id(op), id(st.tiles))
        elif op.kind is OpKind.VECTOR:
            key = (op.vector_op, op.elements)
        else:
            key = None
        found = self._demands.get(key) if key is not None else None
        if found is not None:
            return found[2], found[3]
        moved = self.op_bytes(st)
        demands = {mem: self.memories[mem].min_transfer_ps(nbytes) for mem, nbytes in moved.items()}
        demands.update(self.op_compute_demands(op, st))
        if key is not None:
            self._demands[key] = (op, st.tiles, demands, moved)  # op and tiles kept: their ids stay unique
        return demands, moved

    def op_bytes(self, st: OpState) -> dict[str, int]:
        """Bytes the op moves, per memory."""
        op = st.op
        if op.kind.is_matmul and st.tiles:
            return {self.placement[op.operand_tensor].memory: sum(t.nbytes for t in st.tiles)}
        if op.kind.is_memory_op:
            return {self.placement[op.operand_tensor].memory: op.read_bytes + op.write_bytes}
        return {}

    def op_compute_demands(self, op: Op, st: OpState) -> dict[str, int]:
        """Roofline compute demands of an op on the PE array, decoder and vector unit."""
        if op.kind is OpKind.VECTOR:
            return {"vector_unit": self.vector_unit.ideal_ps(op.vector_op, op.elements)}
        if not op.kind.is_matmul or not st.tiles:
            return {}
        demands = {"pe_array": self.pe_array.ideal_ps(op.weight_format, tuple(st.tiles))}
        if op.kind is OpKind.LINEAR:
            demands["decoder"] = self.decoder.ideal_ps(sum(t.stored_weights for t in st.tiles))
        return demands
