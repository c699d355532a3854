"""The span a report covers and the SQL it needs to measure time in it on both databases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, Float, Integer, cast, func, literal
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

By = Literal["source", "offer", "variant"]
DAY = 86400.0
_TIMESTAMPTZ = DateTime(timezone=True)
WEEK = 7 * DAY


@dataclass(frozen=True)
class Window:
    """[since, until) in UTC; `now` for ages (recency, open cohorts); `zone` is the
    scenario's, for calendar weeks and days; `by` splits sections that can be split."""

    since: datetime
    until: datetime
    now: datetime
    zone: ZoneInfo
    by: By | None = None

    @property
    def first_monday(self) -> datetime:
        """Local midnight of the Monday on or before `since`, in UTC: week 0 of the cohorts."""
        local = self.since.astimezone(self.zone)
        monday = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return monday.astimezone(ZoneInfo("UTC"))


def seconds_between(session: AsyncSession, later: Any, earlier: Any) -> ColumnElement[float]:
    """`later - earlier` in seconds, as SQL: columns or datetimes, on SQLite or PostgreSQL."""
    if session.bind.dialect.name == "sqlite":
        seconds = (func.julianday(_sqlite(later)) - func.julianday(_sqlite(earlier))) * DAY
    else:
        seconds = func.extract("epoch", _pg(later) - _pg(earlier))
    return cast(seconds, Float)


def _sqlite(value: Any) -> Any:
    # SQLite keeps UTC as naive "YYYY-MM-DD HH:MM:SS.ffffff" (storage.models.UTCDateTime).
    if isinstance(value, datetime):
        return literal(value.astimezone(ZoneInfo("UTC")).replace(tzinfo=None).isoformat(" "))
    return value


def _pg(value: Any) -> Any:
    if isinstance(value, datetime):
        return literal(value, type_=_TIMESTAMPTZ)
    return value


def weeks_since(session: AsyncSession, moment: Any, origin: Any) -> ColumnElement[int]:
    """Whole weeks from `origin` to `moment` (0 for the first seven days), as SQL. `moment`
    must not be NULL: SQLite's floor() is Python's math.floor, which refuses None."""
    return cast(func.floor(seconds_between(session, moment, origin) / WEEK), Integer)
