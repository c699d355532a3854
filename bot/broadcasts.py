"""Broadcasts: one message to a segment of leads, through the outbox and its pacing, each lead
in their own time zone and outside quiet hours."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bot.rules import evaluate, events_in, load_facts
from bot.scenario.model import Rule, Scenario
from bot.sequences import lead_channel
from bot.timing import local_instant, out_of_quiet_hours, zone_of
from storage.database import Database
from storage.models import Lead

BROADCAST = "broadcast"  # outbox kind
BATCH = 500  # leads queued per transaction


def adhoc_id(text: str, segment: str) -> str:
    """The id of a broadcast typed on the command line: the same text to the same segment is
    the same broadcast, so running the command twice sends nothing twice."""
    return "adhoc_" + hashlib.sha256(f"{segment}\n{text}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Audience:
    matched: int  # leads the segment describes
    reachable: list[int]  # of them, those who may get advertising now


async def audience(db: Database, segment: Rule) -> Audience:
    """Who a segment reaches: only leads with advertising consent, not unsubscribed, not
    blocked, not erased. Consent is checked again when each message is sent."""
    matched, reachable = 0, []
    wanted_events = events_in(segment)
    async with db.unit_of_work() as uow:
        leads = (
            (
                await uow.session.execute(
                    select(Lead).where(Lead.erased_at.is_(None)).order_by(Lead.id)
                )
            )
            .scalars()
            .all()
        )
        for lead in leads:
            if not evaluate(segment, await load_facts(uow, lead, wanted_events)):
                continue
            matched += 1
            if lead.unsubscribed_at or lead.unreachable_at:
                continue
            if await uow.leads.active_consent(lead.id, "marketing") is not None:
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
    scenario (those in it are rendered from the scenario when sent, edits included)."""
    queued = 0
    settings = scenario.settings
    for start in range(0, len(lead_ids), BATCH):
        async with db.unit_of_work() as uow:
            for lead_id in lead_ids[start : start + BATCH]:
                lead = await uow.leads.get(lead_id)
                if lead is None:
                    continue
                zone = zone_of(lead.timezone, settings.timezone)
                due = local_instant(at.date(), at.time(), zone) if at else now
                due = out_of_quiet_hours(max(due, now), zone, settings.quiet_hours)
                channel = await lead_channel(uow, lead_id)
                payload = {"broadcast": broadcast_id, **({"text": text} if text else {})}
                row = await uow.outbox.enqueue(
                    idempotency_key=f"{BROADCAST}:{broadcast_id}:{lead_id}",
                    channel=channel,
                    kind=BROADCAST,
                    due_at=due,
                    now=now,
                    lead_id=lead_id,
                    payload=payload,
                )
                queued += row is not None
            await uow.commit()
    return queued
