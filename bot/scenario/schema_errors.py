"""Pydantic's errors as marketers read them: the place in the scenario as written in YAML,
where it stands in its file, and what is wrong in the catalogue's words."""

from __future__ import annotations

import difflib
from string import Formatter
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from bot.scenario.catalogue import CATALOGUE
from bot.scenario.conditions import RULE_KINDS
from bot.scenario.model import Scenario
from bot.scenario.source import Finding, Path_, Position, SourceMap
from bot.scenario.wording import Say, WordedError

# Pydantic's type errors, each a short request for what belongs there.
_EXPECTED = {
    "string_type": "schema.text",
    "int_type": "schema.whole_number",
    "int_parsing": "schema.whole_number",
    "int_from_float": "schema.whole_number",
    "float_type": "schema.number",
    "float_parsing": "schema.number",
    "bool_type": "schema.bool",
    "bool_parsing": "schema.bool",
    "dict_type": "schema.mapping",
    "model_type": "schema.mapping",
    "model_attributes_type": "schema.mapping",
    "list_type": "schema.list",
    "date_type": "schema.date",
    "date_parsing": "schema.date",
    "date_from_datetime_parsing": "schema.date",
    "too_short": "schema.empty",
    "string_too_short": "schema.empty",
}
# The id pattern and the promo patterns, told apart by the pattern pydantic reports.
_PATTERNS = {
    "^[A-Za-z0-9_]{1,32}$": "schema.bad_id",
    "^[A-Z0-9]{1,12}$": "schema.bad_prefix",
    "^[A-Za-z0-9_-]{3,32}$": "schema.bad_code",
}


def schema_finding(error: ErrorDetails, data: Any, where: SourceMap) -> Finding:
    path = data_path(data, error["loc"])
    shown, say = _message(error, path)
    return Finding(_position(error, path, data, where), say, shown)


def data_path(data: Any, loc: tuple[Any, ...]) -> Path_:
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


def _message(error: ErrorDetails, path: Path_) -> tuple[Path_, Say]:
    """The place to show before the message, and the message."""
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        known = [name for name in _field_names(Scenario, path) if name != key]
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = Say("ref.did_you_mean", name=close[0]) if close else ""
        return path, Say("schema.unknown_key", key=key, hint=hint)
    if kind == "missing":
        if len(path) == 1:
            return path, Say("schema.missing_section")
        return path[:-1], Say("schema.missing_key", key=path[-1])
    if isinstance(context.get("error"), WordedError):
        return path, context["error"].say
    if kind == "value_error" and (said := _catalogued(str(context.get("error")))) is not None:
        return path, said
    if kind in _EXPECTED:
        return path, Say(_EXPECTED[kind])
    if kind == "string_pattern_mismatch" and context.get("pattern") in _PATTERNS:
        return path, Say(_PATTERNS[context["pattern"]], value=error["input"])
    if kind == "rule":
        kinds = Say("schema.rule_kinds")
        if isinstance(error["input"], dict) and len(error["input"]) == 1:
            return path, Say("schema.unknown_rule", name=next(iter(error["input"])), kinds=kinds)
        return path, kinds
    if kind == "literal_error":
        return path, _one_of(str(context.get("expected", "")))
    if kind == "greater_than_equal":
        return path, Say("schema.at_least", limit=context.get("ge"))
    if kind == "string_too_long":
        return path, Say("schema.at_most_chars", limit=context.get("max_length"))
    text = str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
    return path, Say("schema.other", text=text)


def _catalogued(text: str) -> Say | None:
    """The catalogue's message for a validator's plain ValueError that says its English text
    word for word (a check not switched over to `WordedError` yet), so it is worded in the
    scenario's language too; None for any other text, shown as it is."""
    for key, (english, _) in CATALOGUE.items():
        plain = not any(name for _, name, _, _ in Formatter().parse(english))
        if plain and Say(key).render("en") == text:
            return Say(key)
    return None


def _one_of(expected: str) -> Say:
    """Pydantic joins the allowed values with " or "; the catalogue words the "or"."""
    *others, last = expected.split(" or ")
    if others:
        return Say("schema.one_of_many", others=", ".join(others), last=last)
    return Say("schema.one_of", expected=last)


def _position(error: ErrorDetails, path: Path_, data: Any, where: SourceMap) -> Position:
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
