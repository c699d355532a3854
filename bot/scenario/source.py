"""YAML with source positions, so every problem can name `file:line:column`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.scenario.wording import Language, Say

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


@dataclass(frozen=True)
class Finding:
    """A problem before it is worded: found before the scenario's language is known."""

    position: Position
    say: Say
    path: Path_ = ()  # the place in the scenario, shown before the message when there is one

    def render(self, language: Language) -> Problem:
        text = self.say.render(language)
        return Problem(self.position, f"{format_path(self.path)}: {text}" if self.path else text)


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


def format_path(path: Path_) -> str:
    """`offers.audit.ask[0]`: the way problems name a place in the scenario."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _position(file: str, mark: yaml.Mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


_MERGE_TAG = "tag:yaml.org,2002:merge"
# A scenario is a few hundred lines; these bounds stop a file that is not one (a "billion
# laughs" of nested aliases is 1 KB and expands past memory) before it costs the bot.
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 100_000  # values read from one file, each alias counting what it repeats


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _oversized(node: yaml.Node) -> yaml.Node | None:
    """The node whose repeats take the file past MAX_VALUES once aliases are written out, or
    None. Each node is sized once (an alias is the node it names, met again), so a bomb is
    found in a moment instead of after reading 100,000 values; a node that contains itself
    is endless."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:  # depth first, without recursion: nesting can be deep as well
        current, children_sized = stack.pop()
        if children_sized:
            children = _children(current)
            total = 1 + sum(sizes[id(child)] for child in children)
            sizes[id(current)] = total
            if total > MAX_VALUES:
                big = max(children, key=lambda child: sizes[id(child)])
                return big if sizes[id(big)] > MAX_VALUES // 10 else current
            continue
        if id(current) in sizes:
            if sizes[id(current)] < 0:  # met again while its own children are being sized
                return current
            continue
        sizes[id(current)] = -1
        stack.append((current, True))
        stack.extend((child, False) for child in _children(current))
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Reader:
    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.map = SourceMap()
        self.problems: list[Finding] = []
        # How many leading entries of each flattened mapping came from `<<:` merges; a node
        # behind an alias is read again, after its merge keys are already gone.
        self.merged: dict[int, int] = {}
        self.budget = MAX_VALUES

    def read(self, node: yaml.Node, path: Path_) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge(node)
        self.map.values[path] = _position(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            if id(node) not in self.merged:
                own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
                self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
                self.merged[id(node)] = len(node.value) - own
            from_merge: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                where = _position(self.file, key_node.start_mark)
                key = (
                    self.loader.construct_object(key_node, deep=True)
                    if isinstance(key_node, yaml.ScalarNode)
                    else None  # a list or mapping as a key (it could be an alias bomb too)
                )
                if not isinstance(key, str | int):
                    self.problems.append(Finding(where, Say("yaml.key_not_word"), path))
                    continue
                key = str(key)
                if key in result and key not in from_merge:
                    first = self.map.keys[(*path, key)]
                    said = Say("yaml.key_twice", line=first.line)
                    self.problems.append(Finding(where, said, (*path, key)))
                    continue
                if key in result:  # a key written next to `<<:` overrides the merged one
                    self._forget((*path, key))
                    from_merge.discard(key)
                if index < self.merged[id(node)]:
                    from_merge.add(key)
                self.map.keys[(*path, key)] = where
                result[key] = self.read(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _forget(self, prefix: Path_) -> None:
        for positions in (self.map.values, self.map.keys):
            for path in [p for p in positions if p[: len(prefix)] == prefix]:
                del positions[path]


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> Finding:
    """PyYAML's parser terms rewritten for people who write the scenario, not the parser."""
    context, problem = exc.context or "", exc.problem or ""
    raw = " ".join(filter(None, [context, problem]))
    mark = exc.problem_mark or exc.context_mark
    opened = exc.context_mark
    # An unclosed quote or bracket is noticed lines later; point at where it was opened.
    if (
        opened is not None
        and mark is not None
        and opened.line < mark.line
        and any(
            word in context
            for word in ("quoted scalar", "flow sequence", "flow mapping", "simple key")
        )
    ):
        mark = opened
    if "'\\t'" in problem:
        what = Say("yaml.tab")
    elif "mapping values are not allowed" in problem:
        what = Say("yaml.colon")
    elif "quoted scalar" in context:
        what = Say("yaml.quote")
    elif "flow sequence" in context:
        what = Say("yaml.bracket")
    elif "flow mapping" in context:
        what = Say("yaml.brace")
    elif "undefined alias" in problem:
        what = Say("yaml.alias", name=problem.rsplit(" ", 1)[-1].strip("'"))
    elif "simple key" in context:
        what = Say("yaml.not_key_value")
    elif "flow node" in context and "<stream end>" in problem:
        what = Say("yaml.unclosed_at_end")
    elif "expected <block end>" in problem:
        what = Say("yaml.indentation")
    elif "cannot start any token" in problem:
        character = problem.removeprefix("found character ").split(" that", 1)[0]
        what = Say("yaml.bad_start", character=character)
    else:
        what = Say("yaml.other", raw=raw)
    position = _position(file, mark) if mark else Position(file, 1, 1)
    return Finding(position, Say("yaml", what=what))


def read_yaml(file: Path, display_name: str) -> tuple[Any, SourceMap, list[Finding]]:
    """Parse one file into plain data plus positions; syntax errors come back as findings,
    with no data when the file could not be read as a whole."""
    start = Position(display_name, 1, 1)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return None, SourceMap(), [Finding(start, Say("file.too_big", limit=MAX_FILE_BYTES))]
        raw = file.read_bytes()
    except OSError as exc:
        return None, SourceMap(), [Finding(start, Say("file.unreadable", error=exc))]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # a file saved as Windows-1251 by an old editor
        where = Position(display_name, raw[: exc.start].count(b"\n") + 1, 1)
        return None, SourceMap(), [Finding(where, Say("file.not_utf8"))]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, SourceMap(), []
        if (oversized := _oversized(node)) is not None:
            raise _TooLarge(oversized)
        reader = _Reader(display_name, loader)
        data = reader.read(node, ())
        return data, reader.map, reader.problems
    except yaml.MarkedYAMLError as exc:
        return None, SourceMap(), [_syntax_problem(display_name, exc)]
    except RecursionError:  # PyYAML composes and reads nested values recursively
        return None, SourceMap(), [Finding(start, Say("file.too_deep"))]
    except _TooLarge as stop:
        where = _position(display_name, stop.node.start_mark)
        return None, SourceMap(), [Finding(where, Say("file.alias_bomb", limit=MAX_VALUES))]
    finally:
        loader.dispose()


_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)[ \t]*:", re.MULTILINE)
_LANGUAGE = re.compile(r"\blanguage[ \t]*:[ \t]*[\"']?([A-Za-z_-]+)")


@dataclass(frozen=True)
class Glimpse:
    """What can be told of a file that does not parse, from its lines alone: the sections it
    seems to hold (None: cannot tell) and `settings.language` if it seems to set one."""

    sections: frozenset[str] | None
    language: str | None = None


def glimpse(file: Path) -> Glimpse:
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return Glimpse(None)
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return Glimpse(None)
    starts = list(_TOP_KEY.finditer(text))
    language = None
    for here, after in zip(starts, [*starts[1:], None], strict=True):
        if here[1] == "settings":
            block = text[here.end() : after.start() if after else len(text)]
            found = _LANGUAGE.search(block)
            language = found[1] if found else None
    return Glimpse(frozenset(match[1] for match in starts) or None, language)
