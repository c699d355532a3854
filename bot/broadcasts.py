"""Broadcasts: one message to a segment of leads, through the outbox and its pacing, each lead
in their own time zone and outside quiet hours. Each run of `leadbot broadcast` that queues
messages is recorded (storage/broadcast_runs.py), so it can be followed and cancelled."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.consent import MARKETING
from bot.rule_facts import load_facts_many, reads
from bot.rules import evaluate
from bot.scenario.conditions import (
    AllRule,
    AnswerRule,
    AnyRule,
    EventRule,
    NotRule,
    OfferRule,
    Rule,
    SourceRule,
    TagRule,
)
from bot.scenario.model import Scenario
from bot.scenario.settings import RfmSettings, ScenarioSettings
from bot.sequences import NO_CHANNEL
from bot.timing import local_instant, out_of_quiet_hours, zone_of
from storage import broadcast_runs
from storage.broadcast_runs import RUN_KEY
from storage.database import Database
from storage.models import Answer, Lead
from storage.repositories import LeadRepository, outbox_row

BROADCAST = "broadcast"  # outbox kind
OCCURRENCE = "occurrence"  # the payload's date of one time of a broadcast that repeats
BATCH = 5_000  # leads queued per transaction
RUN_ATTEMPTS = 5  # numbers tried for a new run when other commands take them meanwhile


def adhoc_id(text: str, segment: str) -> str:
    """The id of a broadcast typed on the command line: the same text to the same segment is
    the same broadcast, so running the command twice sends nothing twice."""
    return "adhoc_" + hashlib.sha256(f"{segment}\n{text}".encode()).hexdigest()[:12]


def key_of(broadcast_id: str, lead_id: int) -> str:
    """The outbox key of the broadcast's row for a lead: a lead gets a broadcast once."""
    return f"{BROADCAST}:{broadcast_id}:{lead_id}"


@dataclass(frozen=True)
class Audience:
    matched: int  # leads the segment describes
    reachable: list[int]  # of them, those who may get advertising now
    # Of the others, why not: "blocked", "unsubscribed", "no_consent" (the first that holds).
    excluded: dict[str, int] = field(default_factory=dict)
    first_matched: int | None = None  # a lead the segment describes, for a preview


AUDIENCE_FIELDS = (
    Lead.id,
    Lead.score,
    Lead.stage,
    Lead.funnel_stage,
    Lead.source,
    Lead.unsubscribed_at,
    Lead.unreachable_at,
)


async def audience(
    db: Database, segment: Rule, *, now: datetime, rfm_limits: RfmSettings
) -> Audience:
    """Who a segment reaches: only leads with advertising consent, not unsubscribed, not
    blocked, not erased. Consent is checked again when each message is sent. A few
    statements per thousands of leads."""
    matched, reachable, first = 0, [], None
    excluded = {"blocked": 0, "unsubscribed": 0, "no_consent": 0}
    async with db.unit_of_work() as uow:
        # Plain rows of what the facts and the gates read: an object per lead cost more than
        # everything else the audience of a large broadcast takes.
        query = select(*AUDIENCE_FIELDS).where(Lead.erased_at.is_(None)).order_by(Lead.id)
        leads = (await uow.session.execute(query)).all()
        facts = await load_facts_many(uow, leads, reads(segment), now=now, rfm_limits=rfm_limits)
        consenting = await uow.leads.with_active_consent([lead.id for lead in leads], MARKETING)
        for lead in leads:
            if not evaluate(segment, facts[lead.id]):
                continue
            matched += 1
            first = lead.id if first is None else first
            if lead.unreachable_at:
                excluded["blocked"] += 1
            elif lead.unsubscribed_at:
                excluded["unsubscribed"] += 1
            elif lead.id not in consenting:
                excluded["no_consent"] += 1
            else:
                reachable.append(lead.id)
    return Audience(matched, reachable, excluded, first)


def due_at(
    timezone: str | None, at: datetime | None, now: datetime, settings: ScenarioSettings
) -> datetime:
    """When a lead's message is due: `at` as the lead's local wall time (none, or past: now),
    moved out of the lead's quiet hours."""
    zone = zone_of(timezone, settings.timezone)
    due = local_instant(at.date(), at.time(), zone) if at else now
    return out_of_quiet_hours(max(due, now), zone, settings.quiet_hours)


async def start_run(
    db: Database,
    broadcast_id: str,
    *,
    now: datetime,
    text: str | None = None,
    segment: str | None = None,
    at: datetime | None = None,
) -> str:
    """Record a new run of the broadcast; its id (`webinar-1`, then `webinar-2`, ...)."""
    for _ in range(RUN_ATTEMPTS):
        try:
            async with db.unit_of_work() as uow:
                run_id = await broadcast_runs.new_run(
                    uow.session,
                    broadcast_id,
                    now=now,
                    text=text,
                    segment=segment,
                    at=f"{at:%Y-%m-%d %H:%M}" if at else None,
                )
                await uow.commit()
                return run_id
        except IntegrityError:
            continue  # another command took that number meanwhile: the next one
    raise RuntimeError(f"no free run number for broadcast {broadcast_id!r}")


async def forget_run(db: Database, run_id: str) -> None:
    async with db.unit_of_work() as uow:
        await broadcast_runs.forget_run(uow.session, run_id)
        await uow.commit()


async def enqueue(
    db: Database,
    scenario: Scenario,
    broadcast_id: str,
    lead_ids: list[int],
    *,
    now: datetime,
    text: str | None = None,
    at: datetime | None = None,
    run: str | None = None,
    occurrence: str | None = None,
) -> int:
    """Queue the broadcast for these leads; how many rows were new (a lead gets it once).
    `at` is a local wall time in each lead's zone; `text` is for broadcasts not in the
    scenario (those in it are rendered from the scenario when sent, edits included). `run`
    (from `start_run`) marks the rows and counts them in its record. `occurrence` names one
    time of a broadcast that repeats: a lead gets each occurrence once.
    Each `BATCH` of leads is one transaction of three statements (four with a run)."""
    queued = 0
    settings = scenario.settings
    payload = {
        "broadcast": broadcast_id,
        **({"text": text} if text else {}),
        **({RUN_KEY: run} if run else {}),
        **({OCCURRENCE: occurrence} if occurrence else {}),
    }
    keyed = f"{broadcast_id}@{occurrence}" if occurrence else broadcast_id
    for start in range(0, len(lead_ids), BATCH):
        async with db.unit_of_work() as uow:
            part = lead_ids[start : start + BATCH]
            query = select(Lead.id, Lead.timezone).where(Lead.id.in_(part))
            zones = dict((await uow.session.execute(query)).all())  # type: ignore[arg-type]
            identities = await uow.leads.latest_identities(part)
            rows = []
            for lead_id in part:
                if lead_id not in zones:
                    continue
                rows.append(
                    outbox_row(
                        key_of(keyed, lead_id),
                        identities[lead_id].channel if lead_id in identities else NO_CHANNEL,
                        BROADCAST,
                        due_at(zones[lead_id], at, now, settings),
                        now,
                        lead_id,
                        payload,
                    )
                )
            added = await uow.outbox.enqueue_many(rows)
            if run is not None:
                await broadcast_runs.extend_run(uow.session, run, [row_id for row_id, _ in added])
            queued += len(added)
            await uow.commit()
    return queued


async def already_queued(db: Database, broadcast_id: str, lead_ids: list[int]) -> set[int]:
    """The leads `enqueue` would pass over: the broadcast is queued, sent or was stopped for
    them (a row cancelled with `leadbot broadcast --cancel` before it was tried is not)."""
    keys = {key_of(broadcast_id, lead_id): lead_id for lead_id in lead_ids}
    async with db.reading() as session:
        found = await broadcast_runs.existing_keys(session, list(keys))
    return {keys[key] for key in found}


# ---- names a segment uses ----


@dataclass(frozen=True)
class UnknownName:
    """A name in a segment that nothing knows: it would match no lead, silently."""

    kind: str  # "offer", "source", "tag", "event", "question"
    name: str
    suggestion: str | None  # the closest known name
    known: list[str]  # all known names of the kind, sorted


def leaves(rule: Rule) -> Iterator[Rule]:
    """The conditions of a rule, inside any, all and not."""
    if isinstance(rule, AnyRule | AllRule):
        for child in rule.any if isinstance(rule, AnyRule) else rule.all:
            yield from leaves(child)
    elif isinstance(rule, NotRule):
        yield from leaves(rule.not_)
    else:
        yield rule


def named(rule: Rule) -> Iterator[tuple[str, str]]:
    """(kind, name) of every offer, source, tag, event and question the rule names."""
    for leaf in leaves(rule):
        if isinstance(leaf, OfferRule):
            yield "offer", leaf.offer
        elif isinstance(leaf, SourceRule):
            yield "source", leaf.source
        elif isinstance(leaf, TagRule):
            yield "tag", leaf.tag
        elif isinstance(leaf, EventRule):
            yield "event", leaf.event.name
        elif isinstance(leaf, AnswerRule):
            for question in leaf.answer:
                yield "question", question


def scenario_tags(s: Scenario) -> set[str]:
    """The tags the scenario gives: offers' `then.tag`, answer options' `tag`, and those
    `scoring.tags` scores."""
    tags = {tag for offer in s.offers.values() for tag in offer.then.tag}
    for question in s.questions.values():
        tags |= {option.tag for option in question.options if option.tag}
    return tags | set(s.scoring.tags)


def scenario_sources(s: Scenario) -> set[str]:
    """The sources the scenario's own rules name (`scoring.qualify`, steps' `if:`)."""
    rules = [s.scoring.qualify] if s.scoring.qualify is not None else []
    rules += [step.if_ for seq in s.sequences.values() for step in seq.steps if step.if_]
    return {name for rule in rules for kind, name in named(rule) if kind == "source"}


async def unknown_names(db: Database, s: Scenario, segment: Rule) -> list[UnknownName]:
    """The names in the segment that neither the scenario nor the database knows: an offer
    or question not in the scenario, a tag nothing gives, an event nothing records, a
    source no lead came by (and no rule of the scenario names)."""
    names = list(dict.fromkeys(named(segment)))
    if not names:
        return []
    kinds = {kind for kind, _ in names}
    known: dict[str, set[str]] = {"offer": set(s.offers), "question": set(s.questions)}
    async with db.reading() as session:
        if "source" in kinds:
            known["source"] = scenario_sources(s) | await broadcast_runs.sources_seen(session)
        if "tag" in kinds:
            known["tag"] = scenario_tags(s) | await broadcast_runs.tags_seen(session)
        if "event" in kinds:
            known["event"] = s.known_events() | await broadcast_runs.events_seen(session)
    unknown = []
    for kind, name in names:
        if name not in known[kind]:
            listed = sorted(known[kind])
            close = difflib.get_close_matches(name, listed, n=1)
            unknown.append(UnknownName(kind, name, close[0] if close else None, listed))
    return unknown


# ---- a preview ----


@dataclass(frozen=True)
class SampleLead:
    id: int
    first_name: str | None
    channel: str | None
    values: dict[str, str]  # the placeholders known before sending: names, policy URL


async def sample_lead(db: Database, s: Scenario, lead_id: int) -> SampleLead:
    """What a preview shows of a lead; codes and referral links are made only when sent."""
    async with db.reading() as session:
        query = select(Lead.first_name).where(Lead.id == lead_id)
        first_name = (await session.execute(query)).scalar_one_or_none()
        query = select(Answer.question, Answer.value).where(Answer.lead_id == lead_id)
        answers = dict((await session.execute(query)).all())  # type: ignore[arg-type]
        identity = (await LeadRepository(session).latest_identities([lead_id])).get(lead_id)
    values = s.placeholder_values(first_name, s.name_answer(answers))
    return SampleLead(lead_id, first_name, identity.channel if identity else None, values)


# ---- when it goes out ----


@dataclass
class ZoneWindow:
    """The leads of one time zone: their messages are due at one moment (before the limit)."""

    zone: str
    leads: int
    due: datetime
    after_quiet_hours: bool  # `at` (or now) fell in quiet hours: moved to their end


@dataclass
class Forecast:
    """When the messages of a broadcast would be due, by the rules the worker keeps."""

    zones: list[ZoneWindow]
    dues: dict[int, datetime]  # lead -> due, before the advertising limit
    timezones: dict[int, str | None]  # lead -> its own zone, if known
    channels: dict[str, int]  # messenger -> leads it goes to
    held: dict[int, datetime] = field(default_factory=dict)  # lead -> due after the limit

    @property
    def first(self) -> datetime | None:
        return min((self.held.get(lead, due) for lead, due in self.dues.items()), default=None)

    @property
    def last(self) -> datetime | None:
        return max((self.held.get(lead, due) for lead, due in self.dues.items()), default=None)


async def forecast(
    db: Database, s: Scenario, lead_ids: list[int], *, at: datetime | None, now: datetime
) -> Forecast:
    """Each lead's due moment as `enqueue` would set it, grouped by time zone."""
    zones: dict[str, ZoneWindow] = {}
    dues: dict[int, datetime] = {}
    timezones: dict[int, str | None] = {}
    channels: dict[str, int] = {}
    settings = s.settings
    for start in range(0, len(lead_ids), BATCH):
        part = lead_ids[start : start + BATCH]
        async with db.reading() as session:
            query = select(Lead.id, Lead.timezone).where(Lead.id.in_(part))
            found = dict((await session.execute(query)).all())  # type: ignore[arg-type]
            identities = await LeadRepository(session).latest_identities(part)
        timezones.update(found)
        for lead_id, timezone in found.items():
            zone = zone_of(timezone, settings.timezone)
            due = due_at(timezone, at, now, settings)
            dues[lead_id] = due
            wanted = max(local_instant(at.date(), at.time(), zone), now) if at else now
            window = zones.setdefault(zone.key, ZoneWindow(zone.key, 0, due, due != wanted))
            window.leads += 1
            channel = identities[lead_id].channel if lead_id in identities else NO_CHANNEL
            channels[channel] = channels.get(channel, 0) + 1
    windows = sorted(zones.values(), key=lambda w: (w.due, w.zone))
    return Forecast(windows, dues, timezones, channels)
