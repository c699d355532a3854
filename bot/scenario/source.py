"""YAML with source positions, so every problem can name `file:line:column`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, order=True)
class Problem:
    position: Position
    message: str

    def __str__(self) -> str:
        return f"{self.position}: {self.message}"


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of the loaded data stands in its file."""

    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def update(self, other: SourceMap) -> None:
        self.values.update(other.values)
        self.keys.update(other.keys)

    def locate(self, path: Path_, *, key: bool = False) -> Position:
        """The position of `path`, or of its nearest ancestor that has one."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        raise KeyError(path)


def _position(file: str, mark: yaml.Mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


class _Reader:
    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.map = SourceMap()
        self.problems: list[Problem] = []

    def read(self, node: yaml.Node, path: Path_) -> Any:
        self.map.values[path] = _position(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    self.problems.append(
                        Problem(
                            _position(self.file, key_node.start_mark), "keys must be plain words"
                        )
                    )
                    continue
                key = str(key)
                if key in result:
                    first = self.map.keys[(*path, key)]
                    self.problems.append(
                        Problem(
                            _position(self.file, key_node.start_mark),
                            f"duplicate key {key!r} (first at line {first.line})",
                        )
                    )
                    continue
                self.map.keys[(*path, key)] = _position(self.file, key_node.start_mark)
                result[key] = self.read(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def read_yaml(file: Path, display_name: str) -> tuple[Any, SourceMap, list[Problem]]:
    """Parse one file into plain data plus positions; syntax errors come back as problems."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, SourceMap(), [Problem(Position(display_name, 1, 1), f"cannot read: {exc}")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, SourceMap(), []
        reader = _Reader(display_name, loader)
        data = reader.read(node, ())
        return data, reader.map, reader.problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = _position(display_name, mark) if mark else Position(display_name, 1, 1)
        what = " ".join(filter(None, [exc.context, exc.problem]))
        return None, SourceMap(), [Problem(position, f"YAML syntax: {what}")]
    finally:
        loader.dispose()
