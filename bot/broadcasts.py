"""Broadcasts: one message to a segment of leads, through the outbox and its pacing, each lead
in their own time zone and outside quiet hours."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.consent import MARKETING
from bot.rules import evaluate, load_facts_many, reads
from bot.scenario.conditions import Rule
from bot.scenario.model import Scenario
from bot.sequences import NO_CHANNEL
from bot.timing import local_instant, out_of_quiet_hours, zone_of
from storage.database import Database
from storage.models import Lead
from storage.repositories import outbox_row

BROADCAST = "broadcast"  # outbox kind
BATCH = 5_000  # leads queued per transaction


def adhoc_id(text: str, segment: str) -> str:
    """The id of a broadcast typed on the command line: the same text to the same segment is
    the same broadcast, so running the command twice sends nothing twice."""
    return "adhoc_" + hashlib.sha256(f"{segment}\n{text}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Audience:
    matched: int  # leads the segment describes
    reachable: list[int]  # of them, those who may get advertising now


AUDIENCE_FIELDS = (
    Lead.id,
    Lead.score,
    Lead.stage,
    Lead.funnel_stage,
    Lead.source,
    Lead.unsubscribed_at,
    Lead.unreachable_at,
)


async def audience(db: Database, segment: Rule) -> Audience:
    """Who a segment reaches: only leads with advertising consent, not unsubscribed, not
    blocked, not erased. Consent is checked again when each message is sent. A few
    statements per thousands of leads."""
    matched, reachable = 0, []
    async with db.unit_of_work() as uow:
        # Plain rows of what the facts and the gates read: an object per lead cost more than
        # everything else the audience of a large broadcast takes.
        query = select(*AUDIENCE_FIELDS).where(Lead.erased_at.is_(None)).order_by(Lead.id)
        leads = (await uow.session.execute(query)).all()
        facts = await load_facts_many(uow, leads, reads(segment))
        consenting = await uow.leads.with_active_consent([lead.id for lead in leads], MARKETING)
        for lead in leads:
            if not evaluate(segment, facts[lead.id]):
                continue
            matched += 1
            if lead.unsubscribed_at or lead.unreachable_at:
                continue
            if lead.id in consenting:
                reachable.append(lead.id)
    return Audience(matched, reachable)


async def enqueue(
    db: Database,
    scenario: Scenario,
    broadcast_id: str,
    lead_ids: list[int],
    *,
    now: datetime,
    text: str | None = None,
    at: datetime | None = None,
) -> int:
    """Queue the broadcast for these leads; how many rows were new (a lead gets it once).
    `at` is a local wall time in each lead's zone; `text` is for broadcasts not in the
    scenario (those in it are rendered from the scenario when sent, edits included).
    Each `BATCH` of leads is one transaction of three statements."""
    queued = 0
    settings = scenario.settings
    payload = {"broadcast": broadcast_id, **({"text": text} if text else {})}
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
                zone = zone_of(zones[lead_id], settings.timezone)
                due = local_instant(at.date(), at.time(), zone) if at else now
                due = out_of_quiet_hours(max(due, now), zone, settings.quiet_hours)
                rows.append(
                    outbox_row(
                        f"{BROADCAST}:{broadcast_id}:{lead_id}",
                        identities[lead_id].channel if lead_id in identities else NO_CHANNEL,
                        BROADCAST,
                        due,
                        now,
                        lead_id,
                        payload,
                    )
                )
            queued += len(await uow.outbox.enqueue_many(rows))
            await uow.commit()
    return queued
