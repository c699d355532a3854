"""What rules read about leads (`LeadFacts`), and loading it: for one lead in its event's
transaction (`load_facts`) or for many in a few statements (`load_facts_many`), only what the
rules in play read (`reads`). bot/rules.py says what the rules mean for the facts.

Money (`purchases:`, `revenue:`, `last_purchase:`) is read as the RFM section counts it: the
`purchase` events made by the facts' `now`, their `amount`s summed (a purchase without an
amount adds 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics import rfm
from bot.scenario.conditions import (
    MONEY_RULES,
    AnswerRule,
    ContactRule,
    EventCount,
    EventRule,
    OfferRule,
    RfmRule,
    Rule,
    TagRule,
    leaves,
    shown,
)
from bot.scenario.settings import RfmSettings
from storage import kept_facts
from storage.models import Answer, Contact, Event, Lead, Tag
from storage.unit_of_work import UnitOfWork


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
    purchases: int = 0  # purchases made by `now` (when read)
    revenue: Decimal = Decimal(0)  # their amounts' sum
    last_purchase: datetime | None = None
    now: datetime | None = None  # the moment the facts describe (recency reads it)


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
    money: bool = False  # purchases, revenue, the last purchase
    # Counts of events whose payload matches (`event: {name:, where:}`), by `EventCount.key`.
    matching: frozenset[EventCount] = frozenset()

    def __or__(self, other: Reads) -> Reads:
        return Reads(
            self.events | other.events,
            self.tags or other.tags,
            self.answers or other.answers,
            self.contacts or other.contacts,
            self.offers or other.offers,
            self.rfm or other.rfm,
            self.money or other.money,
            self.matching | other.matching,
        )


def reads(rule: Rule) -> Reads:
    """What evaluating (or explaining) the rule reads."""
    kinds = {type(leaf) for leaf in leaves(rule)}
    counted = [leaf.event for leaf in leaves(rule) if isinstance(leaf, EventRule)]
    return Reads(
        events=frozenset(event.name for event in counted if not event.where),
        tags=TagRule in kinds,
        answers=AnswerRule in kinds,
        contacts=ContactRule in kinds,
        offers=OfferRule in kinds,
        rfm=RfmRule in kinds,
        money=any(kind in kinds for kind in MONEY_RULES),
        matching=frozenset(event for event in counted if event.where),
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
    moment = now or datetime.now(UTC)
    if needs.answers or needs.rfm or needs.money or needs.matching:
        await session.flush()  # what this event recorded counts
    answers: dict[str, str] = {}
    if needs.answers:
        query = select(Answer.question, Answer.value).where(Answer.lead_id == lead.id)
        answers = dict((await session.execute(query)).all())  # type: ignore[arg-type]
    segments: dict[int, str] = {}
    if needs.rfm:
        segments = await rfm.segments_of(session, [lead.id], moment, rfm_limits or RfmSettings())
    counts = dict(facts.get("events", {}))
    money = await _money_of(session, [lead.id], moment) if needs.money else {}
    if needs.matching:
        for key, number in (await _matching_counts(session, [lead.id], needs.matching)).items():
            counts[key[1]] = number
    bought = money.get(lead.id)
    return LeadFacts(
        score=lead.score,
        tags=frozenset(facts.get("tags", ())),
        answers=answers,
        stage=lead.stage,
        funnel_stage=lead.funnel_stage,
        event_counts={name: counts.get(name, 0) for name in _counted(needs)},
        contacts=frozenset(facts.get("contacts", ())),
        source=lead.source,
        offers=frozenset(facts.get("offers", ())),
        rfm=segments.get(lead.id),
        **(bought or {}),
        now=moment if needs.money else None,
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
        money = await _money_of(uow.session, ids, moment) if needs.money else {}
        if needs.matching:
            for (lead_id, key), number in (
                await _matching_counts(uow.session, ids, needs.matching)
            ).items():
                counts[lead_id][key] = number
        for lead in part:
            facts[lead.id] = LeadFacts(
                score=lead.score,
                tags=frozenset(tags[lead.id]),
                answers=answers[lead.id],
                stage=lead.stage,
                funnel_stage=lead.funnel_stage,
                event_counts={name: counts[lead.id].get(name, 0) for name in _counted(needs)},
                contacts=frozenset(contacts[lead.id]),
                source=lead.source,
                offers=frozenset(offers[lead.id]),
                rfm=segments.get(lead.id),
                **(money.get(lead.id) or {}),
                now=moment if needs.money else None,
            )
    return facts


def _counted(needs: Reads) -> list[str]:
    """The keys of the event counts the facts carry: plain names and matching events."""
    return sorted(needs.events | {event.key for event in needs.matching})


async def _money_of(
    session: AsyncSession, lead_ids: Sequence[int], now: datetime
) -> dict[int, dict[str, Any]]:
    """Purchases, revenue and the last purchase of each of these leads that bought by `now`,
    as the RFM section counts them (bot/analytics/rfm.py `customers`), in one statement."""
    rows = rfm.customers(now, lead_ids)
    query = select(rows.c.lead_id, rows.c.purchases, rows.c.money, rows.c.last_purchase)
    return {
        lead_id: {
            "purchases": purchases,
            "revenue": Decimal(str(money)),
            "last_purchase": last if last is None or last.tzinfo else last.replace(tzinfo=UTC),
        }
        for lead_id, purchases, money, last in await session.execute(query)
    }


async def _matching_counts(
    session: AsyncSession, lead_ids: Sequence[int], matching: frozenset[EventCount]
) -> dict[tuple[int, str], int]:
    """How many events of each `matching` condition each lead has: a statement a condition.
    A payload value is compared as text (a number as either of its JSON spellings)."""
    counts: dict[tuple[int, str], int] = {}
    for event in sorted(matching, key=lambda e: e.key):
        found = [
            func.lower(cast(Event.payload[name].as_string(), String)).in_(_as_texts(value))
            for name, value in sorted(event.where.items())
        ]
        query = (
            select(Event.lead_id, func.count())
            .where(Event.lead_id.in_(lead_ids), Event.name == event.name, *found)
            .group_by(Event.lead_id)
        )
        for lead_id, number in await session.execute(query):
            counts[(lead_id, event.key)] = number
    return counts


def _as_texts(value: str | int | float | bool) -> list[str]:
    """The texts a payload value may read as: 45000 was stored as 45000 or as 45000.0, and
    YAML's true is JSON's true; texts compare without case."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [shown(value).lower()]
    number = float(value)
    texts = {repr(number), str(value)}
    if number.is_integer():
        texts.add(str(int(number)))
    return sorted(texts)
