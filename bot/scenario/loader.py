"""Load a scenario folder: every `*.yaml` file forms one scenario, checked as a whole."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bot.scenario.checks import check_scenario
from bot.scenario.conditions import RULE_KINDS
from bot.scenario.lint import lint_scenario
from bot.scenario.model import Scenario
from bot.scenario.source import Path_, Position, Problem, SourceMap, format_path, read_yaml

# Sections whose entries are keyed by id: several files may each add entries.
ID_SECTIONS = ("offers", "questions", "sequences", "promos", "events", "broadcasts")
LIST_SECTIONS = ("faq",)


class ScenarioError(Exception):
    """The folder does not hold a valid scenario; `problems` lists every one, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    folder: Path
    files: tuple[Path, ...]
    # What loads and runs but leads nowhere (bot.scenario.lint): shown, never refused.
    warnings: tuple[Problem, ...] = ()

    def file_path(self, relative: str) -> Path:
        return self.folder / relative


__all__ = ["LoadedScenario", "ScenarioError", "format_path", "load_scenario"]


def _display_name(file: Path) -> str:
    try:
        relative = os.path.relpath(file)
    except ValueError:  # another drive on Windows
        return str(file)
    return str(file.resolve()) if relative.startswith("..") else relative


def _merge(
    parts: list[tuple[str, Any, SourceMap]], problems: list[Problem]
) -> tuple[dict[str, Any], SourceMap]:
    merged: dict[str, Any] = {}
    where = SourceMap()
    for name, data, source in parts:
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(
                Problem(
                    Position(name, 1, 1),
                    "a scenario file holds sections "
                    "(version:, start:, offers:, ...), not a list or a text",
                )
            )
            continue
        for section, value in data.items():
            if section in ID_SECTIONS and isinstance(value, dict) and section in merged:
                for item_id, item in value.items():
                    if item_id in merged[section]:
                        first = where.keys[(section, item_id)]
                        problems.append(
                            Problem(
                                source.keys[(section, item_id)],
                                f"{section}.{item_id}: duplicate id, also defined at {first}",
                            )
                        )
                        continue
                    merged[section][item_id] = item
                _copy_positions(where, source, (section,), keep_root=True)
            elif section in LIST_SECTIONS and isinstance(value, list) and section in merged:
                offset = len(merged[section])
                merged[section].extend(value)
                for path, position in source.values.items():
                    if path[:1] == (section,) and len(path) > 1:
                        shifted = (section, path[1] + offset, *path[2:])  # type: ignore[operator]
                        where.values[shifted] = position
                for path, position in source.keys.items():
                    if path[:1] == (section,) and len(path) > 1:
                        where.keys[(section, path[1] + offset, *path[2:])] = position  # type: ignore[operator]
            elif section in merged:
                first = where.keys[(section,)]
                problems.append(
                    Problem(
                        source.keys[(section,)],
                        f"{section}: this section is already in {first}; keep it in one file",
                    )
                )
            else:
                merged[section] = value
                _copy_positions(where, source, (section,), keep_root=False)
    return merged, where


def _copy_positions(
    target: SourceMap, source: SourceMap, prefix: Path_, *, keep_root: bool
) -> None:
    for mine, theirs in ((target.values, source.values), (target.keys, source.keys)):
        for path, position in theirs.items():
            if path[: len(prefix)] == prefix and not (keep_root and path == prefix):
                mine[path] = position


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
    """Pydantic's location without its own markers (union tags, validator names)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _is_marker(part):
            path.append(part)  # a key that is missing or unknown
            break
    return tuple(path)


def _is_marker(part: str) -> bool:
    """Parts pydantic adds to a location that are not keys of the data: union tags."""
    return part in {*RULE_KINDS, "OfferButton", "LinkButton"} or "[" in part


def _field_names(model: type[BaseModel], path: Path_) -> list[str]:
    """The keys allowed where an unknown key stands, for "did you mean" hints."""
    types: list[Any] = [model]
    for part in path[:-1]:
        types = [inner for kind in types for inner in _inside(kind, part)]
    names: list[str] = []
    for kind in types:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += [f.alias or name for name, f in kind.model_fields.items()]
    return names


def _inside(kind: Any, part: str | int) -> list[Any]:
    """The types that may stand at `part` inside a value of type `kind`."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        field = next((f for name, f in kind.model_fields.items() if part in (name, f.alias)), None)
        return _unwrap(field.annotation) if field else []
    origin = get_origin(kind)
    if origin is dict and isinstance(part, str):
        return _unwrap(get_args(kind)[1])
    if origin is list and isinstance(part, int):
        return _unwrap(get_args(kind)[0])
    return []


def _unwrap(kind: Any) -> list[Any]:
    """Strip `Annotated` and split unions and `X | None` into their members."""
    if get_origin(kind) is Annotated:
        return _unwrap(get_args(kind)[0])
    if get_origin(kind) in (Union, UnionType):
        return [inner for arg in get_args(kind) for inner in _unwrap(arg)]
    return [kind]


def _message(error: Any, path: Path_) -> str:
    kind = error["type"]
    where = format_path(path)
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        known = [name for name in _field_names(Scenario, path) if name != key]
        hint = difflib.get_close_matches(str(key), known, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        return f"{where}: unknown key {key!r}{suggestion}"
    if kind == "missing":
        if len(path) == 1:
            return f"{where}: missing required section"
        return f"{format_path(path[:-1])}: missing required key {path[-1]!r}"
    text = {
        "string_type": "expected text",
        "int_type": "expected a whole number",
        "int_parsing": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_parsing": "expected a number",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "dict_type": "expected a mapping of key: value lines",
        "model_type": "expected a mapping of key: value lines",
        "model_attributes_type": "expected a mapping of key: value lines",
        "list_type": "expected a list",
        "date_type": "expected a date like 2026-12-31",
        "date_parsing": "expected a date like 2026-12-31",
        "date_from_datetime_parsing": "expected a date like 2026-12-31",
    }.get(kind)
    if text is None:
        text = str(error["msg"]).removeprefix("Value error, ")
        if kind == "string_pattern_mismatch" and "A-Za-z0-9_" in text:
            text = f"bad id {error['input']!r}: use 1-32 latin letters, digits or _ (no spaces)"
        elif kind == "rule" and isinstance(error["input"], dict) and len(error["input"]) == 1:
            text = f"unknown rule {next(iter(error['input']))!r}: {text}"
        elif kind == "too_short":
            text = "must not be empty"
        else:
            text = text.replace("Input should be", "should be")
    return f"{where}: {text}" if where else text


def _position(error: Any, path: Path_, data: Any, where: SourceMap) -> Position:
    """Where a schema error stands: at the key for keys and for whole mappings."""
    if error["type"] == "missing":
        return where.locate(path[:-1], key=True)
    if error["type"] == "extra_forbidden" or "[key]" in error["loc"]:
        return where.locate(path, key=True)
    return where.locate(path, key=isinstance(_value_at(data, path), dict))


def _value_at(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def load_scenario(folder: Path) -> LoadedScenario:
    """Read and check every `*.yaml` in `folder`; raise `ScenarioError` with all problems."""
    folder = Path(folder)
    display = _display_name(folder)
    if not folder.is_dir():
        raise ScenarioError([Problem(Position(display, 1, 1), "no such scenario folder")])
    files = tuple(sorted(folder.glob("*.yaml")))
    if not files:
        raise ScenarioError([Problem(Position(display, 1, 1), "no *.yaml files in this folder")])
    problems: list[Problem] = []
    parts = []
    for file in files:
        data, source, file_problems = read_yaml(file, _display_name(file))
        problems.extend(file_problems)
        parts.append((_display_name(file), data, source))
    if problems:
        raise ScenarioError(problems)
    data, where = _merge(parts, problems)
    first_file = Position(_display_name(files[0]), 1, 1)
    where.values.setdefault((), first_file)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = _data_path(data, error["loc"])
            position = _position(error, path, data, where)
            problems.append(Problem(position, _message(error, path)))
        raise ScenarioError(problems) from None
    for path, message in check_scenario(scenario, folder):
        problems.append(Problem(where.locate(path), f"{format_path(path)}: {message}"))
    if problems:
        raise ScenarioError(problems)
    warnings = sorted(
        Problem(where.locate(path), f"{format_path(path)}: {message}")
        for path, message in lint_scenario(scenario)
    )
    return LoadedScenario(scenario=scenario, folder=folder, files=files, warnings=tuple(warnings))
