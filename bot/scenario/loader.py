"""Load a scenario folder: every `*.yaml` file forms one scenario, checked as a whole. One run
reports every problem that can be known: the YAML of each file, the schema of what parses, and
the checks between sections on what passes the schema (bot/scenario/partial.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.scenario.checks import check_scenario
from bot.scenario.ignored import ignored_files
from bot.scenario.lint import lint_scenario
from bot.scenario.model import Scenario
from bot.scenario.partial import ID_SECTIONS, LIST_SECTIONS, SECTIONS, named_under, validate
from bot.scenario.schema_errors import schema_finding
from bot.scenario.source import (
    Finding,
    Path_,
    Position,
    Problem,
    SourceMap,
    format_path,
    glimpse,
    read_yaml,
)
from bot.scenario.wording import Language, Say, language_of


class ScenarioError(Exception):
    """The folder does not hold a valid scenario; `problems` lists every one, in file order,
    worded in `language` (the scenario's), as are the `warnings` found besides."""

    def __init__(
        self,
        problems: list[Problem],
        *,
        warnings: tuple[Problem, ...] = (),
        language: Language = "ru",
    ) -> None:
        self.problems = sorted(problems)
        self.warnings = warnings
        self.language = language
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    folder: Path
    files: tuple[Path, ...]
    # What loads and runs but leads nowhere (bot.scenario.lint), and files left unread:
    # shown, never refused.
    warnings: tuple[Problem, ...] = ()

    @property
    def language(self) -> Language:
        """The language `leadbot check` and the reload report speak for this scenario."""
        return language_of(self.scenario.settings.language)

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
    parts: list[tuple[str, Any, SourceMap]], problems: list[Finding]
) -> tuple[dict[str, Any], SourceMap]:
    merged: dict[str, Any] = {}
    where = SourceMap()
    for name, data, source in parts:
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(Finding(Position(name, 1, 1), Say("file.not_sections")))
            continue
        for section, value in data.items():
            if section in ID_SECTIONS and isinstance(value, dict) and section in merged:
                for item_id, item in value.items():
                    if item_id in merged[section]:
                        first = where.keys[(section, item_id)]
                        problems.append(
                            Finding(
                                source.keys[(section, item_id)],
                                Say("merge.duplicate_id", first=first),
                                (section, item_id),
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
                said = Say("merge.section_twice", first=first)
                problems.append(Finding(source.keys[(section,)], said, (section,)))
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


def load_scenario(folder: Path) -> LoadedScenario:
    """Read and check every `*.yaml` in `folder`; raise `ScenarioError` with all problems."""
    folder = Path(folder)
    start = Position(_display_name(folder), 1, 1)
    if not folder.is_dir():
        raise ScenarioError([Finding(start, Say("folder.missing")).render("ru")])
    files = tuple(sorted(folder.glob("*.yaml")))
    if not files:
        problem = Finding(start, Say("folder.no_yaml")).render("ru")
        raise ScenarioError([problem], warnings=_unread(folder, files, None, "ru"))
    found = _read(files)
    findings = found.findings
    data, where = _merge(found.parts, findings)
    where.values.setdefault((), Position(_display_name(files[0]), 1, 1))
    settings = data.get("settings")
    written = settings.get("language") if isinstance(settings, dict) else None
    language = language_of(written if written is not None else found.language)

    validated = validate(data, found.unknown)
    for error in validated.errors:
        section = error["loc"][0] if len(error["loc"]) == 1 else None
        if error["type"] == "missing" and section in found.unknown:
            continue  # the section may well be in a file that is not YAML
        findings.append(schema_finding(error, data, where))
    for path, said in check_scenario(validated.scenario, folder, validated.unchecked):
        path = validated.as_written(path)
        findings.append(Finding(where.locate(path), said, path))
    # A file that is not YAML may name any file to send: only YAML-like names are sure.
    named = None if found.unknown else named_under("file", [part[1] for part in found.parts])
    warnings = list(_unread(folder, files, named, language))
    if validated.complete:  # on a scenario pieced together, what leads nowhere is unknown
        for path, said in lint_scenario(validated.scenario):
            warnings.append(Finding(where.locate(path), said, path).render(language))
    if findings:
        problems = [finding.render(language) for finding in findings]
        raise ScenarioError(problems, warnings=tuple(sorted(warnings)), language=language)
    return LoadedScenario(
        scenario=validated.scenario, folder=folder, files=files, warnings=tuple(sorted(warnings))
    )


@dataclass
class _Files:
    """The files as read: the data of those that parse, and what the others seem to hold."""

    parts: list[tuple[str, Any, SourceMap]]
    findings: list[Finding]
    unknown: frozenset[str]  # sections that files which are not YAML may hold
    language: str | None  # settings.language as glimpsed in a file that is not YAML


def _read(files: tuple[Path, ...]) -> _Files:
    found = _Files([], [], frozenset(), None)
    for file in files:
        data, source, findings = read_yaml(file, _display_name(file))
        found.findings += findings
        if data is not None:
            found.parts.append((_display_name(file), data, source))
            continue
        seen = glimpse(file)
        found.unknown |= SECTIONS if seen.sections is None else seen.sections
        found.language = found.language or seen.language
    return found


def _unread(
    folder: Path, files: tuple[Path, ...], named: set[str] | None, language: Language
) -> tuple[Problem, ...]:
    """Warnings for the files in the folder that the bot does not read."""
    return tuple(
        Finding(Position(_display_name(path), 1, 1), said).render(language)
        for path, said in ignored_files(folder, files, named)
    )
