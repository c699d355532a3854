"""The unit of work: repositories share one session; only `commit` ends the transaction."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from storage import kept_facts
from storage.bookings import BookingRepository
from storage.repositories import (
    EventRepository,
    InboundRepository,
    LeadRepository,
    OutboxRepository,
    PromoRepository,
    SequenceRepository,
)


class UnitOfWork:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.leads = LeadRepository(session)
        self.events = EventRepository(session)
        self.inbound = InboundRepository(session)
        self.sequences = SequenceRepository(session)
        self.outbox = OutboxRepository(session)
        self.promos = PromoRepository(session)
        self.bookings = BookingRepository(session)
        event.listen(session.sync_session, "after_soft_rollback", kept_facts.rolled_back)

    async def commit(self) -> None:
        await kept_facts.settle(self.session)
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()
