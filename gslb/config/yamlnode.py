"""YAML nodes that remember where they were written, and a collector of config problems.

Adapter layer: the only yaml user. The loader walks composed nodes (not plain dicts) so that
every problem can name the key path, file, line and column, and collects them all before
raising one `ConfigError` (octoDNS does the same with its ContextDict).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gslb.errors import ConfigError


@dataclass
class Problems:
    """Collects every problem found in one file before the loader gives up."""

    source: Path
    items: list[str] = field(default_factory=list)

    def add(self, node: Node | None, message: str) -> None:
        if node is None:
            self.items.append(f"{message}, {self.source}")
        elif node.line == 0:  # a flag or GSLB_* variable read over the file (config.overrides)
            self.items.append(f"{node.raw.start_mark.name}: {message} (for {node.path})")
        else:
            self.items.append(
                f"{node.path}: {message}, {self.source}, line {node.line}, column {node.column}"
            )

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(str(self.source), self.items)


@dataclass(frozen=True)
class Node:
    """One YAML value with its key path and position (1-based line and column)."""

    raw: yaml.Node
    path: str

    @property
    def line(self) -> int:
        return int(self.raw.start_mark.line) + 1

    @property
    def column(self) -> int:
        return int(self.raw.start_mark.column) + 1

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.raw, yaml.MappingNode)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.raw, yaml.SequenceNode)

    @property
    def is_null(self) -> bool:
        return isinstance(self.raw, yaml.ScalarNode) and self.raw.tag == "tag:yaml.org,2002:null"

    def scalar(self) -> Any:
        """The Python value of a scalar node (int, float, bool, str or None); its text when YAML
        cannot build it (an unknown tag, `!!int x`, an integer of 5,000 digits), so that the
        loader says what it expected instead of the constructor raising."""
        try:
            return yaml.SafeLoader("").construct_object(self.raw)
        except (yaml.YAMLError, ValueError, ArithmeticError):
            return str(self.raw.value)

    def items(self) -> Iterator[tuple[str, Node]]:
        assert isinstance(self.raw, yaml.MappingNode)
        for key, value in self.raw.value:
            name = str(key.value)
            yield name, Node(value, f"{self.path}.{name}" if self.path else name)

    def elements(self) -> Iterator[Node]:
        assert isinstance(self.raw, yaml.SequenceNode)
        for index, value in enumerate(self.raw.value):
            yield Node(value, f"{self.path}[{index}]")


def parse(path: Path, problems: Problems | None = None) -> Node | None:
    """Compose one YAML document. What stops reading (unreadable, not UTF-8 text, a control
    character, bad syntax) raises a ConfigError with the line; a key given twice in one mapping
    is added to `problems` (YAML would silently keep the last) and reading goes on."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}, {path}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # everything before the first bad byte decodes: count lines and columns in characters
        before = data[: exc.start].decode("utf-8")
        where = _where(path, before, len(before))
        problem = f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be decoded){where}"
        raise ConfigError(str(path), [problem]) from None
    try:
        raw = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", {path}, line {mark.line + 1}, column {mark.column + 1}" if mark else f", {path}"
        raise ConfigError(str(path), [f"YAML syntax: {exc.problem}{where}"]) from None
    except yaml.reader.ReaderError as exc:  # a NUL or other control character: a binary file?
        where = _where(path, text, exc.position)
        problem = f"not text: control character U+{exc.character:04X} is not allowed in YAML{where}"
        raise ConfigError(str(path), [problem]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"YAML: {exc}, {path}"]) from None
    except RecursionError:  # PyYAML composes recursively: thousands of "[" exhaust the stack
        raise ConfigError(str(path), [f"YAML nested too deeply to read, {path}"]) from None
    if raw is None:
        return None
    root = Node(raw, "")
    if problems is not None:
        for first, again in duplicate_keys(root):
            problems.add(
                again,
                f"given twice, at line {first.line} and line {again.line} (YAML would silently "
                "keep the last)",
            )
    return root


def _where(path: Path, text: str, offset: int) -> str:
    """ ", FILE, line L, column C" of a character offset."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f", {path}, line {line}, column {column}"


def duplicate_keys(root: Node) -> list[tuple[Node, Node]]:
    """(first, repeated) key of every mapping that gives a key twice, in file order.

    Keys compare as the loader reads them (their text). Each composed node is visited once:
    an alias shares its anchor's node, so neither a recursive alias nor a "billion laughs"
    document makes this loop or blow up.
    """
    found: list[tuple[Node, Node]] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node.raw) in seen:
            continue
        seen.add(id(node.raw))
        if node.is_mapping:
            keys: dict[str, Node] = {}
            for key, value in node.raw.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
                if name is None:  # a complex key: the loader reports it as unknown
                    stack.append(Node(value, node.path))
                    continue
                child = Node(value, f"{node.path}.{name}" if node.path else name)
                at = Node(key, child.path)
                first = keys.setdefault(name, at)
                if first is not at:
                    found.append((first, at))
                stack.append(child)
        elif node.is_sequence:
            stack.extend(node.elements())
    return sorted(found, key=lambda pair: (pair[1].line, pair[1].column))
