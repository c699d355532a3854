"""Dates people type in a chat ("12.05.1990", "12 мая", "завтра"), stored as ISO text.

A birthday or a contract end date is asked once and then drives a yearly trigger, so the year
is optional: "12 мая" is a complete answer. Everything here is pure: callers pass `today`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

MIN_YEAR = 1900  # anything older is a typo in a birthday or a contract, not a real answer
MAX_YEARS_AHEAD = 100  # a contract may run for decades, not for centuries
# A leap year, so that 29 February is a valid date when the person gave no year.
_ANY_LEAP_YEAR = 2000
# "30 сентября 2001 года" is 21 characters; much longer text is a sentence around a date, and
# guessing which part the person meant would store wrong data, so we ask again instead.
_MAX_LENGTH = 40

GENITIVE_MONTHS = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)  # fmt: skip
_NOMINATIVE = (
    "январь", "февраль", "март", "апрель", "май", "июнь",
    "июль", "август", "сентябрь", "октябрь", "ноябрь", "декабрь",
)  # fmt: skip
_ABBREVIATIONS = (
    ("янв",), ("фев", "февр"), ("мар",), ("апр",), (), ("июн",),
    ("июл",), ("авг",), ("сен", "сент"), ("окт",), ("ноя", "нояб"), ("дек",),
)  # fmt: skip
# An explicit list rather than prefix matching, so that "марш" or "декада" is not a month.
_MONTHS = {
    name: number
    for number, names in enumerate(
        zip(GENITIVE_MONTHS, _NOMINATIVE, _ABBREVIATIONS, strict=True), 1
    )
    for name in (names[0], names[1], *names[2])
}

# Digits are spelled [0-9], not \d, so that other scripts' digits are not read as dates.
# A 4- or 2-digit year, then maybe "г", "год" or "года" ("1990 г.", "2001г"; the dot is stripped).
_YEAR = r"(?P<year>[0-9]{4}|[0-9]{2})(?: ?(?:года|год|г))?"
_NUMERIC = re.compile(
    # The same separator twice: "12.05-1990" is more likely two numbers than a date.
    rf"(?P<day>[0-9]{{1,2}})(?P<sep>[./ -])(?P<month>[0-9]{{1,2}})(?:(?P=sep){_YEAR})?"
)
_ISO = re.compile(r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})")
_WORDS = re.compile(rf"(?P<day>[0-9]{{1,2}}) ?(?P<month>[а-я]+)\.?(?: ?{_YEAR})?")
_YEARLESS = re.compile(r"--(?P<month>[0-9]{2})-(?P<day>[0-9]{2})")
# A moment in an outside system's payload ("t10:00:00z", " 10:00", "t10:00+03:00"): the date
# is the calendar day as written there, so the time and the zone are dropped, not converted.
_TIME_OF_DAY = re.compile(
    r"[t ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)? ?(?:z|[+-][0-9]{2}(?::?[0-9]{2})?)?\Z"
)
# Quotes, brackets and sentence punctuation around an answer; "-" is kept for "--05-12".
_EDGES = " .,;:!?()[]{}\"'«»—…"


@dataclass(frozen=True)
class LooseDate:
    """A calendar day, with the year when the person gave one."""

    month: int
    day: int
    year: int | None = None  # None: the person gave no year ("12.05", "12 мая")

    def __post_init__(self) -> None:
        # A bad value would only fail later, inside a yearly trigger; refuse it where it appears.
        if not _valid(self.day, self.month, self.year):
            raise ValueError(f"no such date: day {self.day}, month {self.month}, year {self.year}")

    def iso(self) -> str:
        """Stored form: "1990-05-12", or ISO 8601's yearless "--05-12"."""
        if self.year is None:
            return f"--{self.month:02d}-{self.day:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"

    def shown(self) -> str:
        """Russian for the chat, genitive month: "12 мая 1990", "12 мая"."""
        text = f"{self.day} {GENITIVE_MONTHS[self.month - 1]}"
        return text if self.year is None else f"{text} {self.year}"

    def next_on_or_after(self, day: date) -> date:
        """The first anniversary of (month, day) on or after `day`; the year is ignored."""
        this_year = self._in_year(day.year)
        return this_year if this_year >= day else self._in_year(day.year + 1)

    def _in_year(self, year: int) -> date:
        # 29 February falls on 28 February in common years, so that a person born on a leap
        # day is greeted every year rather than one year in four.
        return date(year, self.month, min(self.day, calendar.monthrange(year, self.month)[1]))


def parse_date(text: str, today: date) -> LooseDate | None:
    """What a person typed, or None when it is not a date."""
    cleaned = _normalise(text)
    if cleaned == "сегодня":
        return _with_year(today)
    if cleaned == "завтра":
        return _with_year(today + timedelta(days=1))
    return _parse(cleaned, today)


def from_iso(value: str) -> LooseDate | None:
    """The stored form back ("1990-05-12", "--05-12"); also a date in an outside system's event
    payload: "2027-03-01", "2027-03-01T10:00:00Z", "2027-03-01 10:00", "01.03.2027" (same rules
    as parse_date without relative words). None for anything else (never raises)."""
    # Payloads are untyped JSON: a number or a null must give None, not a TypeError.
    if not isinstance(value, str):
        return None
    cleaned = _normalise(value)
    yearless = _YEARLESS.fullmatch(cleaned)
    if yearless:
        month, day = int(yearless["month"]), int(yearless["day"])
        return LooseDate(month, day) if _valid(day, month, None) else None
    return _parse(_TIME_OF_DAY.sub("", cleaned), None)


def _normalise(text: str) -> str:
    # One spelling per answer: lower case, "ё" as "е", single spaces, no spaces around
    # separators ("12 . 05" and "сент. 2001"), no punctuation around the whole answer.
    text = " ".join(text.lower().replace("ё", "е").split()).strip(_EDGES)
    return re.sub(r" ?([./-]) ?", r"\1", text)


def _parse(cleaned: str, today: date | None) -> LooseDate | None:
    """A normalised date; without `today` (stored or outside data) years must have 4 digits."""
    if len(cleaned) > _MAX_LENGTH:
        return None
    match = _NUMERIC.fullmatch(cleaned) or _ISO.fullmatch(cleaned) or _WORDS.fullmatch(cleaned)
    if match is None:
        return None
    month_text = match["month"]
    month = int(month_text) if month_text.isdigit() else _MONTHS.get(month_text)
    if month is None:
        return None
    year: int | None = None
    if match["year"] is not None:
        year = int(match["year"])
        if len(match["year"]) == 2:
            if today is None:  # no clock to pick the century with
                return None
            year = _full_year(year, today)
        if today is not None and year > today.year + MAX_YEARS_AHEAD:
            return None
    day = int(match["day"])
    return LooseDate(month, day, year) if _valid(day, month, year) else None


def _full_year(two_digits: int, today: date) -> int:
    # The latest such year not after this one: in 2026 "26" is 2026 and "27" is 1927.
    century = today.year - today.year % 100
    return century + two_digits if two_digits <= today.year % 100 else century - 100 + two_digits


def _with_year(day: date) -> LooseDate:
    return LooseDate(day.month, day.day, day.year)


def _valid(day: int, month: int, year: int | None) -> bool:
    if year is not None and not MIN_YEAR <= year <= date.max.year:
        return False
    if not 1 <= month <= 12:
        return False
    return 1 <= day <= calendar.monthrange(_ANY_LEAP_YEAR if year is None else year, month)[1]
