"""The steady-state reuse protocol: what every participant declares (tlmsim/engine/reuse.py runs it).

A participant (every ``Component``, plus state holders the application registers with
``SimContext.register``) declares per class which instance attributes are reuse state
(``REUSE_STATE``), fixed wiring set once in ``__init__`` (``WIRING``) and memo tables of pure
functions (``CACHES``). ``boundary_state(frame)`` returns its reuse state with every time
relative to ``frame.now`` and every name and address relative to the frame's ``Position``
(which the application supplies); the default, ``UNKNOWN``, turns reuse off. To skip a
``RepeatUnit``, each participant ``advance``s past it itself. ``declaration_problems`` is the
completeness check: it looks at attribute names only, never at values.
"""

from __future__ import annotations

import gc
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar, Protocol


class _Sentinel:
    """A named marker value (compared by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN = _Sentinel("UNKNOWN")  # "I do not declare my state": reuse is off for the run
NO_REPEAT = _Sentinel("NO_REPEAT")  # "my state here cannot repeat": no skip at this boundary


class Position(Protocol):
    """Where a boundary lies in the application's work; relates names and addresses to it."""

    def name(self, label: str, step: int | None = None) -> Hashable:
        """Work ``label`` (of program step ``step``, if given) relative to the boundary."""

    def base(self, label: str) -> int:
        """The address that addresses of work ``label`` are taken relative to."""

    def index(self, label: str, unit: int) -> int:
        """Unit ``unit`` (e.g. a tile) of work ``label`` relative to the boundary."""


@dataclass(frozen=True)
class Frame:
    """A boundary: the time ``now`` and a ``position`` in the application's work."""

    now: int
    position: Position

    def time(self, t: int) -> int:
        """``t`` relative to the boundary (negative: before it)."""
        return t - self.now

    def name(self, label: str, step: int | None = None) -> Hashable:
        """Work ``label`` relative to the boundary."""
        return self.position.name(label, step)

    def base(self, label: str) -> int:
        """The address that addresses of ``label`` are relative to."""
        return self.position.base(label)

    def offset(self, label: str, addr: int) -> int:
        """Address ``addr`` of work ``label`` relative to the boundary."""
        return addr - self.position.base(label)

    def index(self, label: str, unit: int) -> int:
        """Unit ``unit`` of work ``label`` relative to the boundary."""
        return self.position.index(label, unit)


@dataclass(frozen=True)
class RepeatUnit:
    """Units ``first``..``last`` of a run of identical units of work, to be skipped: the unit
    simulated just before them stands for ``last``. What a unit is belongs to the application
    (``kind``: a decoder layer of a step, a tile of an op)."""

    kind: str
    step: int  # the program step the run lies in
    first: int
    last: int
    label: str | None = None  # the work the units belong to, whose addresses move with the skip
    stride_bytes: int = 0  # address distance from one unit to the next
    units_per_period: int = 1  # units from one repeating state to the next (tiles whose addresses
    #                            realign with the memory's address map only every few tiles)

    def __post_init__(self) -> None:
        if self.count % self.units_per_period:
            raise ValueError(f"{self.count} units are not whole periods of {self.units_per_period}")

    @property
    def count(self) -> int:
        """How many units are skipped."""
        return self.last - self.first + 1

    @property
    def periods(self) -> int:
        """How many repeated periods the skipped units are."""
        return self.count // self.units_per_period


class Stateful:
    """A participant in exact reuse: it declares its attributes and its boundary state."""

    REUSE_STATE: ClassVar[tuple[str, ...]] = ()  # decides the future: serialized by boundary_state
    WIRING: ClassVar[tuple[str, ...]] = ()  # set once in __init__ (references, config, constants)
    CACHES: ClassVar[tuple[str, ...]] = ()  # memo tables of pure functions: never change a result

    def boundary_state(self, frame: Frame) -> Hashable:
        """Every reuse-state value relative to ``frame`` (``NO_REPEAT`` if it cannot repeat)."""
        return UNKNOWN

    def close_intervals(self) -> None:
        """Record open intervals up to now and reopen them (at every boundary, reuse on or off,
        so records split the same way either way)."""

    def can_advance(self, unit: RepeatUnit) -> bool:
        """False if this participant cannot move past ``unit`` (it has already reached it)."""
        return True

    def advance(self, unit: RepeatUnit) -> None:
        """Move whatever this participant holds of the repeating work past the skipped units."""


@cache
def _declared(cls: type, kinds: tuple[str, ...] = ("REUSE_STATE", "WIRING", "CACHES")) -> frozenset[str]:
    """Every attribute the classes of ``cls``'s MRO declare as one of ``kinds``."""
    return frozenset(name for c in cls.__mro__ for kind in kinds for name in c.__dict__.get(kind, ()))


@cache
def _instance_names(cls: type) -> tuple[str, ...]:
    """Declared names no class of the MRO defines: they can only be instance attributes."""
    return tuple(sorted(n for n in _declared(cls) if not any(n in c.__dict__ for c in cls.__mro__)))


_ABSENT = object()


def undeclared(obj: object) -> list[str]:
    """Instance attributes of ``obj`` that its classes declare neither way.

    ``vars(obj)`` would make CPython (3.11) move the object's attribute values into a dict
    for good, and every later attribute access of these hot objects about twice as slow. So
    the objects ``obj`` refers to (``gc.get_referents``: its attribute values and its class)
    are compared with its declared attributes' values first; only if they differ are the
    names read.
    """
    values = [v for n in _instance_names(type(obj)) if (v := getattr(obj, n, _ABSENT)) is not _ABSENT]
    if sorted(map(id, gc.get_referents(obj))) == sorted(map(id, [*values, type(obj)])):
        return []
    declared = _declared(type(obj))
    return [attr for attr in vars(obj) if attr not in declared]


def owned_parts(part: object, name: str, registered: frozenset[int]) -> list[tuple[object, str]]:
    """The Stateful parts ``part`` holds in its reuse state and that are not registered
    themselves (its boundary_state serializes them), with their names, recursively."""
    out = []
    for attr in sorted(_declared(type(part), ("REUSE_STATE",))):
        value = getattr(part, attr, None)
        if isinstance(value, Stateful) and id(value) not in registered:
            out += [(value, f"{name}.{attr}"), *owned_parts(value, f"{name}.{attr}", registered)]
    return out


def declaration_problems(part: object, name: str, registered: frozenset[int] = frozenset()) -> list[str]:
    """What ``part`` (shown as ``name``) fails to declare: each attribute declared neither way
    (its own and its owned parts'), and for a registered participant each class that declares
    reuse state without serializing it in boundary_state."""
    problems = []
    for obj, path in [(part, name), *owned_parts(part, name, registered)]:
        problems += [f"{path} has undeclared state {attr!r}" for attr in undeclared(obj)]
    if id(part) in registered:
        problems += [f"{name} declares reuse state in {cls.__name__}, which does not define boundary_state"
                     for cls in type(part).__mro__ if cls.__dict__.get("REUSE_STATE")
                     and "boundary_state" not in cls.__dict__]
    return problems
