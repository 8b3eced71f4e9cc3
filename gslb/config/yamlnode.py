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
        """The Python value of a scalar node (int, float, bool, str or None)."""
        return yaml.SafeLoader("").construct_object(self.raw)

    def items(self) -> Iterator[tuple[str, Node]]:
        assert isinstance(self.raw, yaml.MappingNode)
        for key, value in self.raw.value:
            name = str(key.value)
            yield name, Node(value, f"{self.path}.{name}" if self.path else name)

    def elements(self) -> Iterator[Node]:
        assert isinstance(self.raw, yaml.SequenceNode)
        for index, value in enumerate(self.raw.value):
            yield Node(value, f"{self.path}[{index}]")


def parse(path: Path) -> Node | None:
    """Compose one YAML document; syntax errors become a ConfigError with the position."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    try:
        raw = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), [f"YAML syntax: {exc.problem}{where}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"YAML: {exc}"]) from exc
    return None if raw is None else Node(raw, "")
