"""The evaluator of the scenario rule language (`scoring.qualify` and a step's `if:`).

The rules themselves are parsed by `bot.scenario.model`; this module says what they mean for
one lead, as docs/scenario.md ("rules") describes. Decisions the docs leave open:

- `stage: <funnel stage>` is true once the lead has REACHED that stage: its `funnel_stage` is
  that stage or a later one. So a customer satisfies `stage: qualified`, and a lead that
  unsubscribed after qualifying still does (a side stage keeps the furthest funnel stage).
- `stage: lost | unsubscribed | blocked` is true only while the lead is at exactly that stage.
- An answer is stored as text. A `compare` condition is true only when that text is a plain
  number (`9`, `-3`, `9.5`, `9,5`) that compares true; any other text makes it false, even for
  `!=`. An `equals` condition compares texts case-insensitively, ignoring surrounding spaces.
  An unanswered question makes its condition false. Several questions must all match.
- An event rule compares how many times the event happened (0 when it never did).
- `contact: any` means a phone or an e-mail.
- `rfm: <segment>` is true for a customer (a lead with a purchase) whose RFM segment, as of
  the `now` the facts are loaded at, is one of those named (bot/analytics/rfm.py defines the
  segments, with the scenario's `settings.rfm`). A lead who never bought is in none.
"""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import func, select

from bot.analytics import rfm
from bot.scenario.conditions import (
    AllRule,
    AnswerCondition,
    AnswerRule,
    AnyRule,
    Comparison,
    ContactRule,
    EventRule,
    NotRule,
    OfferRule,
    RfmRule,
    Rule,
    ScoreRule,
    SourceRule,
    StageRule,
    TagRule,
    events_in,
    leaves,
)
from bot.scenario.settings import RfmSettings
from bot.stages import RANK
from storage import kept_facts
from storage.models import Answer, Contact, Event, Lead, Tag
from storage.unit_of_work import UnitOfWork

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# A plain number as a person types it; float() alone would also take "nan", "1e3" or "1_0".
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
CONTACT_KINDS = frozenset({"phone", "email"})


@dataclass(frozen=True)
class LeadFacts:
    """What rules may read about a lead, loaded once so evaluating touches no database."""

    score: int
    tags: frozenset[str]
    answers: Mapping[str, str]  # question id -> the stored answer text
    stage: str  # where the lead is now (may be a side stage)
    funnel_stage: str  # the furthest funnel stage reached
    event_counts: Mapping[str, int]  # event name -> times it happened; missing means 0
    contacts: frozenset[str]  # contact kinds the lead left: "phone", "email"
    source: str | None = None  # the first `src_` tag the lead came with
    offers: frozenset[str] = frozenset()  # offers the lead took
    rfm: str | None = None  # the customer's RFM segment; None: not a customer (or not read)


def evaluate(rule: Rule, facts: LeadFacts) -> bool:
    """Whether the rule is true for the lead.

    Kept apart from `explain` (which builds texts) so the two can be checked against each
    other, and so a plain check builds no strings."""
    match rule:
        case AnyRule():
            return any(evaluate(child, facts) for child in rule.any)
        case AllRule():
            return all(evaluate(child, facts) for child in rule.all)
        case NotRule():
            return not evaluate(rule.not_, facts)
        case ScoreRule():
            return _compares(facts.score, rule.score)
        case TagRule():
            return rule.tag in facts.tags
        case StageRule():
            return _at_stage(rule.stage, facts)
        case EventRule():
            event = rule.event
            return _OPERATORS[event.op](facts.event_counts.get(event.name, 0), event.count)
        case AnswerRule():
            return all(
                _answer_matches(condition, facts.answers.get(question))
                for question, condition in rule.answer.items()
            )
        case ContactRule():
            return bool(_contacts_for(rule.contact) & facts.contacts)
        case SourceRule():
            return facts.source == rule.source
        case OfferRule():
            return rule.offer in facts.offers
        case RfmRule():
            return facts.rfm in rule.rfm
    raise TypeError(f"not a rule: {rule!r}")


def explain(rule: Rule, facts: LeadFacts) -> str | None:
    """Why the rule is true, in short English for managers ("score 65 >= 60"); None if false.

    `any` names its first true branch, `all` lists the reasons of every branch."""
    match rule:
        case AnyRule():
            return next((r for r in (explain(c, facts) for c in rule.any) if r is not None), None)
        case AllRule():
            reasons = [explain(child, facts) for child in rule.all]
            if None in reasons:
                return None
            if len(reasons) == 1:
                return reasons[0]
            return "all of: " + ", ".join(_grouped(r) for r in reasons if r is not None)
        case NotRule():
            return _explain_not(rule.not_, facts)
        case ScoreRule():
            if not _compares(facts.score, rule.score):
                return None
            return f"score {_number(facts.score)} {_describe_comparison(rule.score)}"
        case TagRule():
            return f"tag {rule.tag}" if rule.tag in facts.tags else None
        case StageRule():
            return _explain_stage(rule.stage, facts)
        case EventRule():
            event = rule.event
            times = facts.event_counts.get(event.name, 0)
            if not _OPERATORS[event.op](times, event.count):
                return None
            if (event.op, event.count) == (">=", 1):  # the plain "it happened" form
                return event.name
            return f"{event.name} {times} {event.op} {event.count}"
        case AnswerRule():
            parts = []
            for question, condition in rule.answer.items():
                reason = _explain_answer(question, condition, facts.answers.get(question))
                if reason is None:
                    return None
                parts.append(reason)
            return ", ".join(parts)
        case ContactRule():
            present = sorted(_contacts_for(rule.contact) & facts.contacts)
            return f"contact {present[0]}" if present else None
        case SourceRule():
            return f"source {rule.source}" if facts.source == rule.source else None
        case OfferRule():
            return f"offer {rule.offer}" if rule.offer in facts.offers else None
        case RfmRule():
            return f"rfm {facts.rfm}" if facts.rfm in rule.rfm else None
    raise TypeError(f"not a rule: {rule!r}")


@dataclass(frozen=True)
class Reads:
    """Which of a lead's stored facts rules read: only those are loaded (the lead's own
    columns, score, stage and source, come with the lead)."""

    events: frozenset[str] = frozenset()  # the names whose counts are read
    tags: bool = False
    answers: bool = False
    contacts: bool = False
    offers: bool = False
    rfm: bool = False  # the customer's RFM segment

    def __or__(self, other: Reads) -> Reads:
        return Reads(
            self.events | other.events,
            self.tags or other.tags,
            self.answers or other.answers,
            self.contacts or other.contacts,
            self.offers or other.offers,
            self.rfm or other.rfm,
        )


def reads(rule: Rule) -> Reads:
    """What evaluating (or explaining) the rule reads."""
    kinds = {type(leaf) for leaf in leaves(rule)}
    return Reads(
        events=frozenset(events_in(rule)),
        tags=TagRule in kinds,
        answers=AnswerRule in kinds,
        contacts=ContactRule in kinds,
        offers=OfferRule in kinds,
        rfm=RfmRule in kinds,
    )


class LeadColumns(Protocol):
    """What the facts take from the lead itself: a `Lead`, or a plain row of these columns."""

    id: int
    score: int
    stage: str
    funnel_stage: str
    source: str | None


async def load_facts(
    uow: UnitOfWork,
    lead: Lead,
    needs: Reads,
    *,
    now: datetime | None = None,
    rfm_limits: RfmSettings | None = None,
) -> LeadFacts:
    """The facts of a lead this transaction holds, those `needs` says (see `reads`): what it
    keeps on its row (storage/kept_facts.py), computed and kept first if it is not known;
    answers, when read, from their table. The RFM segment, when read, is the one at `now`
    (the caller's clock; the system clock if not given) with the scenario's
    `settings.rfm` as `rfm_limits` (the defaults if not given)."""
    session = uow.session
    facts = kept_facts.current(session, lead)
    if facts is None:
        facts = await kept_facts.compute(session, lead.id)
        kept_facts.keep(session, lead, facts)
    answers: dict[str, str] = {}
    if needs.answers:
        await session.flush()
        query = select(Answer.question, Answer.value).where(Answer.lead_id == lead.id)
        answers = dict((await session.execute(query)).all())  # type: ignore[arg-type]
    segments: dict[int, str] = {}
    if needs.rfm:
        await session.flush()
        segments = await rfm.segments_of(
            session, [lead.id], now or datetime.now(UTC), rfm_limits or RfmSettings()
        )
    counts = facts.get("events", {})
    return LeadFacts(
        score=lead.score,
        tags=frozenset(facts.get("tags", ())),
        answers=answers,
        stage=lead.stage,
        funnel_stage=lead.funnel_stage,
        event_counts={name: counts.get(name, 0) for name in sorted(needs.events)},
        contacts=frozenset(facts.get("contacts", ())),
        source=lead.source,
        offers=frozenset(facts.get("offers", ())),
        rfm=segments.get(lead.id),
    )


async def times(uow: UnitOfWork, lead: Lead, name: str) -> int:
    """How many `name` events the lead has (those added in this transaction included)."""
    return (await load_facts(uow, lead, Reads(events=frozenset({name})))).event_counts[name]


# Leads read per statement: far under both databases' bound-parameter limits.
FACTS_CHUNK = 5_000


async def load_facts_many(
    uow: UnitOfWork,
    leads: Sequence[LeadColumns],
    needs: Reads,
    *,
    now: datetime | None = None,
    rfm_limits: RfmSettings | None = None,
) -> dict[int, LeadFacts]:
    """The facts of many leads (a broadcast's segment, a delivery batch's `if:`), in a
    statement per kind of fact `needs` names per `FACTS_CHUNK` leads, whatever their number.
    What is not needed is left empty. `now` and `rfm_limits` as for `load_facts`."""
    if needs != Reads():
        await uow.session.flush()  # rules run right after the event recorded what it did
    events = needs.events
    moment, limits = now or datetime.now(UTC), rfm_limits or RfmSettings()
    facts: dict[int, LeadFacts] = {}
    for start in range(0, len(leads), FACTS_CHUNK):
        part = leads[start : start + FACTS_CHUNK]
        ids = [lead.id for lead in part]
        answers: dict[int, dict[str, str]] = defaultdict(dict)
        if needs.answers:
            for lead_id, question, value in await uow.session.execute(
                select(Answer.lead_id, Answer.question, Answer.value).where(
                    Answer.lead_id.in_(ids)
                )
            ):
                answers[lead_id][question] = value
        contacts: dict[int, set[str]] = defaultdict(set)
        if needs.contacts:
            for lead_id, kind in await uow.session.execute(
                select(Contact.lead_id, Contact.kind).where(Contact.lead_id.in_(ids)).distinct()
            ):
                contacts[lead_id].add(kind)
        tags: dict[int, set[str]] = defaultdict(set)
        if needs.tags:
            for lead_id, tag in await uow.session.execute(
                select(Tag.lead_id, Tag.tag).where(Tag.lead_id.in_(ids))
            ):
                tags[lead_id].add(tag)
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        if events:
            for lead_id, name, number in await uow.session.execute(
                select(Event.lead_id, Event.name, func.count())
                .where(Event.lead_id.in_(ids), Event.name.in_(events))
                .group_by(Event.lead_id, Event.name)
            ):
                counts[lead_id][name] = number
        offers: dict[int, set[str]] = defaultdict(set)
        if needs.offers:
            for lead_id, offer in await uow.session.execute(
                select(Event.lead_id, Event.payload["offer"].as_string())
                .where(Event.lead_id.in_(ids), Event.name == "offer_taken")
                .distinct()
            ):
                if offer:
                    offers[lead_id].add(offer)
        segments: dict[int, str] = {}
        if needs.rfm:
            segments = await rfm.segments_of(uow.session, ids, moment, limits)
        for lead in part:
            facts[lead.id] = LeadFacts(
                score=lead.score,
                tags=frozenset(tags[lead.id]),
                answers=answers[lead.id],
                stage=lead.stage,
                funnel_stage=lead.funnel_stage,
                event_counts={name: counts[lead.id].get(name, 0) for name in sorted(events)},
                contacts=frozenset(contacts[lead.id]),
                source=lead.source,
                offers=frozenset(offers[lead.id]),
                rfm=segments.get(lead.id),
            )
    return facts


# ---- helpers ----


def _explain_not(inner: Rule, facts: LeadFacts) -> str | None:
    if evaluate(inner, facts):
        return None
    match inner:
        case NotRule():  # `not: {not: r}` is just r
            return explain(inner.not_, facts)
        case AnyRule():
            return "none of: " + ", ".join(_grouped(_describe(c)) for c in inner.any)
        case AllRule():  # name the branch that failed, not the whole list
            failed = next(c for c in inner.all if not evaluate(c, facts))
            return _explain_not(failed, facts)
    return f"not {_describe(inner)}"


def _at_stage(stage: str, facts: LeadFacts) -> bool:
    if stage in RANK:  # a funnel stage: reached it or went further
        # An unknown stored stage ranks below everything rather than crashing a handler.
        return RANK.get(facts.funnel_stage, -1) >= RANK[stage]
    return facts.stage == stage  # a side stage: only while the lead is there


def _explain_stage(stage: str, facts: LeadFacts) -> str | None:
    if not _at_stage(stage, facts):
        return None
    if stage in RANK and facts.funnel_stage != stage:
        return f"stage {facts.funnel_stage}, past {stage}"
    return f"stage {stage}"


def _answer_matches(condition: AnswerCondition, value: str | None) -> bool:
    if value is None:  # not answered
        return False
    text = value.strip()
    if condition.compare is not None:
        if not _NUMBER.fullmatch(text):
            return False
        if not _compares(float(text.replace(",", ".")), condition.compare):
            return False
    # A condition with neither part (`{}` written out) asks only that the question was answered.
    return condition.equals is None or text.casefold() == condition.equals.strip().casefold()


def _explain_answer(question: str, condition: AnswerCondition, value: str | None) -> str | None:
    if value is None or not _answer_matches(condition, value):
        return None
    if condition.compare is not None:
        return f"answer {question} {value.strip()} {_describe_comparison(condition.compare)}"
    return f'answer {question} "{value.strip()}"'


def _contacts_for(kind: str) -> frozenset[str]:
    return CONTACT_KINDS if kind == "any" else frozenset({kind})


def _describe(rule: Rule) -> str:
    """What the rule asks for, true or not (for `not` reasons)."""
    match rule:
        case AnyRule():
            return "any of: " + ", ".join(_grouped(_describe(c)) for c in rule.any)
        case AllRule():
            return "all of: " + ", ".join(_grouped(_describe(c)) for c in rule.all)
        case NotRule():
            return f"not {_grouped(_describe(rule.not_))}"
        case ScoreRule():
            return f"score {_describe_comparison(rule.score)}"
        case TagRule():
            return f"tag {rule.tag}"
        case StageRule():
            return f"stage {rule.stage}"
        case EventRule():
            event = rule.event
            if (event.op, event.count) == (">=", 1):
                return event.name
            return f"{event.name} {event.op} {event.count}"
        case AnswerRule():
            parts = []
            for question, condition in rule.answer.items():
                wants = []
                if condition.compare is not None:
                    wants.append(_describe_comparison(condition.compare))
                if condition.equals is not None:
                    wants.append(f'"{condition.equals.strip()}"')
                parts.append(" ".join([f"answer {question}", *wants]))
            return ", ".join(parts)
        case ContactRule():
            return f"contact {rule.contact}"
        case SourceRule():
            return f"source {rule.source}"
        case OfferRule():
            return f"offer {rule.offer}"
        case RfmRule():
            return "rfm " + " or ".join(rule.rfm)
    raise TypeError(f"not a rule: {rule!r}")


def _compares(value: float, comparison: Comparison) -> bool:
    return _OPERATORS[comparison.op](value, comparison.number)


def _describe_comparison(comparison: Comparison) -> str:
    return f"{comparison.op} {_number(comparison.number)}"


def _number(value: float) -> str:
    """60.0 reads as "60": marketers wrote whole numbers, the model stores floats."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _grouped(text: str) -> str:
    """Brackets around a list inside a list, so "all of: a, (any of: b, c)" stays readable."""
    return f"({text})" if ", " in text else text
