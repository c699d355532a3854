"""When the slots of a booking calendar (bot/scenario/slots.py) start.

Pure functions: nothing here reads a clock or a database. Times go in as aware datetimes (in
any zone) and come out as aware UTC ones. A calendar's hours are wall times of the scenario's
time zone, and its closed dates are local dates there.

Within an interval a slot starts at its start, then every `every`, as long as the slot ends
by the interval's end, counted in wall-clock time on the local date. Across DST:

* A start whose wall time does not exist (the spring-forward gap, 02:00-03:00 in Berlin on
  the last Sunday of March) is skipped, not moved to the end of the gap as
  `bot.timing.local_instant` moves a message: a 02:00 slot moved to 03:00 would be the 03:00
  slot offered twice.
* A start whose wall time occurs twice (fall back) is offered once, at its first
  occurrence, as `local_instant` reads it: the lead books the time the clock shows, once.

Each start is thus the instant `local_instant` gives for its wall time; most are found faster
(this runs on every offer of slots), from the UTC offset of the day's midnight, and checked
against the zone's clock, and only those that fail the check go through `local_instant`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.scenario.slots import SlotCalendar, interval_span
from bot.timing import local_instant

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # the resolution of datetime: [start, start + _TICK) is start

# weekday (0 = Monday) -> the day's (wall start as time since midnight, resource), in order
_WeekTable = tuple[tuple[tuple[timedelta, str], ...], ...]


@dataclass(frozen=True, order=True)
class Slot:
    """A slot of one resource (a manager or a room); slots sort by start, then resource."""

    start: datetime  # aware UTC
    resource: str

    def end(self, duration: timedelta) -> datetime:
        """When the slot ends: `duration` (the calendar's) of real time after its start."""
        return self.start + duration


def slot_starts(
    calendar: SlotCalendar, zone: ZoneInfo, since: datetime, until: datetime
) -> list[Slot]:
    """Every slot of every resource starting in [since, until), in start order then resource
    id; hours are wall times of `zone` (the scenario's time zone); closed dates are local
    dates of `zone`."""
    _require_aware(since, "since")
    _require_aware(until, "until")
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    table = _week_table(calendar)
    slots = []
    # A day more on each side: a zone's offset may shift a local date across the bounds.
    day = since.astimezone(zone).date() - _DAY
    last = until.astimezone(zone).date() + _DAY
    while day <= last:
        if not calendar.is_closed(day):
            midnight = datetime.combine(day, time(0))
            # The start as if the offset of the day's midnight held all day; a start that the
            # zone's clock does not show so (a DST change that day) is left to local_instant.
            guess = _offset(midnight, zone)
            base = (midnight - guess).replace(tzinfo=UTC)
            for offset, resource in table[day.weekday()]:
                start = base + offset
                local = start.astimezone(zone)
                if local.fold or local.utcoffset() != guess:
                    wall = (midnight + offset).time()
                    start = local_instant(day, wall, zone)
                    if not _shows(start, day, wall, zone):
                        continue  # in a DST gap
                if since <= start < until:
                    slots.append(Slot(start, resource))
        day += _DAY
    slots.sort()
    return slots


def bookable(calendar: SlotCalendar, zone: ZoneInfo, now: datetime) -> list[Slot]:
    """Slots starting in [now + notice, now + ahead): those a lead may book at `now`."""
    _require_aware(now, "now")
    return slot_starts(calendar, zone, now + calendar.notice, now + calendar.ahead)


def find_slot(
    calendar: SlotCalendar, zone: ZoneInfo, start: datetime, resource: str | None
) -> Slot | None:
    """The calendar's slot starting exactly at `start` (of `resource`, or of any resource, the
    first by id, when None), or None when the calendar has no such slot: the chat hands back
    a pressed button's start time, and a stale button after the scenario changed finds none.
    Whether the slot is still bookable (notice, ahead) is not checked here."""
    _require_aware(start, "start")
    for slot in slot_starts(calendar, zone, start, start + _TICK):
        if resource is None or slot.resource == resource:
            return slot
    return None


def _week_table(calendar: SlotCalendar) -> _WeekTable:
    """The wall times at which each resource's slots start on each weekday."""
    table: list[list[tuple[timedelta, str]]] = [[] for _ in range(7)]
    for resource, week in calendar.hours.items():
        for weekday, intervals in week.items():
            for interval in intervals:
                offset, end = interval_span(interval)
                while offset + calendar.duration <= end:
                    table[weekday].append((offset, resource))
                    offset += calendar.every
    return tuple(tuple(sorted(starts)) for starts in table)


def _offset(wall: datetime, zone: ZoneInfo) -> timedelta:
    offset = zone.utcoffset(wall)
    assert offset is not None  # a ZoneInfo always has an offset; this only narrows the type
    return offset


def _shows(instant: datetime, day: date, wall: time, zone: ZoneInfo) -> bool:
    """Whether `zone`'s clock shows `wall` on `day` at `instant`: false for a wall time in a
    DST gap, which `local_instant` moved to the end of the gap."""
    local = instant.astimezone(zone)
    return local.date() == day and local.time() == wall


def _require_aware(moment: datetime, name: str) -> None:
    # A naive datetime here is a bug upstream (local or UTC?): guessing would offer wrong hours.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment}")
