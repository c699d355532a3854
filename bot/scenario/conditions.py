"""The rule language of `scoring.qualify`, a step's `if:` and a broadcast's segment."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from bot.scenario.fields import Duration, Id, StageName, Strict
from bot.scenario.wording import Say, WordedError

_COMPARE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(-?\d+(?:\.\d+)?)\s*$")
_EVENT_COUNT = re.compile(r"^\s*([A-Za-z0-9_]{1,32})\s*(?:(>=|<=|==|!=|>|<)\s*(\d+))?\s*$")
Operator = Literal[">=", "<=", "==", "!=", ">", "<"]


class Comparison(Strict):
    op: Operator
    number: float


def _comparison(value: Any) -> Any:
    if isinstance(value, Comparison | dict):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"op": ">=", "number": value}
    match = _COMPARE.match(str(value))
    if not match:
        raise WordedError("value.comparison", value=value)
    return {"op": match[1] or ">=", "number": float(match[2])}  # "60" reads as "at least 60"


class EventCount(Strict):
    name: Id
    op: Operator = ">="
    count: int = 1
    # Only the events whose payload has these values (bot/rule_facts.py compares them): one
    # product's purchases, say.
    where: dict[Id, str | int | float | bool] = Field(default_factory=dict)

    def __hash__(self) -> int:  # a set of the conditions rules read (bot/rule_facts.py)
        return hash(self.key)

    @property
    def key(self) -> str:
        """What the facts count it under: the name, with its `where` if it has one."""
        if not self.where:
            return self.name
        return self.name + "?" + "&".join(f"{k}={shown(v)}" for k, v in sorted(self.where.items()))


def shown(value: str | int | float | bool) -> str:
    """A `where` value as the payload's text holds it (YAML's true is JSON's true)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _event_count(value: Any) -> Any:
    if isinstance(value, EventCount | dict):
        return value
    match = _EVENT_COUNT.match(str(value))
    if not match:
        raise WordedError("value.event_condition", value=value)
    return {"name": match[1], "op": match[2] or ">=", "count": int(match[3] or 1)}


class AnswerCondition(Strict):
    """A number comparison (">= 9") or, for anything else, the exact answer text."""

    compare: Comparison | None = None
    equals: str | None = None


def _answer_condition(value: Any) -> Any:
    if isinstance(value, dict | AnswerCondition):
        return value
    match = _COMPARE.match(str(value))
    if match and match[1] and not isinstance(value, bool):  # an operator: compare numbers
        return {"compare": _comparison(value)}
    return {"equals": str(value)}  # `nps: 9` and `nps: "9"` both mean exactly 9


class AnyRule(Strict):
    any: list[Rule] = Field(min_length=1)


class AllRule(Strict):
    all: list[Rule] = Field(min_length=1)


class NotRule(Strict):
    not_: Rule = Field(alias="not")


class ScoreRule(Strict):
    score: Annotated[Comparison, BeforeValidator(_comparison)]


class TagRule(Strict):
    tag: Id


class StageRule(Strict):
    stage: StageName


class EventRule(Strict):
    event: Annotated[EventCount, BeforeValidator(_event_count)]

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"event": value} if isinstance(value, str) else value


class AnswerRule(Strict):
    answer: dict[Id, Annotated[AnswerCondition, BeforeValidator(_answer_condition)]] = Field(
        min_length=1
    )


class ContactRule(Strict):
    contact: Literal["phone", "email", "any"]


class SourceRule(Strict):
    """The lead's first source (the `src_` part of the deep link it came by)."""

    source: str


class OfferRule(Strict):
    """The lead took this offer at some point."""

    offer: Id


# The RFM segments of customers, in the order the report lists them, with the names a
# marketer reads there; bot/analytics/rfm.py `segment_of` says who is in which.
RFM_SEGMENTS: dict[str, str] = {
    "champions": "Чемпионы",
    "loyal": "Лояльные",
    "new": "Новые",
    "at_risk": "Под угрозой",
    "lost": "Потерянные",
}
RfmSegment = Literal["champions", "loyal", "new", "at_risk", "lost"]


def _rfm_segments(value: Any) -> Any:
    """One segment id or a list of them. An unknown name is refused with the closest id:
    a typo would otherwise be a segment of nobody. The Russian name leads to its id."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise WordedError("value.rfm_segment", name=value, more=_rfm_hint(str(value)))
    for name in names:
        if not isinstance(name, str) or name not in RFM_SEGMENTS:
            raise WordedError("value.rfm_segment", name=name, more=_rfm_hint(str(name)))
    return tuple(dict.fromkeys(names))


def _rfm_hint(name: str) -> Say:
    by_name = {title.casefold(): key for key, title in RFM_SEGMENTS.items()}
    close = difflib.get_close_matches(name.strip().casefold(), [*RFM_SEGMENTS, *by_name], n=1)
    if close:
        return Say("ref.did_you_mean", name=by_name.get(close[0], close[0]))
    return Say("ref.known", names=", ".join(RFM_SEGMENTS))


class PurchasesRule(Strict):
    """How many purchases (`purchase` events) the lead made: `purchases: ">= 2"`."""

    purchases: Annotated[Comparison, BeforeValidator(_comparison)]


class RevenueRule(Strict):
    """The sum of the lead's purchases' amounts: `revenue: ">= 10000"`."""

    revenue: Annotated[Comparison, BeforeValidator(_comparison)]


class Recency(Strict):
    """When the last purchase was: `within` that long ago, or `over` that long ago."""

    within: Duration | None = None
    over: Duration | None = None

    @model_validator(mode="after")
    def _one(self) -> Recency:
        if (self.within is None) == (self.over is None):
            raise WordedError("value.recency")
        return self


class LastPurchaseRule(Strict):
    """The lead bought, and the last time was `within: 90d` (or `over: 180d`) ago."""

    last_purchase: Recency


class RfmRule(Strict):
    """The lead is a customer in one of these RFM segments, as of when the rule is read."""

    rfm: Annotated[tuple[RfmSegment, ...], BeforeValidator(_rfm_segments)] = Field(min_length=1)


RULE_KINDS = (
    "any",
    "all",
    "not",
    "score",
    "tag",
    "stage",
    "event",
    "answer",
    "contact",
    "source",
    "offer",
    "rfm",
    "purchases",
    "revenue",
    "last_purchase",
)


def _rule_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "event"
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in RULE_KINDS else None
    if isinstance(value, NotRule):  # its field is `not_`, as `not` is a Python keyword
        return "not"
    if isinstance(value, BaseModel):
        return next((k for k in RULE_KINDS if k in type(value).model_fields), None)
    return None


def _split_many_keys(value: Any) -> Any:
    # `{tag: x, score: ">= 10"}` reads as "both": the same as all: [{tag: x}, {score: ...}].
    if isinstance(value, dict) and len(value) > 1:
        return {"all": [{key: item} for key, item in value.items()]}
    return value


Rule = Annotated[
    Annotated[AnyRule, Tag("any")]
    | Annotated[AllRule, Tag("all")]
    | Annotated[NotRule, Tag("not")]
    | Annotated[ScoreRule, Tag("score")]
    | Annotated[TagRule, Tag("tag")]
    | Annotated[StageRule, Tag("stage")]
    | Annotated[EventRule, Tag("event")]
    | Annotated[AnswerRule, Tag("answer")]
    | Annotated[ContactRule, Tag("contact")]
    | Annotated[SourceRule, Tag("source")]
    | Annotated[OfferRule, Tag("offer")]
    | Annotated[RfmRule, Tag("rfm")]
    | Annotated[PurchasesRule, Tag("purchases")]
    | Annotated[RevenueRule, Tag("revenue")]
    | Annotated[LastPurchaseRule, Tag("last_purchase")],
    Discriminator(
        _rule_kind,
        custom_error_type="rule",
        # Shown as it is where a rule is read alone (`leadbot broadcast --segment`); the
        # loader words it in the scenario's language.
        custom_error_message=Say("schema.rule_kinds").render("en"),
    ),
    BeforeValidator(_split_many_keys),
]
for _model in (AnyRule, AllRule, NotRule):
    _model.model_rebuild()


def leaves(rule: Rule) -> list[Rule]:
    """The rule's conditions under its any/all/not."""
    match rule:
        case AnyRule():
            return [leaf for child in rule.any for leaf in leaves(child)]
        case AllRule():
            return [leaf for child in rule.all for leaf in leaves(child)]
        case NotRule():
            return leaves(rule.not_)
    return [rule]


def events_in(rule: Rule) -> set[str]:
    """The event names the rule reads."""
    return {leaf.event.name for leaf in leaves(rule) if isinstance(leaf, EventRule)}


MONEY_RULES = (PurchasesRule, RevenueRule, LastPurchaseRule)
