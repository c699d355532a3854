"""What follows a lead's events, wherever they came from (the chat, the events API, a link,
a manager, a redemption): chains stopped and started, promos issued by their `issue_on`,
and the referral voided or rewarded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot import lead_dates, promos, referrals, sequences, stages
from bot.clock import Clock
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
    """React to what happened to the lead in this transaction (the caller holds its lock);
    the chains started. Use `react_and_record` unless the caller records those itself."""
    await lead_dates.remember(uow, scenario, lead.id, now, events)
    started = await sequences.react(uow, scenario, lead, now, events, reached)
    await promos.issue_triggered(uow, scenario, lead, now, events, reached)
    await referrals.react(uow, scenario, lead, now, events)
    return started


async def react_and_record(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    now: datetime,
    events: list[tuple[str, dict[str, Any]]],
    reached: set[str],
    *,
    channel: str | None = None,
    started: Sequence[str] = (),
) -> None:
    """`react`, recording each chain started (`sequence_started`) and moving the lead to
    `warming`, then reacting to those in turn: a chain may start on another's start or on
    the stage `warming`. Ends, as a chain starts once per lead and its trigger (a chain that
    repeats does not start while it runs). `started`: chains the caller started itself."""
    events, chains = list(events), list(started)
    while True:
        for sequence in chains:
            payload = {"sequence": sequence}
            uow.events.add(lead.id, "sequence_started", now=now, channel=channel, payload=payload)
            events.append(("sequence_started", payload))
            if stages.advance(
                lead, "warming", reason=f"sequence:{sequence}", now=now, events=uow.events
            ):
                reached.add("warming")
        if not (events or reached):
            return
        chains = await react(uow, scenario, lead, now, events, reached)
        events, reached = [], set()


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
        log.info("%d promo codes expire soon: promo_expiring recorded", len(expiring))
    return len(expiring)
