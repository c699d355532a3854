"""Points for events and the qualify rule: when it first becomes true the lead is handed to
managers (a lead card per managers' chat, a CRM export per configured CRM), exactly once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot import stages
from bot.rule_facts import load_facts, reads, times
from bot.rules import explain
from bot.scenario.model import Scenario
from storage.models import Handoff, Lead
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

CARD = "lead_card"  # outbox kinds of the handoff
CRM_EXPORT = "crm_export"
CRM_CHANNEL = "crm"


@dataclass(frozen=True)
class Routes:
    """Where a handoff goes: the channels that have a managers' chat, the CRMs configured."""

    managers: tuple[str, ...] = ()
    crm: tuple[str, ...] = ()


async def score_event(uow: UnitOfWork, s: Scenario, lead: Lead, name: str) -> None:
    """Add the event's points; call after recording it (`max_times` counts the recorded)."""
    points = s.scoring.events.get(name)
    if points is None:
        return
    if points.max_times is not None and await times(uow, lead, name) > points.max_times:
        return
    lead.score += points.points


async def queue_cards(
    uow: UnitOfWork, lead_id: int, purpose: str, managers: tuple[str, ...], now: datetime
) -> int:
    """Queue the lead's card in every managers' chat: first posted (`card`), re-posted as a
    `reminder` or an `escalation`, each at most once per chat. The rows queued."""
    queued = 0
    for channel in managers:
        row = await uow.outbox.enqueue(
            idempotency_key=f"{purpose}:{lead_id}:{channel}",
            channel=channel,
            kind=CARD,
            due_at=now,
            now=now,
            lead_id=lead_id,
            payload={"purpose": purpose},
        )
        queued += row is not None
    return queued


async def qualify(
    uow: UnitOfWork, s: Scenario, lead: Lead, now: datetime, routes: Routes
) -> str | None:
    """Hand the lead over if the qualify rule holds and it was never handed over; returns why
    (the rule that held, in words for managers) or None. The caller holds the lead's lock,
    and the handoff's primary key is the lead: a concurrent twin fails at commit."""
    rule = s.scoring.qualify
    if rule is None or lead.erased_at is not None:
        return None
    if stages.RANK[lead.funnel_stage] >= stages.RANK["qualified"]:
        return None  # handed over before, or a customer already
    # The rule first: it reads only what the lead keeps, and is false after most events.
    facts = await load_facts(uow, lead, reads(rule), now=now, rfm_limits=s.settings.rfm)
    why = explain(rule, facts)
    if why is None or not await hand_over(uow, lead, now, routes, why):
        return None
    return why


async def hand_over(uow: UnitOfWork, lead: Lead, now: datetime, routes: Routes, why: str) -> bool:
    """Hand the lead to the managers (a card in each managers' chat, an export to each CRM)
    unless it ever was: False then. `why` is what the card says. The caller holds the lock."""
    if lead.erased_at is not None or await uow.session.get(Handoff, lead.id) is not None:
        return False
    uow.session.add(Handoff(lead_id=lead.id, status="open", rule=why[:256], qualified_at=now))
    stages.advance(lead, "qualified", reason=f"qualify: {why}"[:128], now=now, events=uow.events)
    uow.events.add(lead.id, "qualified", now=now, payload={"rule": why[:256]})
    await queue_cards(uow, lead.id, "card", routes.managers, now)
    for target in routes.crm:
        await uow.outbox.enqueue(
            idempotency_key=f"crm:{target}:{lead.id}",
            channel=CRM_CHANNEL,
            kind=CRM_EXPORT,
            due_at=now,
            now=now,
            lead_id=lead.id,
            payload={"target": target},
        )
    log.info("lead %s qualified: %s", lead.id, why)
    return True
