"""What follows a lead's events, wherever they came from (the chat, the events API, a link,
a manager, a redemption): chains stopped and started, promos issued by their `issue_on`,
and the referral voided or rewarded."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bot import promos, referrals, sequences
from bot.clock import Clock
from bot.engine import stages
from bot.scenario.active import ActiveScenario
from bot.scenario.model import Scenario
from storage.database import Database
from storage.models import Lead
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


async def react(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    now: datetime,
    events: list[tuple[str, dict[str, Any]]],
    reached: set[str],
) -> list[str]:
    """React to what happened to the lead in this transaction; the chains started. The
    caller holds the lead's lock; a rewarded referrer is locked after it."""
    started = await sequences.react(uow, scenario, lead, now, events, reached)
    await promos.issue_triggered(uow, scenario, lead, now, events, reached)
    reward = await referrals.react(uow, scenario, lead, now, events)
    if reward is not None:
        await react_and_record(uow, scenario, reward.referrer, now, reward.events, reward.reached)
    return started


async def react_and_record(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    now: datetime,
    events: list[tuple[str, dict[str, Any]]],
    reached: set[str],
) -> None:
    """`react` for events from outside the chat: the chains it starts are recorded and move
    the lead to `warming`, as the engine does in the chat."""
    for started in await react(uow, scenario, lead, now, events, reached):
        uow.events.add(lead.id, "sequence_started", now=now, payload={"sequence": started})
        stages.advance(lead, "warming", reason=f"sequence:{started}", now=now, events=uow.events)


async def remind_expiring_codes(db: Database, scenarios: ActiveScenario, clock: Clock) -> int:
    """The periodic job: `promo_expiring` for codes entering their `remind_before` window,
    with the chains it starts (the reminder step is such a chain). Codes reminded of."""
    s = scenarios.current.scenario
    if not any(p.remind_before for p in s.promos.values()):
        return 0
    now = clock.now()
    async with db.unit_of_work() as uow:
        expiring = await promos.remind_expiring(uow, s, now)
        for lead, details in expiring:
            await react_and_record(uow, s, lead, now, [("promo_expiring", details)], set())
        await uow.commit()
    if expiring:
        log.info("%d promo codes expire soon: leads reminded", len(expiring))
    return len(expiring)
