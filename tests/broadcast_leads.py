"""Leads for broadcast tests, written straight into the database: who they are, where they
came from, their time zone and what they agreed to, without walking each through the funnel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.consent import MARKETING, PERSONAL_DATA
from storage.database import Database


@dataclass(frozen=True)
class Person:
    external_id: str
    first_name: str = "Анна"
    timezone: str | None = None
    tags: tuple[str, ...] = ("wants_audit",)
    source: str | None = "vkads"
    marketing: bool = True
    unsubscribed: bool = False
    blocked: bool = False
    channel: str = "console"


async def seed(db: Database, *people: Person) -> dict[str, int]:
    """The people as leads; external id -> lead id."""
    now = datetime.now(UTC)
    ids = {}
    async with db.unit_of_work() as uow:
        for person in people:
            lead, _ = await uow.leads.create(
                channel=person.channel,
                external_id=person.external_id,
                now=now,
                first_name=person.first_name,
            )
            lead.timezone = person.timezone
            lead.source = person.source
            kinds = (PERSONAL_DATA, MARKETING) if person.marketing else (PERSONAL_DATA,)
            for kind in kinds:
                await uow.leads.give_consent(
                    lead.id, kind, text_version="test", channel=person.channel, now=now
                )
            for tag in person.tags:
                await uow.leads.add_tag(lead.id, tag, now=now)
            lead.unsubscribed_at = now if person.unsubscribed else None
            lead.unreachable_at = now if person.blocked else None
            ids[person.external_id] = lead.id
        await uow.commit()
    return ids
