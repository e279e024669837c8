"""Safe YAML input: the one way tlmsim reads user YAML (config files, presets, ``--set`` values).

On top of ``yaml.SafeLoader`` (plain data only, no Python objects; libyaml's when PyYAML
has it) it refuses what makes YAML input ambiguous or expensive, each with one line that
says where and what to do:

* anchors and aliases (``&a`` / ``*a``): a 600-byte "billion laughs" file would expand
  to gigabytes; it is refused at its first anchor, before anything is expanded;
* merge keys (``<<``): they only make sense with aliases;
* duplicate mapping keys: PyYAML silently keeps the last one;
* YAML 1.1 number surprises, both ways: ``2:4`` (an N:M pattern) stays text instead of
  the base-60 number 124, and ``1e9`` is the number it looks like, not text;
* nesting deeper than ``MAX_DEPTH`` (the composer is recursive);
* input above ``MAX_BYTES`` (1 MiB; configs are a few KiB), non-UTF-8 or binary files,
  directories and other non-regular files (a pipe would block forever).

Every problem raises ``ConfigError``; syntax errors name the line and column.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml.nodes import MappingNode

from tlmsim.engine.errors import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB: far above any real config, far below a slow parse
MAX_DEPTH = 64  # configs nest 4 levels; the limit keeps the recursive composer safe
MERGE_TAG = "tag:yaml.org,2002:merge"
FLOAT_TAG = "tag:yaml.org,2002:float"
INT_TAG = "tag:yaml.org,2002:int"
STR_TAG = "tag:yaml.org,2002:str"
# YAML 1.1 (PyYAML) reads 1e9 and 2.5e-3 as text: its floats need a dot and a signed
# exponent. People (and YAML 1.2) mean numbers; strict config fields would refuse text.
EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


def clip(text: str, limit: int = 60) -> str:
    """``text`` as one printable line of at most ``limit`` characters (for error messages)."""
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit + 1])
    return printable if len(printable) <= limit else printable[:limit - 3] + "..."


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` clipped to ``limit`` characters: a message never echoes a huge input."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]  # repr of a 1 MiB string would cost 1 MiB first
    return clip(repr(value), limit)


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that tlmsim does not accept (aliases, duplicate keys, ...)."""

    def __init__(self, problem: str, mark):
        super().__init__(problem=problem, problem_mark=mark)


# libyaml (C) parses 1 MiB in a fraction of a second, pure Python takes ~10 s; the checks
# below work with either.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SafeConfigLoader(_LOADER):
    """``yaml.SafeLoader`` without merge keys, duplicate keys or YAML 1.1 number surprises
    (anchors, aliases and depth are checked on the events first: ``_check_events``)."""

    def resolve(self, kind, value, implicit):
        """Plain 2:4 stays text: YAML 1.1 would read a base-60 number (2:4 = 124), never meant here."""
        tag = super().resolve(kind, value, implicit)
        if kind is yaml.ScalarNode and implicit[0] and ":" in value and tag in (INT_TAG, FLOAT_TAG):
            return STR_TAG
        return tag

    def construct_mapping(self, node, deep=False):
        """Refuse merge keys and duplicate keys (compared as loaded: 1 and 1.0 are the same key)."""
        if isinstance(node, MappingNode):
            first_line: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    raise _Refused("merge keys ('<<') are not supported; write the fields out", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:
                    break  # an unhashable key: SafeLoader reports it below
                if seen:
                    raise _Refused(f"duplicate key {short_repr(key, 40)} (first at line {first_line[key]}); "
                                   "keep only one", key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        """Turn a scalar that Python cannot convert (a 5000-digit int, day 32) into a YAML error."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:
            kind, reason = node.tag.rpartition(":")[2], str(err).partition(":")[0]
            raise _Refused(f"{kind} {clip(str(node.value), 20)} cannot be read ({clip(reason, 70)}); "
                           "fix the value", node.start_mark) from None


SafeConfigLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789"))


def load_yaml_text(text: str, source: str) -> object:
    """Parse one YAML document with ``SafeConfigLoader``; ``source`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: {len(text)} characters is above the {MAX_BYTES} (1 MiB) limit for YAML input")
    try:
        _check_events(text)
        loader = SafeConfigLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_explain(err, source)) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise ConfigError(f"{source} is not valid YAML at line {line} (character #x{err.character:04x} is not "
                          "allowed in YAML text); remove it") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML ({clip(str(err), 80)}); fix the syntax") from None


def _check_events(text: str) -> None:
    """Refuse anchors, aliases and deep nesting in the event stream, before any node exists
    (so an alias bomb is never expanded and the recursive composer never runs deep)."""
    depth = 0
    for event in yaml.parse(text, Loader=SafeConfigLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            name = clip(event.anchor or "", 20)
            raise _Refused(f"YAML anchors and aliases (&{name}, *{name}) are not supported; "
                           "write the value out in full", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(f"nesting is deeper than {MAX_DEPTH} levels; a config needs only a few",
                               event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_yaml_file(path: str | Path, source: str | None = None) -> object:
    """Read and parse a YAML file (see ``read_text_file`` for what is refused)."""
    source = source or clip(str(path), 120)
    return load_yaml_text(read_text_file(path, source), source)


def read_text_file(path: str | Path, source: str) -> str:
    """The UTF-8 text of a regular file of at most ``MAX_BYTES`` bytes, or a ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{source} is a directory; pass a YAML file such as configs/u280_llama7b.yaml")
    if not path.exists():
        raise ConfigError(f"{source} not found; check the path")
    if not path.is_file():
        raise ConfigError(f"{source} is not a regular file (a pipe or device?); pass a YAML file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)  # never more, whatever the file claims to be
    except OSError as err:
        raise ConfigError(f"{source} cannot be read ({err.strerror or err}); check its permissions") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{source} is larger than the {MAX_BYTES} byte (1 MiB) limit for YAML input; "
                          "is it the right file?")
    if b"\x00" in data:
        raise ConfigError(f"{source} is not UTF-8 text (it contains NUL bytes: a binary file?); pass a YAML file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                          "save it as UTF-8") from None


def _explain(err: yaml.MarkedYAMLError, source: str) -> str:
    """One line for a YAML error: where (line, column) and what."""
    mark = err.problem_mark or err.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    # PyYAML splits a message in two: "while scanning a simple key" + "could not find ':'".
    problem = clip(", ".join(filter(None, (err.context, err.problem))) or "unreadable", 200)
    if isinstance(err, _Refused):
        return f"{source}{where}: {problem}"
    if isinstance(err, yaml.constructor.ConstructorError):  # tags such as !!python/object
        return f"{source}{where}: {problem}; use plain YAML data (no tags)"
    return f"{source} is not valid YAML{where} ({problem}); fix the syntax"
