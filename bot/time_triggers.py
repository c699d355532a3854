"""Chains the clock starts: before a date of the lead's (a birthday every year, a contract's
end) and after a spell of silence (`start_on: {inactive: 30d}`).

A heartbeat job scans once a minute. Each start names its occasion (the date's day that
year, the moment the lead was last seen), so a chain starts once per occasion whichever
process scans first, and a repeating chain starts again on the next one. A trigger missed
while the bot was down still fires within `CATCH_UP`; one missed for longer is passed by
rather than sent days late ("happy birthday" a week after it is worse than nothing). So is
the mark a lead already passed when a chain is added: a new `inactive: 30d` chain does not
fire at once for everyone silent for months; a broadcast to a segment is for them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select

from bot import lead_dates, sequences
from bot.clock import Clock
from bot.dates import LooseDate
from bot.reactions import react_and_record
from bot.scenario.active import ActiveScenario
from bot.scenario.model import Scenario, StartOn
from bot.timing import zone_of
from storage.database import Database
from storage.models import Identity, Lead, LeadDate
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

CATCH_UP = timedelta(days=1)
BATCH = 200  # chains started in one transaction; the rest in the next


@dataclass(frozen=True)
class Due:
    lead_id: int
    sequence: str
    occasion: str


async def start_due(db: Database, scenarios: ActiveScenario, clock: Clock) -> int:
    """The periodic job: start the chains whose time trigger came. Chains started."""
    s = scenarios.current.scenario
    timed = {
        k: seq.start_on for k, seq in s.sequences.items() if seq.start_on and seq.start_on.timed
    }
    if not timed:
        return 0
    now = clock.now()
    started = 0
    async with db.unit_of_work() as uow:
        due: list[Due] = []
        for seq_id, trigger in timed.items():
            assert trigger is not None
            found = (
                await _dated(uow, s, seq_id, trigger, now)
                if trigger.date is not None
                else await _silent(uow, seq_id, trigger, now)
            )
            due += await _not_started(uow, s, found)
        # Leads are locked in id order, the delivery worker's order: the two never deadlock.
        for item in sorted(due, key=lambda d: (d.lead_id, d.sequence))[:BATCH]:
            started += await _start(uow, s, item, now)
        await uow.commit()
    if started:
        log.info("%d chains started by their time trigger", started)
    return started


async def _dated(
    uow: UnitOfWork, s: Scenario, seq_id: str, trigger: StartOn, now: datetime
) -> list[Due]:
    pairs = lead_dates.month_days(trigger, now, CATCH_UP)
    query = (
        select(LeadDate.lead_id, LeadDate.month, LeadDate.day, LeadDate.year, Lead.timezone)
        .join(Lead, Lead.id == LeadDate.lead_id)
        .where(
            LeadDate.name == lead_dates.source(trigger),
            LeadDate.month.in_({m for m, _ in pairs}),
            LeadDate.day.in_({d for _, d in pairs}),
            *_reachable(),
        )
    )
    found = []
    for lead_id, month, day, year, timezone in await uow.session.execute(query):
        zone = zone_of(timezone, s.settings.timezone)
        when = LooseDate(month, day, year)
        occasion = lead_dates.due_occasion(trigger, when, zone, now, CATCH_UP)
        if occasion is not None:
            found.append(Due(lead_id, seq_id, occasion.isoformat()))
    return found


async def _silent(uow: UnitOfWork, seq_id: str, trigger: StartOn, now: datetime) -> list[Due]:
    """Leads last seen (in any messenger) `inactive` ago, within the catch-up window."""
    assert trigger.inactive is not None
    mark = now - trigger.inactive
    crossing = select(Identity.lead_id).where(
        Identity.last_seen_at > mark - CATCH_UP, Identity.last_seen_at <= mark
    )
    last_seen = func.max(Identity.last_seen_at)
    query = (
        select(Identity.lead_id, last_seen)
        .join(Lead, Lead.id == Identity.lead_id)
        .where(Identity.lead_id.in_(crossing), *_reachable())
        .group_by(Identity.lead_id)
        .having(last_seen <= mark)
    )
    return [
        Due(lead_id, seq_id, f"silent since {seen:%Y-%m-%d %H:%M:%S}")
        for lead_id, seen in await uow.session.execute(query)
    ]


def _reachable() -> tuple[ColumnElement[bool], ...]:
    return (Lead.erased_at.is_(None), Lead.unreachable_at.is_(None))


async def _not_started(uow: UnitOfWork, s: Scenario, due: list[Due]) -> list[Due]:
    """Those that may start for their occasion still: never in the chain, or in a chain
    that repeats, over, for another occasion (read without locks: `_start` decides)."""
    if not due:
        return []
    runs = await sequences.load_runs(uow, sorted({d.lead_id for d in due}))
    return [
        d
        for d in due
        if (run := runs.get((d.lead_id, d.sequence))) is None
        or (
            s.sequences[d.sequence].repeat
            and run.status != "active"
            and run.occasion != d.occasion
        )
    ]


async def _start(uow: UnitOfWork, s: Scenario, item: Due, now: datetime) -> int:
    lead = await uow.leads.get(item.lead_id, lock=True)
    sequence = s.sequences.get(item.sequence)
    if lead is None or sequence is None or sequence.start_on is None:
        return 0
    if not await sequences.holds(uow, s, lead, sequence.start_on, now):
        return 0
    if await sequences.start(uow, s, lead, item.sequence, now, item.occasion) is None:
        return 0
    await react_and_record(uow, s, lead, now, [], set(), started=[item.sequence])
    return 1


async def next_fire(uow: UnitOfWork, s: Scenario, now: datetime) -> datetime | None:
    """The first moment after `now` at which a time trigger fires for some lead: what `/wait`
    in the terminal chat stops at. Reads every lead's dates: a chat's database is small."""
    moments: list[datetime] = []
    for sequence in s.sequences.values():
        trigger = sequence.start_on
        if trigger is None or not trigger.timed:
            continue
        if trigger.inactive is not None:
            last_seen = func.max(Identity.last_seen_at)
            query = (
                select(last_seen)
                .group_by(Identity.lead_id)
                .having(last_seen > now - trigger.inactive)
            )
            moments += [seen + trigger.inactive for seen in await uow.session.scalars(query)]
            continue
        query = (
            select(LeadDate.month, LeadDate.day, LeadDate.year, Lead.timezone)
            .join(Lead, Lead.id == LeadDate.lead_id)
            .where(LeadDate.name == lead_dates.source(trigger), *_reachable())
        )
        for month, day, year, timezone in await uow.session.execute(query):
            zone = zone_of(timezone, s.settings.timezone)
            moments.append(lead_dates.next_fire(trigger, LooseDate(month, day, year), zone, now))
    return min(moments, default=None)
