"""Ad spend: what was paid for each source over a span of days (`leadbot spend`,
`POST /api/spend`), and the SQL that spreads it over a report's window.

A row covers the calendar days `first_day`..`last_day` (both included) and is spread evenly
over them: a report counts the share of the row's days that fall inside its window (a month
of 31 000 and a 10-day window inside it count 10 000).

Which days a window holds: the window is [since, until) in UTC and days are calendar days
in the window's zone. A day belongs to the window when its local midnight does; so the
window's days run from `since` rounded up to a local midnight to `until` rounded up to a
local midnight, the end excluded (`window_days`). A window of whole local days is exactly
those days; a rolling "30 days back from now" counts 30 days: today (its midnight has
passed) and not the day `since` falls in.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Numeric, Select, case, cast, func, literal_column, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.analytics.window import DAY, Window, seconds_between
from storage.models import AdSpend

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1e12")  # as the events API; fits the 32-character column
MAX_NOTE = 256
# Day numbers in SQL count from this UTC midnight (any fixed one would do).
_EPOCH = datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC"))


@dataclass(frozen=True)
class Spend:
    """One stored row, as the command line and the API show it."""

    id: int
    source: str
    first_day: date
    last_day: date  # included
    amount: Decimal
    note: str | None
    created_at: datetime
    request_key: str | None = None

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


@dataclass(frozen=True)
class Added:
    """What `add_spend` did: the stored row; `duplicate` when the key was stored before
    (the row is the earlier one, nothing new was written)."""

    spend: Spend
    duplicate: bool = False


def parse_amount(text: str) -> Decimal:
    """A typed amount ("31000", "1500.50", "1 500,5") as Decimal; ValueError in Russian."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "").replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"сумма {text!r} — не число") from None
    if not amount.is_finite():
        raise ValueError(f"сумма {text!r} — не число")
    return checked_amount(amount)


def checked_amount(amount: Decimal) -> Decimal:
    """The amount if it is money: not negative, at most two decimals, under a trillion."""
    if amount < 0:
        raise ValueError(f"сумма {amount} отрицательная")
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise ValueError(f"сумма {amount}: не больше двух знаков после запятой")
    if amount >= MAX_AMOUNT:
        raise ValueError(f"сумма {amount} слишком большая")
    return amount


def month_days(text: str) -> tuple[date, date]:
    """The first and last day of a month typed as YYYY-MM; ValueError when it is not one."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}", text):
            raise ValueError
        first = date(int(text[:4]), int(text[5:]), 1)
    except ValueError:
        raise ValueError(f"месяц {text!r}: нужен вид ГГГГ-ММ, например 2026-11") from None
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def day_typed(text: str) -> date:
    """A day typed as YYYY-MM-DD; ValueError when it is not one."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"дата {text!r}: нужен вид ГГГГ-ММ-ДД, например 2026-11-05") from None


def _stored(row: AdSpend) -> Spend:
    return Spend(
        id=row.id,
        source=row.source,
        first_day=row.first_day,
        last_day=row.last_day,
        amount=Decimal(row.amount),
        note=row.note,
        created_at=row.created_at,
        request_key=row.request_key,
    )


async def add_spend(
    session: AsyncSession,
    *,
    source: str,
    amount: Decimal,
    first_day: date,
    last_day: date,
    note: str | None = None,
    key: str | None = None,
    now: datetime,
) -> Added:
    """Store a row (the caller commits). With `key`, a row stored before under the same key
    is answered instead (a retried request is stored once), even when two retries race."""
    if last_day < first_day:
        raise ValueError("last_day is before first_day")
    checked_amount(amount)
    if key is not None:
        earlier = await _by_key(session, key)
        if earlier is not None:
            return Added(earlier, duplicate=True)
    row = AdSpend(
        source=source,
        first_day=first_day,
        last_day=last_day,
        amount=f"{amount:f}",
        note=note,
        created_at=now,
        request_key=key,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # A twin with the same key committed between our look and our insert.
        earlier = await _by_key(session, key) if key is not None else None
        if earlier is None:
            raise
        return Added(earlier, duplicate=True)
    return Added(_stored(row))


async def _by_key(session: AsyncSession, key: str) -> Spend | None:
    found = await session.scalar(select(AdSpend).where(AdSpend.request_key == key))
    return None if found is None else _stored(found)


async def list_spend(
    session: AsyncSession,
    *,
    since_day: date | None = None,
    until_day: date | None = None,
    source: str | None = None,
) -> list[Spend]:
    """Rows that touch the days `since_day`..`until_day` (both included), oldest first."""
    query = select(AdSpend).order_by(AdSpend.first_day, AdSpend.source, AdSpend.id)
    if since_day is not None:
        query = query.where(AdSpend.last_day >= since_day)
    if until_day is not None:
        query = query.where(AdSpend.first_day <= until_day)
    if source is not None:
        query = query.where(AdSpend.source == source)
    return [_stored(row) for row in (await session.scalars(query)).all()]


def window_days(window: Window) -> tuple[date, date]:
    """The local days of the window: [first, end), see the module's docstring."""
    return _midnight_on_or_after(window.since, window.zone), _midnight_on_or_after(
        window.until, window.zone
    )


def _midnight_on_or_after(moment: datetime, zone: ZoneInfo) -> date:
    local = moment.astimezone(zone)
    return local.date() if local.time() == time() else local.date() + timedelta(days=1)


def _day_number(session: AsyncSession, day: Any) -> ColumnElement[int]:
    """A date column as whole days since `_EPOCH`. PostgreSQL turns the date into a
    timestamp at its session's zone, hence the rounding (it absorbs any offset under 12 h
    and the hour of a DST change)."""
    return cast(func.floor(seconds_between(session, day, _EPOCH) / DAY + 0.5), Integer)


def spend_query(session: AsyncSession, window: Window) -> Select[tuple[str, Any]]:
    """(source, spent) over the window's days, each row counted for the share of its days
    inside the window; `spent` is numeric (a float on SQLite, see `money`)."""
    first, end = window_days(window)
    start_no, end_no = (first - _EPOCH.date()).days, (end - _EPOCH.date()).days
    first_no = _day_number(session, AdSpend.first_day)
    last_no = _day_number(session, AdSpend.last_day)
    inside_from = case((first_no > start_no, first_no), else_=start_no)
    inside_to = case((last_no + 1 < end_no, last_no + 1), else_=end_no)  # excluded
    # "1.0": on SQLite the cast of "31000" is an integer and the division would truncate;
    # on PostgreSQL 1.0 is an exact numeric, so the sum stays exact there.
    amount = cast(AdSpend.amount, Numeric(20, 2)) * literal_column("1.0")
    share = amount * (inside_to - inside_from) / (last_no - first_no + 1)
    return (
        select(AdSpend.source, func.sum(share).label("spent"))
        .where(AdSpend.first_day < end, AdSpend.last_day >= first)
        .group_by(AdSpend.source)
    )


async def spend_by_source(session: AsyncSession, window: Window) -> dict[str, Decimal]:
    """Spend of each source over the window, to the cent; sources with no row are absent."""
    rows = (await session.execute(spend_query(session, window))).all()
    return {source: money(spent) for source, spent in rows}


def money(value: Any) -> Decimal:
    """A numeric from SQL (Decimal, float on SQLite, or NULL) as Decimal to the cent."""
    if value is None:
        return Decimal(0)
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)
