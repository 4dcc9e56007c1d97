"""Strict, bounded YAML for operator files (``collections/*.yaml``).

An operator file is a small hand-written mapping of strings, numbers and lists. Everything YAML can do
beyond that is a way to make the loader, the validators or pgstac do unbounded work, or to hide what
is in effect: aliases expand (a billion-laughs file is a few hundred bytes), deep nesting recurses,
a duplicate key silently replaces the first, ``on:`` is a boolean key. This loader refuses all of it
while composing, before any Python object is built, and within fixed bounds of size, depth and count.
Every refusal is one line naming the file, the field (a dotted path) and the line.

Based on the pure-Python ``yaml.SafeLoader``: the C loader composes in C, where none of these checks
can run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from ingest.errors import ConfigError

MAX_BYTES = 1 << 20  # the largest shipped collection file is 22 KB (1,737 values)
MAX_DEPTH = 32  # collections nested in collections; a GeoJSON MultiPolygon under retention.area is 7
MAX_NODES = 50_000  # every scalar, list and mapping, keys included; each costs ~0.6 KB while composing
MAX_ITEMS = 10_000  # entries of any one list or mapping (keywords, summaries, polygon rings...)
MAX_NUMBER_CHARS = 100  # int() of a long digit string is quadratic (and refused past 4300 digits)

_STR = "tag:yaml.org,2002:str"
_NUMBER = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_CAN_FAIL = {*_NUMBER, "tag:yaml.org,2002:timestamp"}  # built while composing, to refuse them with their field
_KIND = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:value": "YAML's '=' value key",
}
_SHORT = 60  # longest key, anchor or tag quoted back in a message
_SHOWN_DEPTH = 8  # path segments named in a message


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_NODES
    max_items: int = MAX_ITEMS


class YamlFileError(ConfigError):
    """An operator file refused: one line naming the file, the field and, where there is one, the line.

    Syntax errors read ``FILE: line N not valid YAML: PROBLEM (in FIELD)``; refusals of valid YAML read
    ``FILE: FIELD: PROBLEM (line N, column C)``; refusals of the whole file read ``FILE: PROBLEM``.
    """

    def __init__(
        self,
        file: Path,
        problem: str,
        *,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
        syntax: bool = False,
    ) -> None:
        problem = " ".join(problem.split())  # PyYAML problems may carry line breaks
        if syntax:
            where = f" line {line}" if line is not None else ""
            message = f"{file}:{where} not valid YAML: {problem}" + (f" (in {field})" if field else "")
        elif field is not None:
            at = f" (line {line}, column {column})" if line is not None else ""
            message = f"{file}: {field}: {problem}{at}"
        else:
            message = f"{file}: {problem}"
        super().__init__(message)


def _short(text: str) -> str:
    return repr(text if len(text) <= _SHORT else text[:_SHORT] + "...")


def format_field(path: list[str | int] | tuple[str | int, ...]) -> str:
    """``stac.summaries.eo:bands[3]``; a key that would not read back as one segment is quoted, and a
    path deeper than a reader follows ends in ``...``."""
    out = ""
    for part in path[:_SHOWN_DEPTH]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "_-:" for c in part) and len(part) <= _SHORT:
            out += f".{part}" if out else part
        else:
            out += f"[{_short(part)}]"
    return (out or "(top level)") + ("..." if len(path) > _SHOWN_DEPTH else "")


class _Refused(Exception):
    """Raised inside the composer; ``load_mapping`` adds the file name."""

    def __init__(self, problem: str, path: list[str | int], mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.field = problem, format_field(path)
        self.line = mark.line + 1 if mark is not None else None
        self.column = mark.column + 1 if mark is not None else None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases, anchors, tags, duplicate and non-string keys, and
    counts depth, nodes and items as it goes: the checks run on events, before recursing into them."""

    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self.limits = limits
        self.path: list[str | int] = []  # where the composer is; len(path) is the nesting depth
        self.nodes = 0

    def refuse(self, problem: str, event: Event | Node) -> _Refused:
        return _Refused(problem, self.path, event.start_mark)

    def _peek(self) -> Event:
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event

    def _next(self) -> Event:
        event: Event = self.get_event()  # type: ignore[no-untyped-call]
        return event

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self._peek()
        if isinstance(event, AliasEvent):  # only an undefined one: an anchor is refused before its aliases
            raise self.refuse(
                f"alias *{(event.anchor or '')[:_SHORT]}: aliases are not allowed in an operator file", event
            )
        assert isinstance(event, ScalarEvent | CollectionStartEvent)  # what a parser yields where a node goes
        if event.anchor is not None:
            raise self.refuse(
                f"anchor &{event.anchor[:_SHORT]}: anchors and aliases are not allowed in an operator file;"
                " write the value out",
                event,
            )
        if event.tag is not None:  # !!python/object, !!binary, !!set...: nothing an operator file needs
            raise self.refuse(f"tag {_short(event.tag)}: explicit tags are not allowed in an operator file", event)
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise self.refuse(f"more than {self.limits.max_nodes} values in the file", event)
        if isinstance(event, ScalarEvent):
            return self._scalar()
        if len(self.path) >= self.limits.max_depth:
            raise self.refuse(f"nested deeper than {self.limits.max_depth} levels", event)
        return self._mapping() if isinstance(event, MappingStartEvent) else self._sequence()

    def _scalar(self) -> ScalarNode:
        node = self.compose_scalar_node(None)  # type: ignore[arg-type]  # the stub's anchor type is wrong
        if node.tag not in _CAN_FAIL:
            return node
        kind = _KIND[node.tag]
        if node.tag in _NUMBER and len(node.value) > MAX_NUMBER_CHARS:
            raise self.refuse(f"{kind} of {len(node.value)} characters; quote it if it is text", node)
        try:  # kept in constructed_objects, so construct_document does not build it again
            self.construct_object(node)
        except (ValueError, OverflowError):  # 2024-13-45, 0x_
            raise self.refuse(f"{_short(node.value)} reads as {kind} but is not a valid one; quote it", node) from None
        return node

    def _check_count(self, count: int, what: str) -> None:
        if count >= self.limits.max_items:
            raise self.refuse(f"more than {self.limits.max_items} {what}", self._peek())

    def _sequence(self) -> SequenceNode:
        start = self._next()
        node = SequenceNode(BaseResolver.DEFAULT_SEQUENCE_TAG, [])
        while not self.check_event(SequenceEndEvent):
            self._check_count(len(node.value), "items in a list")
            self.path.append(len(node.value))
            node.value.append(self.compose_node(node, None))
            self.path.pop()
        node.start_mark, node.end_mark = start.start_mark, self._next().end_mark
        return node

    def _mapping(self) -> MappingNode:
        start = self._next()
        node = MappingNode(BaseResolver.DEFAULT_MAPPING_TAG, [])
        first_line: dict[str, int] = {}
        while not self.check_event(MappingEndEvent):
            self._check_count(len(node.value), "keys in a mapping")
            event = self._peek()
            if not isinstance(event, ScalarEvent | AliasEvent):  # an alias is refused, with its own message
                raise self.refuse("a list or mapping as a key; keys must be strings", event)
            key = self.compose_node(node, None)
            assert isinstance(key, ScalarNode)
            if key.tag == "tag:yaml.org,2002:merge":
                raise self.refuse("merge key '<<': merge keys are not allowed in an operator file", key)
            if key.tag != _STR:
                raise self.refuse(
                    f"key {_short(key.value)} reads as {_KIND.get(key.tag, key.tag)}, not a string; quote it", key
                )
            self.path.append(key.value)
            if key.value in first_line:
                raise self.refuse(f"duplicate key (first at line {first_line[key.value]})", key)
            first_line[key.value] = key.start_mark.line + 1
            node.value.append((key, self.compose_node(node, key)))
            self.path.pop()
        node.start_mark, node.end_mark = start.start_mark, self._next().end_mark
        return node


def _read(file: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of a regular file, refused past that without reading the rest.

    Opened non-blocking and checked with fstat, so a FIFO or a device (``/dev/zero``) swapped in
    for the file is refused instead of blocking or read without end. FileNotFoundError passes
    through: the caller knows what was missing."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise YamlFileError(file, f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise YamlFileError(file, "not a regular file")
        if st.st_size > max_bytes:
            raise YamlFileError(file, f"{st.st_size} bytes, more than the {max_bytes} allowed")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)  # + 1: a file grown since fstat is still caught
    except OSError as exc:
        raise YamlFileError(file, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise YamlFileError(file, f"more than the {max_bytes} bytes allowed")
    return data


def _decode(file: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlFileError(file, f"not UTF-8 (byte 0x{data[exc.start]:02x})", line=line, syntax=True) from None
    # PyYAML refuses these too, but names neither line nor column
    if bad := yaml.reader.Reader.NON_PRINTABLE.search(text):
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - text.rfind("\n", 0, bad.start())
        problem = f"control character U+{ord(bad.group()):04X} at column {column}"
        raise YamlFileError(file, problem, line=line, syntax=True)
    return text


def load_mapping(file: Path, limits: Limits = Limits()) -> dict[str, Any]:
    """The top-level mapping of an operator file, read within ``limits``; YamlFileError otherwise."""
    text = _decode(file, _read(file, limits.max_bytes))
    loader = _StrictLoader(text, limits)
    try:
        root = loader.get_single_node()
        if not isinstance(root, MappingNode):
            got = "an empty file" if root is None else ("a list" if isinstance(root, SequenceNode) else "a scalar")
            raise YamlFileError(file, f"expected a mapping at the top level, got {got}")
        data = loader.construct_document(root)
    except _Refused as exc:
        raise YamlFileError(file, exc.problem, field=exc.field, line=exc.line, column=exc.column) from None
    except yaml.YAMLError as exc:  # scanner, parser and composer errors; their snippets are left out
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        said = (getattr(exc, "context", None), getattr(exc, "problem", None))
        problem = ", ".join(filter(None, said)) or type(exc).__name__
        field = format_field(loader.path) if loader.path else None
        line = mark.line + 1 if mark is not None else None
        raise YamlFileError(file, problem, field=field, line=line, syntax=True) from None
    finally:
        loader.dispose()
    assert isinstance(data, dict)
    return data
