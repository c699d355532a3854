"""The scenario as far as it validates. When some of it fails the schema, the checks between
sections still run, on the sections and entries that passed; what failed is remembered so
that a reference to it counts as known instead of being reported a second time."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from bot.scenario.checks import Unchecked
from bot.scenario.model import ConsentTexts, Scenario, Start
from bot.scenario.schema_errors import data_path
from bot.scenario.source import Path_

# Sections whose entries are keyed by id: several files may each add entries.
ID_SECTIONS = ("offers", "questions", "sequences", "promos", "events", "broadcasts")
LIST_SECTIONS = ("faq",)
SECTIONS = frozenset(Scenario.model_fields)


@dataclass(frozen=True)
class Validated:
    """The scenario to check (whole, or built from what passed), the schema's errors, and
    what the checks cannot see."""

    scenario: Scenario
    errors: list[ErrorDetails]
    unchecked: Unchecked
    faq_kept: tuple[int, ...] | None = None  # the FAQ entries kept, by their index as written

    @property
    def complete(self) -> bool:
        return not self.errors and self.unchecked == Unchecked()

    def as_written(self, path: Path_) -> Path_:
        """A path into the checked scenario as a path into the files (FAQ entries left out
        shift the ones after them)."""
        if self.faq_kept is not None and path[:1] == ("faq",) and len(path) > 1:
            return ("faq", self.faq_kept[int(path[1])], *path[2:])
        return path


def validate(data: dict[str, Any], unread: frozenset[str]) -> Validated:
    """Validate the merged data; `unread` are sections that files which are not YAML may hold."""
    try:
        return Validated(Scenario.model_validate(data), [], Unchecked(sections=unread))
    except ValidationError as exc:
        errors = exc.errors()
    bad_ids: dict[str, set[str]] = {}
    bad_entries: set[int] = set()  # of the FAQ
    bad_sections: set[str] = set()
    unknown = set(unread)
    for error in errors:
        path = data_path(data, error["loc"])
        if not path:
            continue
        section, value = str(path[0]), data.get(path[0])
        if section not in SECTIONS:  # an unknown key: perhaps a known section misspelt
            unknown.update(difflib.get_close_matches(section, SECTIONS, n=1))
        elif section in ID_SECTIONS and len(path) > 1 and isinstance(value, dict):
            bad_ids.setdefault(section, set()).add(str(path[1]))
        elif section in LIST_SECTIONS and len(path) > 1 and isinstance(path[1], int):
            bad_entries.add(path[1])
        else:
            bad_sections.add(section)
    values, faq_kept = _passed(data, bad_ids, bad_entries, bad_sections)
    dropped = [data.get(s) for s in bad_sections] + [
        data[s][i] for s, ids in bad_ids.items() for i in ids if i in data[s]
    ]
    unchecked = Unchecked(
        ids={section: frozenset(ids) for section, ids in bad_ids.items()},
        sections=frozenset(unknown | bad_sections),
        # Buttons in what failed may record events; declared events are events by their id.
        events=frozenset(named_under("event", dropped) | bad_ids.get("events", set())),
    )
    return Validated(_assemble(values), errors, unchecked, faq_kept)


def _passed(
    data: dict[str, Any],
    bad_ids: dict[str, set[str]],
    bad_entries: set[int],
    bad_sections: set[str],
) -> tuple[dict[str, Any], tuple[int, ...] | None]:
    """Each section validated alone, without the entries that failed."""
    values: dict[str, Any] = {}
    faq_kept = None
    for name, field in Scenario.model_fields.items():
        if name not in data or name in bad_sections:
            continue
        raw = data[name]
        if name in bad_ids and isinstance(raw, dict):
            raw = {key: item for key, item in raw.items() if key not in bad_ids[name]}
        if name in LIST_SECTIONS and bad_entries and isinstance(raw, list):
            faq_kept = tuple(i for i in range(len(raw)) if i not in bad_entries)
            raw = [raw[i] for i in faq_kept]
        try:
            # The bare type: `offers` may be left empty by its failed entries.
            values[name] = TypeAdapter(field.annotation).validate_python(raw)
        except ValidationError:  # entries stand alone, so this is not expected; be safe
            bad_sections.add(name)
    return values, faq_kept


def _assemble(values: dict[str, Any]) -> Scenario:
    """A scenario of what passed. Required sections that did not pass are empty stand-ins
    that the checks find nothing in; it is never run."""
    values.setdefault("version", 1)
    values.setdefault("start", Start.model_construct(text="", buttons=[]))
    values.setdefault("consent", ConsentTexts.model_construct(text="", policy_url=""))
    values.setdefault("offers", {})
    return Scenario.model_construct(**values)


def named_under(key: str, parts: list[Any]) -> set[str]:
    """Every text under `key:` anywhere in raw data (`event:` of buttons, `file:` of offers,
    steps and broadcasts), schema or not."""
    found: set[str] = set()
    stack = list(parts)
    while stack:  # without recursion: nesting can be deep
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get(key), str):
                found.add(node[key])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
