"""Bookings of `slots:` calendars: taking a place atomically, releasing it, reading a day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.claims import is_postgresql
from storage.models import Booking

BOOKED = "booked"


def _take(dialect: object) -> object:
    table = Booking.__table__
    # A place another transaction holds (committed, or about to be: PostgreSQL waits for
    # it) is no error but no place: the next one is tried.
    return dialect.insert(table).on_conflict_do_nothing().returning(table.c.id)  # type: ignore[attr-defined]


_TAKE = {"postgresql": _take(postgresql), "sqlite": _take(sqlite)}


class BookingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def take(
        self,
        *,
        lead_id: int,
        calendar: str,
        resource: str,
        starts_at: datetime,
        ends_at: datetime,
        capacity: int,
        question: str,
        now: datetime,
    ) -> Booking | None:
        """A place in the slot, or None when all `capacity` places are taken. Each try is one
        INSERT ... ON CONFLICT DO NOTHING on the unique place: two prospects never get the
        same place, and the last place goes to exactly one of them."""
        statement = _TAKE["postgresql" if is_postgresql(self.session) else "sqlite"]
        held = select(Booking.place).where(
            Booking.calendar == calendar,
            Booking.resource == resource,
            Booking.starts_at == starts_at,
            Booking.place.is_not(None),
        )
        taken = set((await self.session.execute(held)).scalars())
        for place in [p for p in range(1, capacity + 1) if p not in taken]:
            row = {
                "lead_id": lead_id,
                "calendar": calendar,
                "resource": resource,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "place": place,
                "status": BOOKED,
                "question": question,
                "created_at": now,
            }
            booking_id = (await self.session.execute(statement, [row])).scalar()  # type: ignore[call-overload]
            if booking_id is not None:
                return await self.session.get(Booking, booking_id)
        return None

    async def taken(
        self, calendar: str, first: datetime, last: datetime
    ) -> dict[tuple[str, datetime], int]:
        """Places held, by (resource, start), in slots starting from `first` to `last`."""
        query = (
            select(Booking.resource, Booking.starts_at, func.count())
            .where(
                Booking.calendar == calendar,
                Booking.starts_at >= first,
                Booking.starts_at <= last,
                Booking.place.is_not(None),
            )
            .group_by(Booking.resource, Booking.starts_at)
        )
        return {(r, start): n for r, start, n in await self.session.execute(query)}

    async def get(self, booking_id: int) -> Booking | None:
        return await self.session.get(Booking, booking_id)

    async def standing(
        self, lead_id: int, calendar: str | None = None, *, after: datetime | None = None
    ) -> Sequence[Booking]:
        """The lead's bookings that stand, by start (those starting after `after`, if given:
        the ones to come)."""
        query = select(Booking).where(Booking.lead_id == lead_id, Booking.status == BOOKED)
        if calendar is not None:
            query = query.where(Booking.calendar == calendar)
        if after is not None:
            query = query.where(Booking.starts_at > after)
        return (await self.session.execute(query.order_by(Booking.starts_at))).scalars().all()

    def release(self, booking: Booking, status: str, now: datetime) -> None:
        """Give the place back: cancelled by the person, or moved to another slot."""
        booking.status, booking.place, booking.ended_at = status, None, now

    async def release_all(
        self, lead_id: int, status: str, now: datetime, *, beside: int | None = None
    ) -> None:
        """Give back every place the lead holds; with `beside`, only in the calendars where
        that other lead holds one too."""
        query = update(Booking).where(Booking.lead_id == lead_id, Booking.status == BOOKED)
        if beside is not None:
            theirs = select(Booking.calendar).where(
                Booking.lead_id == beside, Booking.status == BOOKED
            )
            query = query.where(Booking.calendar.in_(theirs))
        await self.session.execute(query.values(status=status, place=None, ended_at=now))

    async def between(self, since: datetime, until: datetime) -> Sequence[Booking]:
        """Bookings that stand and start in [since, until), by start."""
        query = select(Booking).where(
            Booking.status == BOOKED, Booking.starts_at >= since, Booking.starts_at < until
        )
        return (await self.session.execute(query.order_by(Booking.starts_at))).scalars().all()
