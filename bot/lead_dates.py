"""The dates chains count from: which stored date a `start_on: {date: ...}` reads, when its
next occasion is and at what instant it fires, and the dates that outside events carry."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.dates import LooseDate, from_iso
from bot.scenario.model import Scenario, StartOn
from bot.sequences import matches
from bot.timing import local_instant
from storage.unit_of_work import UnitOfWork

DEFAULT_AT = time(10, 0)  # a greeting days before a date goes in the morning, not at midnight
_DAY = timedelta(days=1)


def source(trigger: StartOn) -> str:
    """The stored date's name: the question, or "<event>.<detail>" for an event's date."""
    assert trigger.date is not None
    return f"{trigger.event}.{trigger.date}" if trigger.event else trigger.date


def occasion(when: LooseDate, start: date) -> date:
    """The first day on or after `start` that the date falls on: a date with a year still
    ahead (a contract's end) is that day; a past one (a birthday) recurs every year."""
    if when.year is not None:
        own = date(when.year, when.month, when.day)
        if own >= start:
            return own
    return when.next_on_or_after(start)


def fires_at(trigger: StartOn, day: date, zone: ZoneInfo) -> datetime:
    """When the trigger fires for an occasion on `day`, in the lead's `zone`: `at` on the
    local day `before` whole days earlier (10:00 by default), or, for a `before` that is not
    whole days, that long before the day's local midnight."""
    if trigger.at is not None or not trigger.before % _DAY:
        at = trigger.at or DEFAULT_AT
        return local_instant(day - timedelta(days=trigger.before.days), at, zone)
    return local_instant(day, time(0), zone) - trigger.before


def due_occasion(
    trigger: StartOn, when: LooseDate, zone: ZoneInfo, now: datetime, catch_up: timedelta
) -> date | None:
    """The occasion whose firing time lies in (now - catch_up, now], if any."""
    earliest = now - catch_up
    start = earliest.astimezone(zone).date() + timedelta(days=trigger.before.days)
    day = occasion(when, start - _DAY)  # one day early: a `before` with hours reaches back
    for _ in range(2):
        moment = fires_at(trigger, day, zone)
        if moment > now:
            return None
        if moment > earliest:
            return day
        day = occasion(when, day + _DAY)
    return None


def next_fire(trigger: StartOn, when: LooseDate, zone: ZoneInfo, now: datetime) -> datetime:
    """The first firing time after `now`."""
    day = occasion(when, now.astimezone(zone).date())
    while (moment := fires_at(trigger, day, zone)) <= now:
        day = occasion(when, day + _DAY)
    return moment


def month_days(trigger: StartOn, now: datetime, catch_up: timedelta) -> set[tuple[int, int]]:
    """The (month, day) pairs whose occasion may fire within (now - catch_up, now] in some
    time zone (offsets reach 14 hours either way): what the scan reads from the database."""
    first = (now - catch_up - timedelta(hours=14)).date() + timedelta(days=trigger.before.days)
    last = (now + timedelta(hours=14)).date() + timedelta(days=trigger.before.days + 2)
    pairs = set()
    day = first - _DAY
    while day <= last:
        pairs.add((day.month, day.day))
        day += _DAY
    if (2, 28) in pairs or (3, 1) in pairs:
        pairs.add((2, 29))  # falls on 28 February in a common year
    return pairs


async def remember(
    uow: UnitOfWork,
    scenario: Scenario,
    lead_id: int,
    now: datetime,
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """Store the dates that chains read from events' details (`start_on: {event: contract,
    date: renews}`) as the events happen; a detail that is no date is passed by."""
    for sequence in scenario.sequences.values():
        trigger = sequence.start_on
        if trigger is None or trigger.date is None or trigger.event is None:
            continue
        for name, payload in events:
            if not matches(trigger, name, payload):
                continue
            when = from_iso(str(payload.get(trigger.date, "")))
            if when is not None:
                fields = (when.month, when.day, when.year)
                await uow.leads.set_date(lead_id, source(trigger), fields, now=now)
