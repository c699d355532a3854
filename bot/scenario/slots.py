"""A booking calendar of the scenario's `slots:` section ("час консультации", "бесплатный
аудит"): how long a slot is, how often one starts, and the weekly hours of each manager or
room. The times of its slots are computed by bot/slot_times.py.

The YAML form goes in; the model holds the parsed form, and takes that form back too (a
frozen model may be validated again):

* `hours`: resource id -> weekday (0 = Monday) -> the day's intervals, sorted and apart,
  each (start, end) in wall time; an end of 00:00 is the midnight that ends the day
  (written "24:00").
* `closed`: inclusive (first, last) date ranges, a single date as (day, day).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from bot.scenario.fields import Duration, Strict
from bot.scenario.wording import WordedError

Interval = tuple[time, time]
Week = dict[int, tuple[Interval, ...]]

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_MIDNIGHT = time(0)
_ENGLISH_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RUSSIAN_DAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
DAY_NUMBERS = {
    name: day for names in (_ENGLISH_DAYS, RUSSIAN_DAYS) for day, name in enumerate(names)
}
_DASHES = str.maketrans({"–": "-", "—": "-", "‐": "-", "−": "-"})  # typographic dashes
_INTERVAL = re.compile(r"(\d{1,2}):(\d\d)-(\d{1,2}):(\d\d)")
_ISO_DATE = r"\d{4}-\d\d-\d\d"
_CLOSED = re.compile(rf"({_ISO_DATE})(?:\s*\.\.\s*({_ISO_DATE}))?")
_RESOURCE = re.compile(r"[A-Za-z0-9_]{1,32}")
_LIMITS = {"duration": (_MINUTE, _DAY), "every": (_MINUTE, _DAY), "ahead": (_MINUTE, 365 * _DAY)}


def interval_span(interval: Interval) -> tuple[timedelta, timedelta]:
    """An interval as offsets from the local midnight that starts its day (end 00:00: 24h)."""
    start, end = (timedelta(hours=t.hour, minutes=t.minute, seconds=t.second) for t in interval)
    return start, end or _DAY


def written(value: timedelta) -> str:
    """A duration as a marketer writes it (0m, 90m, 2h, 14d); an odd one as Python shows it."""
    minutes, rest = divmod(value, _MINUTE)
    if rest or minutes < 0:
        return str(value)
    for unit, size in (("d", 24 * 60), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def _pair(item: Any, kind: type) -> bool:
    """Whether `item` is a parsed (first, last) pair of `kind` (a date: not a datetime)."""
    return isinstance(item, (tuple, list)) and len(item) == 2 and all(map(_of(kind), item))


def _of(kind: type) -> Any:
    return lambda value: isinstance(value, kind) and not isinstance(value, datetime)


def _shown(interval: Interval) -> str:
    start, end = interval
    return f"{start:%H:%M}-" + ("24:00" if end == _MIDNIGHT else f"{end:%H:%M}")


def _days(key: Any) -> list[int]:
    """The weekdays a key names: `mon`, `пн`, `mon-fri`, `сб-пн` (wraps), `tue, thu`."""
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 6:
        return [key]  # the parsed form
    if not isinstance(key, str):
        raise WordedError("slots.day", value=str(key))
    days: list[int] = []
    for part in key.translate(_DASHES).split(","):
        names = [name.strip() for name in part.split("-")]
        unknown = [name for name in names if name.lower() not in DAY_NUMBERS]
        if unknown or len(names) > 2:
            raise WordedError("slots.day", value=(unknown or [part.strip()])[0] or part.strip())
        first, last = DAY_NUMBERS[names[0].lower()], DAY_NUMBERS[names[-1].lower()]
        days.extend((first + step) % 7 for step in range((last - first) % 7 + 1))
    return days


def _clock(hours: str, minutes: str, *, end: bool) -> time | None:
    hour, minute = int(hours), int(minutes)
    if end and (hour, minute) == (24, 0):
        return _MIDNIGHT
    return time(hour, minute) if hour < 24 and minute < 60 else None


def _interval(item: Any) -> Interval:
    """One interval: "10:00-13:00" as written, or (start, end) as parsed."""
    if _pair(item, time):
        interval = (item[0], item[1])
    else:
        match = _INTERVAL.fullmatch(re.sub(r"\s+", "", str(item).translate(_DASHES)))
        start = match and _clock(match[1], match[2], end=False)
        end = match and _clock(match[3], match[4], end=True)
        if match is None or start is None or end is None:
            raise WordedError("slots.interval", value=str(item).strip())
        interval = (start, end)
    begin, finish = interval_span(interval)
    if begin >= finish:
        raise WordedError("slots.interval_order", value=str(item).strip())
    return interval


def _intervals(value: Any) -> tuple[Interval, ...]:
    """A day's hours: "10:00-13:00, 14:00-18:00", a list of such texts, or parsed pairs."""
    if not isinstance(value, (str, list, tuple)) or not value:
        raise WordedError("slots.interval", value=str(value))
    texts = [value] if isinstance(value, str) else value
    items = [part for i in texts for part in (i.split(",") if isinstance(i, str) else [i])]
    intervals = sorted((_interval(item) for item in items), key=interval_span)
    for before, after in pairwise(intervals):
        if interval_span(before)[1] > interval_span(after)[0]:
            raise WordedError("slots.overlap", first=_shown(before), second=_shown(after))
    return tuple(intervals)


def _week(value: Any) -> Any:
    """A resource's weekly hours: day key -> intervals, parsed into weekday -> intervals."""
    if not isinstance(value, dict) or not value:
        raise WordedError("slots.week")
    week: Week = {}
    named: dict[int, str] = {}  # weekday -> the key that named it
    for key, hours in value.items():
        intervals = _intervals(hours)
        for day in _days(key):
            if day in week:
                keys = list(dict.fromkeys((named[day], str(key))))
                russian = re.search("[а-я]", str(key).lower()) is not None
                name = (RUSSIAN_DAYS if russian else _ENGLISH_DAYS)[day]
                raise WordedError("slots.day_twice", day=name, keys=", ".join(map(repr, keys)))
            week[day], named[day] = intervals, str(key)
    return dict(sorted(week.items()))


def _closed_range(item: Any) -> tuple[date, date]:
    if _of(date)(item):
        return item, item
    if _pair(item, date):
        first, last = item
    else:
        match = _CLOSED.fullmatch(str(item).strip()) if isinstance(item, str) else None
        try:
            if match is None:
                raise ValueError
            first = date.fromisoformat(match[1])
            last = date.fromisoformat(match[2] or match[1])
        except ValueError:
            raise WordedError("slots.closed", value=str(item)) from None
    if first > last:
        raise WordedError("slots.closed_order", value=f"{first}..{last}")
    return first, last


def _closed(value: Any) -> Any:
    """Closed dates: "2026-12-31", "2027-01-01..2027-01-08" (inclusive), or a YAML date."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    return tuple(sorted({_closed_range(item) for item in items}))


Hours = dict[str, Annotated[Week, BeforeValidator(_week)]]
Closed = Annotated[tuple[tuple[date, date], ...], BeforeValidator(_closed)]


class SlotCalendar(Strict):
    """One booking calendar: slots of `duration`, a start every `every` within the weekly
    `hours` of each resource (a manager or a room), `capacity` people per slot and resource,
    offered from `notice` to `ahead` from now, except on the `closed` dates."""

    title: str  # what the lead card and /today call it
    duration: Duration
    every: Duration = Field(default=None, validate_default=True)  # None: the duration
    capacity: int = 1
    ahead: Duration = timedelta(days=14)
    notice: Duration = timedelta(hours=2)
    hours: Hours
    closed: Closed = ()

    def is_closed(self, day: date) -> bool:
        """Whether the local date `day` is closed for every resource."""
        return any(first <= day <= last for first, last in self.closed)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip():
            raise WordedError("slots.title")
        return value.strip()

    @field_validator("every", mode="before")
    @classmethod
    def _every_default(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        # A bad duration is reported on its own line, not a second time here.
        return info.data.get("duration", _MINUTE)

    @field_validator("duration", "every", "ahead")
    @classmethod
    def _within(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        low, high = _LIMITS[str(info.field_name)]
        if not low <= value <= high:
            raise WordedError(f"slots.{info.field_name}", value=written(value))
        return value

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, value: int) -> int:
        if value < 1:
            raise WordedError("slots.capacity", value=value)
        return value

    @field_validator("hours")
    @classmethod
    def _resources(cls, value: dict[str, Week]) -> dict[str, Week]:
        if not value:
            raise WordedError("slots.no_hours")
        for resource in value:
            if not _RESOURCE.fullmatch(resource):
                raise WordedError("slots.resource", value=resource)
        return value

    @model_validator(mode="after")
    def _bookable(self) -> SlotCalendar:
        if not timedelta(0) <= self.notice < self.ahead:
            raise WordedError(
                "slots.notice", notice=written(self.notice), ahead=written(self.ahead)
            )
        for resource, week in self.hours.items():
            spans = [interval_span(i) for intervals in week.values() for i in intervals]
            if not any(end - start >= self.duration for start, end in spans):
                raise WordedError(
                    "slots.no_slot", resource=resource, duration=written(self.duration)
                )
        return self
