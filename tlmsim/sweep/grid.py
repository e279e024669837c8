"""Sweep axes and points: lazy grids (never expanded), the cartesian product one point at a
time, and the sample of points validated before a sweep runs."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tlmsim.engine.errors import ConfigError
from tlmsim.engine.yamlio import load_yaml_text


def parse_yaml(text: str, source: str):
    """Parse one YAML document of sweep input (the one place sweeps read YAML; ConfigError
    naming ``source`` if it is not valid or not accepted, see tlmsim.engine.yamlio)."""
    return load_yaml_text(text, source)


# ---------------------------------------------------------------- axes


class Grid(Sequence):
    """Evenly spaced values computed on demand: a grid of 10^8 values costs no memory."""

    @property
    def size(self) -> int:
        """How many values the grid has (any size: it is never expanded to count them)."""
        raise NotImplementedError

    @property
    def definition(self) -> dict:
        """The grid's defining numbers (what a fingerprint hashes)."""
        raise NotImplementedError

    def value(self, i: int):
        """The i-th value, 0 <= i < size."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        if not isinstance(i, int):
            raise TypeError("a grid is indexed by int (it has no slices)")
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(i)
        return self.value(i)


@dataclass(frozen=True, eq=True)
class LinearGrid(Grid):
    """start, start + step, ... up to stop (inclusive when the step lands on it)."""

    start: int | float
    stop: int | float
    step: int | float

    @property
    def exact(self) -> bool:
        """True when every number is an int (the values are then exact ints)."""
        return all(isinstance(v, int) for v in (self.start, self.stop, self.step))

    @property
    def size(self) -> int:
        if self.exact:
            return (self.stop - self.start) // self.step + 1
        return math.floor((self.stop - self.start) / self.step + 1e-9) + 1  # 0.1:0.3:0.1 has 3 values

    @property
    def definition(self) -> dict:
        return {"linear": [self.start, self.stop, self.step]}

    def value(self, i: int):
        x = self.start + i * self.step
        return x if self.exact else _tidy(x)


@dataclass(frozen=True, eq=True)
class LogGrid(Grid):
    """count values spaced geometrically from start to stop (both included)."""

    start: float
    stop: float
    count: int

    @property
    def size(self) -> int:
        return self.count

    @property
    def definition(self) -> dict:
        return {"log": [self.start, self.stop, self.count]}

    def value(self, i: int) -> float:
        return _tidy(self.start * (self.stop / self.start) ** (i / (self.count - 1)))


@dataclass(frozen=True)
class Axis:
    """One swept config field and its values (a tuple, or a Grid computed on demand)."""

    field: str
    values: Sequence

    @property
    def size(self) -> int:
        """Number of values (computed, not counted)."""
        return self.values.size if isinstance(self.values, Grid) else len(self.values)

    @property
    def swept(self) -> bool:
        """True if the axis has more than one value (a column of interest)."""
        return self.size > 1

    @property
    def definition(self):
        """What defines the values: a grid's numbers or the list itself."""
        return self.values.definition if isinstance(self.values, Grid) else list(self.values)


def parse_axis(item: str) -> Axis:
    """Parse ``field=SPEC`` (grid, log-grid, list or single value) into an Axis (never expanded)."""
    field, sep, spec = item.partition("=")
    shown = item if len(item) <= 80 else item[:77] + "..."  # a message stays one readable line
    if not sep or not field or not spec:
        raise ConfigError(f"--set '{shown}' must look like section.field=a:b:step, log:a:b:n, [x,y] or a value")
    try:
        values = _values(spec.strip(), f"--set '{shown}'")
    except (ValueError, ZeroDivisionError) as err:
        raise ConfigError(f"--set '{shown}': {err}") from None
    axis = Axis(field, values)
    if axis.size < 1:
        raise ConfigError(f"--set '{shown}' gives no values; check that the range is not empty")
    return axis


def _values(spec: str, source: str) -> Sequence:
    if spec.startswith("log:"):
        return _log_grid(spec[4:])
    if spec.startswith("[") and spec.endswith("]"):
        values = parse_yaml(spec, source)
        if not isinstance(values, list):
            raise ValueError(f"'{spec}' is not a list like [1, 2, 3]")
        _check_finite(values)
        return tuple(values)
    if ":" in spec and all(_is_number(p) for p in spec.split(":")):
        return _linear_grid(spec)  # (YAML alone would read "1:2" as the base-60 number 62)
    value = parse_yaml(spec, source)
    _check_finite([value])
    return (value,)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(value) -> bool:
    """False for inf, nan, and ints or numeric strings beyond the float range (1e400)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str) and _is_number(value):
        return math.isfinite(float(value))
    return True


def _check_finite(values: list) -> None:
    """Refuse non-finite numbers anywhere in parsed YAML values (walked without recursion)."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += value.values()
        elif isinstance(value, list):
            stack += value
        elif not _finite(value):
            raise ValueError(f"{value!r} is not a finite number")


def _number(text: str) -> int | float:
    """A finite int or float from ``text`` (ValueError otherwise)."""
    text = text.strip()
    if len(text) > 40:
        raise ValueError(f"'{text[:20]}...' is not a number of reasonable size")
    try:
        value = int(text)
    except ValueError:
        value = float(text)
    if not _finite(value):
        raise ValueError(f"'{text}' is not a finite number")
    return value


def _numbers(spec: str, count: int, what: str) -> list[int | float]:
    parts = spec.split(":")
    if len(parts) != count or not all(_is_number(p) for p in parts):
        raise ValueError(f"'{spec}' must be {what}")
    return [_number(p) for p in parts]


def _linear_grid(spec: str) -> LinearGrid:
    start, stop, step = _numbers(spec, 3, "start:stop:step")
    if step <= 0 or stop < start:
        raise ValueError(f"'{spec}' needs step > 0 and stop >= start")
    if not math.isfinite((stop - start) / step):
        raise ValueError(f"'{spec}' has too many values; use a larger step")
    return LinearGrid(start, stop, step)


def _log_grid(spec: str) -> LogGrid:
    start, stop, count = _numbers(spec, 3, "log:start:stop:count")
    if start <= 0 or stop <= start or not isinstance(count, int) or count < 2:
        raise ValueError(f"'log:{spec}' needs 0 < start < stop and an integer count >= 2")
    if not math.isfinite(stop / start):
        raise ValueError(f"'log:{spec}': stop / start is beyond the float range")
    return LogGrid(float(start), float(stop), count)


def _tidy(x: float) -> float:
    """Round away float noise (0.30000000000000004) so values print and hash cleanly."""
    return float(f"{x:.12g}")


# ---------------------------------------------------------------- points


def grid_size(axes: list[Axis]) -> int:
    """Number of points of the cartesian product (computed, nothing built)."""
    return math.prod(a.size for a in axes)


def point_at(axes: list[Axis], index: int) -> dict:
    """The index-th point of the product, first axis varying slowest."""
    picked = {}
    for axis in reversed(axes):
        index, i = divmod(index, axis.size)
        picked[axis.field] = axis.values[i]
    return {a.field: picked[a.field] for a in axes}


def points(axes: list[Axis]) -> Iterator[dict]:
    """Cartesian product of the axes, first axis varying slowest, one {field: value} at a time."""
    for index in range(grid_size(axes)):
        yield point_at(axes, index)


def sample_points(axes: list[Axis]) -> Iterator[dict]:
    """The points validated before a sweep runs: each axis's first and last value (every value
    of a list) with the other axes at their first value. Grids are monotone, so a range
    limit any grid value breaks, its first or last value breaks too."""
    first = {a.field: a.values[0] for a in axes}
    seen = set()
    for axis in axes:
        picks = range(axis.size) if isinstance(axis.values, tuple) else (0, axis.size - 1)
        for i in picks:
            point = {**first, axis.field: axis.values[i]}
            if point_key(point) not in seen:
                seen.add(point_key(point))
                yield point
    if not axes:
        yield first


def point_key(point: dict) -> str:
    """Canonical identity of a point (used to resume)."""
    return json.dumps(point, sort_keys=True)


def count_text(n: int) -> str:
    """A point count for a message: 12,345, or ~10^15 when it is astronomically large."""
    return f"{n:,}" if n < 10**12 else f"~10^{int(n.bit_length() * math.log10(2))}"
