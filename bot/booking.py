"""Booking a slot of a `slots:` calendar: the free times a prospect is offered, taking one
(the last place goes to one prospect only: storage/bookings.py), moving and cancelling it,
and how a time is written for the prospect (in their zone) and for the managers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.dates import GENITIVE_MONTHS
from bot.scenario.model import Scenario
from bot.scenario.slots import RUSSIAN_DAYS as WEEKDAYS
from bot.slot_times import bookable, find_slot
from bot.timing import local_instant, zone_of
from storage.models import Booking, Lead
from storage.unit_of_work import UnitOfWork

PAGE = 6  # times offered at once; "Другое время" shows the next ones
MOSCOW = timedelta(hours=3)


@dataclass(frozen=True)
class FreeTime:
    start: datetime  # UTC
    resources: tuple[str, ...]  # those with a place left, the least busy that day first


async def free_times(
    uow: UnitOfWork,
    s: Scenario,
    calendar_id: str,
    now: datetime,
    *,
    after: datetime | None = None,
    limit: int = PAGE,
) -> list[FreeTime]:
    """The next `limit` times (after `after`, if given) with a place left in some resource;
    two statements whatever the calendar's size."""
    calendar = s.slots[calendar_id]
    slots = [
        slot
        for slot in bookable(calendar, ZoneInfo(s.settings.timezone), now)
        if after is None or slot.start > after
    ]
    if not slots:
        return []
    held = await uow.bookings.taken(calendar_id, slots[0].start, slots[-1].start)
    busy: Counter[tuple[str, object]] = Counter()
    for (resource, start), count in held.items():
        busy[(resource, start.date())] += count
    found: dict[datetime, list[str]] = {}
    for slot in slots:
        if held.get((slot.resource, slot.start), 0) < calendar.capacity:
            found.setdefault(slot.start, []).append(slot.resource)
        if len(found) > limit:
            break
    return [
        FreeTime(start, tuple(sorted(rs, key=lambda r: (busy[(r, start.date())], r))))
        for start, rs in list(found.items())[:limit]
    ]


async def book(
    uow: UnitOfWork,
    s: Scenario,
    lead: Lead,
    calendar_id: str,
    question_id: str,
    start: datetime,
    now: datetime,
) -> Booking | None:
    """A place at `start` for the lead (its standing booking in this calendar, if any, is
    moved to it), or None: no such slot any more, outside the bookable window, or full."""
    if not offered(s, calendar_id, start, now):
        return None
    calendar = s.slots[calendar_id]
    free = await free_times(uow, s, calendar_id, now, after=start - timedelta(microseconds=1))
    order = next((f.resources for f in free if f.start == start), ())
    for resource in order:
        booking = await uow.bookings.take(
            lead_id=lead.id,
            calendar=calendar_id,
            resource=resource,
            starts_at=start,
            ends_at=start + calendar.duration,
            capacity=calendar.capacity,
            question=question_id,
            now=now,
        )
        if booking is not None:
            # A meeting that took place is no booking to move.
            for old in await uow.bookings.standing(lead.id, calendar_id, after=now):
                if old.id != booking.id:
                    uow.bookings.release(old, "moved", now)
            return booking
    return None


def offered(s: Scenario, calendar_id: str, start: datetime, now: datetime) -> bool:
    """Whether the calendar has a slot at `start` that may be booked now (within `notice`
    and `ahead`): a pressed time is checked, as a button may be old or forged."""
    calendar = s.slots.get(calendar_id)
    if calendar is None or not now + calendar.notice <= start < now + calendar.ahead:
        return False
    return find_slot(calendar, ZoneInfo(s.settings.timezone), start, None) is not None


def zone_label(moment: datetime, zone: ZoneInfo) -> str:
    """The zone as Russians name it: МСК, МСК+2, МСК−1 (whole hours), else UTC+5:30."""
    offset = moment.astimezone(zone).utcoffset() or timedelta(0)
    hours, rest = divmod(offset - MOSCOW, timedelta(hours=1))
    if rest:
        total = int(offset.total_seconds() // 60)
        return f"UTC{'+' if total >= 0 else '−'}{abs(total) // 60}:{abs(total) % 60:02d}"
    return "МСК" if hours == 0 else f"МСК{'+' if hours > 0 else '−'}{abs(hours)}"


def when_text(start: datetime, zone: ZoneInfo) -> str:
    """ "пн, 8 декабря, 10:00 МСК": a time for the prospect, in their zone."""
    local = start.astimezone(zone)
    day = f"{WEEKDAYS[local.weekday()]}, {local.day} {GENITIVE_MONTHS[local.month - 1]}"
    return f"{day}, {local:%H:%M} {zone_label(start, zone)}"


def button_text(start: datetime, zone: ZoneInfo) -> str:
    """ "пн 8 дек, 10:00": short enough for a button in VK (40 characters)."""
    local = start.astimezone(zone)
    month = GENITIVE_MONTHS[local.month - 1][:3]
    return f"{WEEKDAYS[local.weekday()]} {local.day} {month}, {local:%H:%M}"


def lead_zone(s: Scenario, lead: Lead) -> ZoneInfo:
    return zone_of(lead.timezone, s.settings.timezone)


def booking_line(s: Scenario, booking: Booking, zone: ZoneInfo, *, who: bool = True) -> str:
    """ "Консультация — пн, 8 декабря, 10:00 МСК (anna)": with the specialist (`who`) for the
    managers, without for the prospect, who does not know the calendar's ids."""
    calendar = s.slots.get(booking.calendar)
    title = calendar.title if calendar is not None else booking.calendar
    several = calendar is not None and len(calendar.hours) > 1
    by = f" ({booking.resource})" if who and several else ""
    return f"{title} — {when_text(booking.starts_at, zone)}{by}"


async def day_text(uow: UnitOfWork, s: Scenario, now: datetime) -> str:
    """`/today` for the managers: the day's bookings in the scenario's zone, by time."""
    zone = ZoneInfo(s.settings.timezone)
    local = now.astimezone(zone)
    since = local_instant(local.date(), time(0), zone)
    until = local_instant(local.date() + timedelta(days=1), time(0), zone)
    bookings = await uow.bookings.between(since, until)
    month = GENITIVE_MONTHS[local.month - 1]
    head = f"📅 Записи на {local.day} {month} ({WEEKDAYS[local.weekday()]})"
    if not bookings:
        return f"{head}: нет."
    lines = [f"{head}:"]
    for booking in bookings:
        lead = await uow.leads.get(booking.lead_id)
        answers = await uow.leads.answers(booking.lead_id)
        name = s.name_answer({q: a.value for q, a in answers.items()})
        name = name or (lead.first_name if lead is not None else None) or "без имени"
        phones = [c.value for c in await uow.leads.contacts(booking.lead_id) if c.kind == "phone"]
        calendar = s.slots.get(booking.calendar)
        title = calendar.title if calendar is not None else booking.calendar
        start, end = booking.starts_at.astimezone(zone), booking.ends_at.astimezone(zone)
        who = f" · {booking.resource}" if calendar is None or len(calendar.hours) > 1 else ""
        contact = f", {phones[0]}" if phones else ""
        lines.append(
            f"• {start:%H:%M}–{end:%H:%M} {title}{who} — лид #{booking.lead_id} {name}{contact}"
        )
    return "\n".join(lines)
