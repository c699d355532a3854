"""Broadcasts that repeat (`every:`): each occurrence is queued once, for the segment as it is
then, each lead at the occurrence's wall time in their own zone, moved out of their quiet
hours; the delivery worker keeps the advertising limit and checks consent at the send.

An occurrence is queued when its wall time first comes anywhere on Earth (UTC+14), so every
lead's own moment is still ahead. It is recorded as a broadcast run with the id
`<broadcast>@<date>`, which `leadbot broadcast --status` and `--cancel` take; the record's
key is what makes a second process (or a second scan) pass the occurrence by, and the
rows' keys (`broadcast:<id>@<date>:<lead>`) keep each lead to one message of it anyway.
A message of an earlier occurrence that the advertising limit still holds is dropped when
the next occurrence is queued.
An occurrence missed for longer than `MISSED` (the bot was down) is passed by: last week's
digest a week late is noise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot import broadcasts
from bot.clock import Clock
from bot.scenario.active import ActiveScenario
from bot.scenario.model import Every
from storage import broadcast_runs
from storage.database import Database

log = logging.getLogger(__name__)

EARLIEST = timedelta(hours=14)  # the first zone to reach a wall time is UTC+14
MISSED = timedelta(days=2)


def queued_at(day: date, every: Every) -> datetime:
    """When the occurrence on local `day` is queued: its wall time in UTC+14."""
    return datetime.combine(day, every.at, tzinfo=UTC) - EARLIEST


def occurrences(every: Every, since: datetime, until: datetime) -> Iterator[date]:
    """The local dates of the occurrences queued in (since, until]."""
    step = timedelta(days=every.days)
    # The first occurrence on or after `since`'s date, less a period: it may still be due.
    passed = max((since.date() - every.first).days // every.days - 1, 0)
    day = every.first + passed * step
    while (moment := queued_at(day, every)) <= until:
        if moment > since:
            yield day
        day += step


async def queue_due(db: Database, scenarios: ActiveScenario, clock: Clock) -> int:
    """The periodic job: queue the occurrences that came; the messages queued."""
    s = scenarios.current.scenario
    now = clock.now()
    queued = 0
    for broadcast_id, broadcast in s.broadcasts.items():
        every = broadcast.schedule
        if every is None:
            continue
        for day in occurrences(every, now - MISSED, now):
            run_id = f"{broadcast_id}@{day.isoformat()}"
            at = datetime.combine(day, every.at)
            try:
                async with db.unit_of_work() as uow:
                    await broadcast_runs.new_run(
                        uow.session,
                        broadcast_id,
                        now=now,
                        at=f"{at:%Y-%m-%d %H:%M}",
                        run_id=run_id,
                    )
                    await uow.commit()
            except IntegrityError:
                continue  # queued before, by this process or another
            reached = await broadcasts.audience(
                db, broadcast.segment, now=now, rfm_limits=s.settings.rfm
            )
            added = await broadcasts.enqueue(
                db,
                s,
                broadcast_id,
                reached.reachable,
                now=now,
                at=at,
                run=run_id,
                occurrence=day.isoformat(),
            )
            async with db.unit_of_work() as uow:
                dropped = await broadcast_runs.supersede(
                    uow.session, broadcast_id, run_id, now=now
                )
                await uow.commit()
            log.info("broadcast %s: %d queued, %d of before dropped", run_id, added, dropped)
            queued += added
    return queued


def next_queued(scenarios: ActiveScenario, now: datetime) -> datetime | None:
    """The next moment an occurrence is queued: what `/wait` in the terminal chat stops at."""
    moments = []
    for broadcast in scenarios.current.scenario.broadcasts.values():
        every = broadcast.schedule
        if every is not None:
            day = next(occurrences(every, now, now + timedelta(days=every.days + 2)), None)
            if day is not None:
                moments.append(queued_at(day, every))
    return min(moments, default=None)
