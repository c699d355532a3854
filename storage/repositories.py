"""Repositories: queries over one session. They flush when they need ids, never commit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import kept_facts
from storage.bookings import BookingRepository
from storage.claims import insert_outbox_rows, is_lock_unavailable, remember_inbound
from storage.models import (
    Answer,
    Consent,
    Contact,
    Event,
    Handoff,
    Identity,
    InboundEvent,
    Lead,
    LeadDate,
    ManagerMessage,
    OutboxRow,
    PromoCode,
    PromoRedemption,
    RedeemFailure,
    SequenceRun,
    StageChange,
    Tag,
    TrackedLink,
)

# Outbox statuses of a row whose message has not gone out: queued, or claimed by a worker.
NOT_YET_SENT = ("pending", "sending")


def outbox_row(
    idempotency_key: str,
    channel: str,
    kind: str,
    due_at: datetime,
    now: datetime,
    lead_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of a new outbox row, for `OutboxRepository.enqueue_many`."""
    return {
        "lead_id": lead_id,
        "channel": channel,
        "kind": kind,
        "payload": payload or {},
        "idempotency_key": idempotency_key,
        "due_at": due_at,
        "status": "pending",
        "attempts": 0,
        "parts_sent": 0,
        "created_at": now,
    }


# What follows a person from one lead to another as it is (see `LeadRepository.move_rows`).
PERSON_ROWS = (Identity, Event, StageChange, Consent, PromoCode, PromoRedemption, ManagerMessage)


class LeadRepository:
    """A lead and what hangs off it: identities, contacts, consents, tags, answers."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # What this transaction read of a lead whole, and changed through this repository
        # since: read again after a statement changed it (`forget`).
        # (lead, kind) -> the consent in force, as read or given in this transaction.
        self._active: dict[tuple[int, str], Consent | None] = {}
        self._consents_read: set[int] = set()
        self._answers: dict[int, dict[str, Answer]] = {}  # lead -> question -> answer
        self._latest: dict[int, Identity] = {}  # lead -> the account it writes from now

    async def get(self, lead_id: int, *, lock: bool = False) -> Lead | None:
        query = select(Lead).where(Lead.id == lead_id)
        if lock:
            # populate_existing: a lead this session read before the lock may have changed
            # since; without it the identity map hands back the stale values.
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def find_by_identity(
        self, channel: str, external_id: str, *, lock: bool = False
    ) -> tuple[Lead, Identity] | None:
        """The lead behind a messenger account; `lock` holds the lead's row until commit."""
        query = (
            select(Lead, Identity)
            .join(Identity, Identity.lead_id == Lead.id)
            .where(Identity.channel == channel, Identity.external_id == external_id)
        )
        if lock:  # see `get` for why populate_existing
            query = query.with_for_update(of=Lead).execution_options(populate_existing=True)
        row = (await self.session.execute(query)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def create(
        self,
        *,
        channel: str,
        external_id: str,
        now: datetime,
        first_name: str | None = None,
        username: str | None = None,
    ) -> tuple[Lead, Identity]:
        lead = Lead(
            created_at=now,
            updated_at=now,
            stage="new",
            funnel_stage="new",
            score=0,
            first_name=first_name,
            facts=kept_facts.empty(),
        )
        self.session.add(lead)
        await self.session.flush()
        identity = Identity(
            lead_id=lead.id,
            channel=channel,
            external_id=external_id,
            username=username,
            created_at=now,
            last_seen_at=now,
        )
        self.session.add(identity)
        await self.session.flush()
        return lead, identity

    async def identities(self, lead_id: int) -> Sequence[Identity]:
        query = select(Identity).where(Identity.lead_id == lead_id).order_by(Identity.id)
        return (await self.session.execute(query)).scalars().all()

    async def erase_personal_data(self, lead_id: int, *, now: datetime) -> None:
        """Forget the person: contacts, answers, tags and messenger accounts go, consents are
        withdrawn, event details are scrubbed. The lead row and its events stay, anonymous,
        so counts by stage, source and offer still add up."""
        self.forget()
        for model in (Contact, Answer, LeadDate, Tag, Identity):
            await self.session.execute(delete(model).where(model.lead_id == lead_id))
        await kept_facts.forget(self.session, [lead_id])
        await self.session.execute(
            update(Consent)
            .where(Consent.lead_id == lead_id, Consent.withdrawn_at.is_(None))
            .values(withdrawn_at=now)
        )
        events = await self.session.execute(select(Event).where(Event.lead_id == lead_id))
        for event in events.scalars():
            event.payload = {k: v for k, v in event.payload.items() if k in ANONYMOUS_EVENT_KEYS}
        # Messages to and about the person (the managers' posts, lead cards, CRM exports,
        # replies), sent or cancelled, keep what they were, not what they said.
        rows = await self.session.execute(select(OutboxRow).where(OutboxRow.lead_id == lead_id))
        for row in rows.scalars():
            row.payload = {k: v for k, v in row.payload.items() if k in ANONYMOUS_OUTBOX_KEYS}
            row.last_error = None  # a platform's or a CRM's error may quote the message
        await self.session.execute(
            update(Handoff).where(Handoff.lead_id == lead_id).values(reason=None)
        )
        # Nobody to meet any more: the places go back to the calendar.
        await BookingRepository(self.session).release_all(lead_id, "cancelled", now)
        lead = await self.get(lead_id)
        if lead is not None:
            lead.first_name = lead.awaiting = lead.timezone = None
            lead.erased_at = lead.erased_at or now
            lead.unsubscribed_at = lead.unsubscribed_at or now

    def seen(self, identity: Identity, now: datetime) -> None:
        """The lead writes from this account now: it is the one its messages go to."""
        identity.last_seen_at = now
        self._latest[identity.lead_id] = identity

    async def latest_identity(self, lead_id: int) -> Identity | None:
        """The messenger account the lead used last: where their next message goes."""
        if lead_id in self._latest:
            return self._latest[lead_id]
        query = (
            select(Identity)
            .where(Identity.lead_id == lead_id)
            .order_by(Identity.last_seen_at.desc(), Identity.id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def latest_identities(self, lead_ids: Sequence[int]) -> dict[int, Any]:
        """`latest_identity` of many leads in one statement, as plain rows (lead_id, channel,
        external_id, last_seen_at)."""
        query = (
            select(Identity.lead_id, Identity.channel, Identity.external_id, Identity.last_seen_at)
            .where(Identity.lead_id.in_(lead_ids))
            .order_by(Identity.lead_id, Identity.last_seen_at, Identity.id)
        )
        # Oldest first, so the last one seen for a lead is its latest.
        return {row.lead_id: row for row in await self.session.execute(query)}

    async def try_lock(self, lead_id: int) -> bool:
        """Lock the lead's row if no other transaction holds it; False (nothing waited for,
        this transaction intact) when one does. PostgreSQL: FOR UPDATE NOWAIT in a savepoint.
        SQLite has one writer at a time and no row locks: always True. For a lead that may
        come before one this transaction holds in the id order other lock takers follow,
        where waiting could deadlock."""
        query = select(Lead.id).where(Lead.id == lead_id).with_for_update(nowait=True)
        try:
            async with self.session.begin_nested():
                await self.session.execute(query)
        except DBAPIError as exc:
            if is_lock_unavailable(exc):
                return False
            raise
        return True

    async def move_rows(self, from_id: int, to_id: int) -> None:
        """Re-point the rows that follow a person unchanged when two leads become one:
        messenger accounts, events, stage moves, consents, promo codes and their uses, posts
        about the lead in the managers' chats. The session's objects are updated too."""
        await self.session.flush()
        self.forget()
        for model in PERSON_ROWS:
            await self.session.execute(
                update(model).where(model.lead_id == from_id).values(lead_id=to_id)
            )
        await kept_facts.forget(self.session, [from_id, to_id])

    async def tracked_links(self, lead_id: int) -> Sequence[TrackedLink]:
        query = select(TrackedLink).where(TrackedLink.lead_id == lead_id)
        return (await self.session.execute(query.order_by(TrackedLink.token))).scalars().all()

    async def first_click(self, token: str, *, now: datetime) -> bool:
        """Mark the link clicked; True only for its first click (of any number at once)."""
        statement = (
            update(TrackedLink)
            .where(TrackedLink.token == token, TrackedLink.clicked_at.is_(None))
            .values(clicked_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool((await self.session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    # contacts
    async def contacts(self, lead_id: int) -> Sequence[Contact]:
        query = select(Contact).where(Contact.lead_id == lead_id).order_by(Contact.id)
        return (await self.session.execute(query)).scalars().all()

    async def has_contact(self, lead_id: int, kind: str) -> bool:
        """Whether the lead left a contact of this kind (what the lead keeps, when known)."""
        kept = kept_facts.holds(self.session.sync_session, lead_id, "contacts", kind)
        if kept is not None:
            return kept
        return any(c.kind == kind for c in await self.contacts(lead_id))

    async def add_contact(
        self, lead_id: int, kind: str, value: str, *, verified: bool, channel: str, now: datetime
    ) -> Contact:
        """Store a contact once; a later verified copy upgrades the stored one."""
        existing = None
        if kept_facts.holds(self.session.sync_session, lead_id, "contacts", kind) is not False:
            query = select(Contact).where(
                Contact.lead_id == lead_id, Contact.kind == kind, Contact.value == value
            )
            existing = (await self.session.execute(query)).scalar_one_or_none()
        if existing is not None:
            existing.verified = existing.verified or verified
            return existing
        contact = Contact(
            lead_id=lead_id,
            kind=kind,
            value=value,
            verified=verified,
            channel=channel,
            created_at=now,
        )
        self.session.add(contact)
        kept_facts.on_contact(self.session.sync_session, lead_id, kind)
        return contact

    async def find_by_contact(self, kind: str, value: str) -> Sequence[int]:
        """Leads with this normalised contact, oldest first. E-mails match in any case: the
        part before the @ keeps the case it was typed in. What this transaction added is not
        flushed first: it is the current lead's own (a merge flushes before it moves rows)."""
        match = (
            func.lower(Contact.value) == value.lower()
            if kind == "email"
            else Contact.value == value
        )
        query = select(Contact.lead_id).where(Contact.kind == kind, match)
        with self.session.no_autoflush:
            found = await self.session.execute(query.distinct().order_by(Contact.lead_id))
            return found.scalars().all()

    # consents
    async def active_consent(self, lead_id: int, kind: str) -> Consent | None:
        """The consent of `kind` in force. A lead's consents in force, of every kind, are read
        once per transaction (a turn asks for several, several times); what this repository
        changes is seen at once."""
        key = (lead_id, kind)
        if lead_id not in self._consents_read:
            query = select(Consent).where(
                Consent.lead_id == lead_id, Consent.withdrawn_at.is_(None)
            )
            # No flush first: a consent is given or withdrawn here only after this read (a
            # merge flushes and forgets), so nothing pending can change what it finds.
            with self.session.no_autoflush:
                rows = (await self.session.execute(query.order_by(Consent.id))).scalars()
                for consent in rows:
                    self._active[(lead_id, consent.kind)] = consent  # the latest of each kind
            self._consents_read.add(lead_id)
        known = self._active.get(key)
        if known is None or (known.withdrawn_at is None and known.lead_id == lead_id):
            return known
        del self._active[key]  # withdrawn meanwhile: look again
        self._consents_read.discard(lead_id)
        return await self.active_consent(lead_id, kind)

    async def with_active_consent(self, lead_ids: Sequence[int], kind: str) -> set[int]:
        """Which of these leads have an active consent of `kind`: one statement per chunk."""
        found: set[int] = set()
        for start in range(0, len(lead_ids), 5_000):
            query = select(Consent.lead_id).where(
                Consent.lead_id.in_(lead_ids[start : start + 5_000]),
                Consent.kind == kind,
                Consent.withdrawn_at.is_(None),
            )
            found.update((await self.session.execute(query)).scalars())
        return found

    async def give_consent(
        self, lead_id: int, kind: str, *, text_version: str, channel: str, now: datetime
    ) -> Consent:
        current = await self.active_consent(lead_id, kind)
        if current is not None and current.text_version == text_version:
            return current
        if current is not None:  # consent to an older text is replaced, history kept
            current.withdrawn_at = now
        consent = Consent(
            lead_id=lead_id, kind=kind, text_version=text_version, channel=channel, given_at=now
        )
        self.session.add(consent)
        self._active[(lead_id, kind)] = consent
        return consent

    async def consents(self, lead_id: int) -> Sequence[Consent]:
        query = select(Consent).where(Consent.lead_id == lead_id).order_by(Consent.id)
        return (await self.session.execute(query)).scalars().all()

    def forget(self) -> None:
        """Rows changed by a statement, not through this repository (an erasure, a merge):
        read them again."""
        self._active.clear()
        self._consents_read.clear()
        self._answers.clear()
        self._latest.clear()

    async def withdraw_consent(self, lead_id: int, kind: str, *, now: datetime) -> bool:
        current = await self.active_consent(lead_id, kind)
        if current is None:
            return False
        current.withdrawn_at = now
        return True

    # tags and answers
    async def tags(self, lead_id: int) -> set[str]:
        query = select(Tag.tag).where(Tag.lead_id == lead_id)
        return set((await self.session.execute(query)).scalars().all())

    async def add_tag(self, lead_id: int, tag: str, *, now: datetime) -> bool:
        kept = kept_facts.holds(self.session.sync_session, lead_id, "tags", tag)
        if kept or (kept is None and await self.session.get(Tag, (lead_id, tag)) is not None):
            return False
        self.session.add(Tag(lead_id=lead_id, tag=tag, created_at=now))
        kept_facts.on_tag(self.session.sync_session, lead_id, tag)
        return True

    async def answers(self, lead_id: int) -> dict[str, Answer]:
        """The lead's answers by question, read once per transaction."""
        if lead_id not in self._answers:
            query = select(Answer).where(Answer.lead_id == lead_id)
            rows = (await self.session.execute(query)).scalars().all()
            self._answers[lead_id] = {a.question: a for a in rows}
        return dict(self._answers[lead_id])

    async def forget_answer(self, lead_id: int, question: str) -> None:
        """The question is unanswered again (a booking cancelled: its time is no answer)."""
        await self.session.execute(
            delete(Answer).where(Answer.lead_id == lead_id, Answer.question == question)
        )
        known = self._answers.get(lead_id)
        if known is not None:
            known.pop(question, None)

    async def set_date(
        self, lead_id: int, name: str, when: tuple[int, int, int | None], *, now: datetime
    ) -> None:
        """Remember a date of the lead's as (month, day, year or None), replacing the last."""
        month, day, year = when
        row = await self.session.get(LeadDate, (lead_id, name))
        if row is None:
            row = LeadDate(lead_id=lead_id, name=name)
            self.session.add(row)
        row.month, row.day, row.year, row.created_at = month, day, year, now

    async def set_answer(
        self, lead_id: int, question: str, value: str, *, score: int, now: datetime
    ) -> Answer:
        known = self._answers.get(lead_id)
        if known is not None:
            answer = known.get(question)
        else:
            answer = await self.session.get(Answer, (lead_id, question))
        if answer is None:
            answer = Answer(lead_id=lead_id, question=question)
            self.session.add(answer)
            if known is not None:
                known[question] = answer
        answer.value, answer.score, answer.created_at = value, score, now
        return answer


# Event details that say nothing about the person; the rest is dropped when a lead is erased.
ANONYMOUS_EVENT_KEYS = frozenset(
    {"offer", "sequence", "step", "source", "question", "kind", "variant", "promo", "verified"}
)


# Outbox payload keys that say what a message was, not what it said or to whom.
ANONYMOUS_OUTBOX_KEYS = frozenset(
    {
        "purpose",
        "broadcast",
        "sequence",
        "step",
        "index",
        "run",
        "round",
        "variant",
        "target",
        "promo",
        "occurrence",
    }
)


class EventRepository:
    """What happened to a lead: events and stage moves, append-only."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(
        self,
        lead_id: int,
        name: str,
        *,
        now: datetime,
        channel: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Event:
        event = Event(
            lead_id=lead_id, name=name, payload=payload or {}, channel=channel, created_at=now
        )
        self.session.add(event)
        kept_facts.on_event(self.session.sync_session, lead_id, name, event.payload)
        return event

    async def count(self, lead_id: int, name: str, **details: str) -> int:
        """How many `name` events the lead has, optionally only those with these details."""
        await self.session.flush()
        query = select(func.count()).where(Event.lead_id == lead_id, Event.name == name)
        for key, value in details.items():
            query = query.where(Event.payload[key].as_string() == value)
        return int((await self.session.execute(query)).scalar_one())

    async def detail_values(self, lead_id: int, name: str, key: str) -> set[str]:
        """The distinct values of one detail over a lead's `name` events (offers taken, say)."""
        query = select(Event.payload[key].as_string()).where(
            Event.lead_id == lead_id, Event.name == name
        )
        return {v for v in (await self.session.execute(query.distinct())).scalars() if v}

    async def for_lead(self, lead_id: int, *, limit: int = 100) -> Sequence[Event]:
        await self.session.flush()
        query = (
            select(Event).where(Event.lead_id == lead_id).order_by(Event.id.desc()).limit(limit)
        )
        return (await self.session.execute(query)).scalars().all()

    def add_stage_change(
        self, lead_id: int, from_stage: str | None, to_stage: str, *, reason: str, now: datetime
    ) -> StageChange:
        change = StageChange(
            lead_id=lead_id,
            from_stage=from_stage,
            to_stage=to_stage,
            reason=reason,
            created_at=now,
        )
        self.session.add(change)
        return change

    async def stage_history(self, lead_id: int) -> Sequence[StageChange]:
        await self.session.flush()
        query = select(StageChange).where(StageChange.lead_id == lead_id).order_by(StageChange.id)
        return (await self.session.execute(query)).scalars().all()


class SequenceRepository:
    """Which warm-up chains a lead is in."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, lead_id: int, sequence: str) -> SequenceRun | None:
        query = select(SequenceRun).where(
            SequenceRun.lead_id == lead_id, SequenceRun.sequence == sequence
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def start(self, lead_id: int, sequence: str, *, now: datetime) -> SequenceRun | None:
        """Enrol a lead; None when it is (or was) in this chain already."""
        if await self.get(lead_id, sequence) is not None:
            return None
        return self.add(lead_id, sequence, now=now)

    def add(
        self, lead_id: int, sequence: str, *, now: datetime, occasion: str | None = None
    ) -> SequenceRun:
        """The lead's first run of the chain (the caller knows there is none)."""
        run = SequenceRun(
            lead_id=lead_id,
            sequence=sequence,
            status="active",
            started_at=now,
            run_no=1,
            occasion=occasion,
        )
        self.session.add(run)
        return run

    async def for_lead(self, lead_id: int) -> Sequence[SequenceRun]:
        query = select(SequenceRun).where(SequenceRun.lead_id == lead_id).order_by(SequenceRun.id)
        return (await self.session.execute(query)).scalars().all()


class OutboxRepository:
    """Future messages and exports, written in the transaction of the event that caused them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def enqueue(
        self,
        *,
        idempotency_key: str,
        channel: str,
        kind: str,
        due_at: datetime,
        now: datetime,
        lead_id: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> int | None:
        """Add a row unless one with this key exists (then None: nothing is queued twice);
        the new row's id. One statement."""
        inserted = await self.enqueue_many(
            [outbox_row(idempotency_key, channel, kind, due_at, now, lead_id, payload)]
        )
        return inserted[0][0] if inserted else None

    async def enqueue_many(self, rows: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
        """Add the rows (made by `outbox_row`) whose keys are new, a statement per thousands
        of rows: a broadcast or a chain start for many leads. The (id, key) of those added."""
        return await insert_outbox_rows(self.session, rows)

    async def cancel_pending(
        self, lead_id: int, *, reason: str, keep: tuple[str, ...] = ()
    ) -> int:
        """Cancel everything still queued for a lead (blocked the bot, erased, ...) but the
        kinds in `keep`. Rows a worker is sending are cancelled too: the worker reads the row
        right before it goes on the wire and sends nothing."""
        query = update(OutboxRow).where(
            OutboxRow.lead_id == lead_id,
            OutboxRow.status.in_(NOT_YET_SENT),
            OutboxRow.kind.not_in(keep),
        )
        result = await self.session.execute(
            query.values(status="cancelled", last_error=reason[:500])
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def cancel_steps(self, lead_id: int, sequences: list[str], *, reason: str) -> int:
        """Cancel the queued (or being sent) steps of these chains for a lead."""
        result = await self.session.execute(
            update(OutboxRow)
            .where(
                OutboxRow.lead_id == lead_id,
                OutboxRow.status.in_(NOT_YET_SENT),
                OutboxRow.kind == "step",
                OutboxRow.payload["sequence"].as_string().in_(sequences),
            )
            .values(status="cancelled", last_error=reason[:500])
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def keys_with_status(self, keys: Sequence[str], statuses: Sequence[str]) -> set[str]:
        """Which of these keys have a row in one of `statuses`. Found by key alone, so the
        unique key's index serves (with the status in the query, SQLite chose the status
        index and read every pending row)."""
        query = select(OutboxRow.idempotency_key, OutboxRow.status).where(
            OutboxRow.idempotency_key.in_(keys)
        )
        return {key for key, status in await self.session.execute(query) if status in statuses}

    async def next_due(self, channels: Collection[str] | None = None) -> datetime | None:
        """When the earliest pending row (of `channels`, if given) is due."""
        query = select(func.min(OutboxRow.due_at)).where(OutboxRow.status == "pending")
        if channels is not None:
            query = query.where(OutboxRow.channel.in_(sorted(channels)))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def for_lead(self, lead_id: int) -> Sequence[OutboxRow]:
        """Every row of the lead, whatever its status, oldest first."""
        query = select(OutboxRow).where(OutboxRow.lead_id == lead_id).order_by(OutboxRow.id)
        return (await self.session.execute(query)).scalars().all()

    async def pending_for_lead(self, lead_id: int) -> Sequence[OutboxRow]:
        query = (
            select(OutboxRow)
            .where(OutboxRow.lead_id == lead_id, OutboxRow.status == "pending")
            .order_by(OutboxRow.due_at, OutboxRow.id)
        )
        return (await self.session.execute(query)).scalars().all()


class InboundRepository:
    """Which messenger updates were handled, so a redelivered one is skipped."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def first_time(self, key: str, *, now: datetime) -> bool:
        """Remember `key`; False if it was remembered before (the update is a repeat)."""
        return await remember_inbound(self.session, key, now)

    async def forget_before(self, moment: datetime) -> int:
        result = await self.session.execute(
            delete(InboundEvent).where(InboundEvent.created_at < moment)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class PromoRepository:
    """Promo codes handed out. The caller holds the lead's lock, so one lead's codes are
    never issued twice at once; codes of different leads may collide on the unique key."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_code(self, lead_id: int, promo: str, now: datetime) -> PromoCode | None:
        """The lead's newest code of this promo that has not expired or been used up."""
        query = (
            select(PromoCode)
            .where(
                PromoCode.lead_id == lead_id,
                PromoCode.promo == promo,
                or_(PromoCode.expires_at.is_(None), PromoCode.expires_at > now),
                or_(PromoCode.uses_left.is_(None), PromoCode.uses_left > 0),
            )
            .order_by(PromoCode.issued_at.desc(), PromoCode.id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def insert_unique(self, row: PromoCode) -> bool:
        """Insert a new row (not yet in the session) now, in a savepoint; False (nothing
        inserted, the transaction intact) when its code is taken: the caller retries with a
        new code."""
        # Flush the rest first: a rolled-back savepoint would take it along.
        await self.session.flush()
        try:
            async with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            return False
        return True

    async def for_lead(self, lead_id: int) -> Sequence[PromoCode]:
        query = select(PromoCode).where(PromoCode.lead_id == lead_id).order_by(PromoCode.id)
        return (await self.session.execute(query)).scalars().all()

    async def count_for_lead(self, lead_id: int, promo: str) -> int:
        query = select(func.count()).where(PromoCode.lead_id == lead_id, PromoCode.promo == promo)
        return int((await self.session.execute(query)).scalar_one())

    async def by_lookup(self, lookup: str) -> PromoCode | None:
        query = select(PromoCode).where(PromoCode.lookup == lookup)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def use_once(self, code_id: int, now: datetime) -> bool:
        """Take one use of the code if it has one left and has not expired: one conditional
        UPDATE, so of many simultaneous redemptions exactly as many win as there are uses."""
        result = await self.session.execute(
            update(PromoCode)
            .where(
                PromoCode.id == code_id,
                or_(PromoCode.uses_left.is_(None), PromoCode.uses_left > 0),
                or_(PromoCode.expires_at.is_(None), PromoCode.expires_at > now),
            )
            .values(uses_left=PromoCode.uses_left - 1)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def add_redemption(self, redemption: PromoRedemption) -> None:
        self.session.add(redemption)

    async def redemptions_by(self, lead_id: int, promo: str) -> int:
        query = select(func.count()).where(
            PromoRedemption.lead_id == lead_id, PromoRedemption.promo == promo
        )
        return int((await self.session.execute(query)).scalar_one())

    async def last_redemption(self, code_id: int) -> PromoRedemption | None:
        query = (
            select(PromoRedemption)
            .where(PromoRedemption.code_id == code_id)
            .order_by(PromoRedemption.redeemed_at.desc(), PromoRedemption.id.desc())
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def expiring(
        self, promo: str, now: datetime, window: timedelta, *, limit: int
    ) -> Sequence[PromoCode]:
        """Personal codes of the promo that expire within `window` and were not reminded of."""
        query = (
            select(PromoCode)
            .where(
                PromoCode.promo == promo,
                PromoCode.lead_id.is_not(None),
                PromoCode.reminded_at.is_(None),
                PromoCode.expires_at > now,
                PromoCode.expires_at <= now + window,
                or_(PromoCode.uses_left.is_(None), PromoCode.uses_left > 0),
            )
            .order_by(PromoCode.lead_id)
            .limit(limit)
        )
        return (await self.session.execute(query)).scalars().all()

    async def mark_reminded(self, code_id: int, now: datetime) -> bool:
        result = await self.session.execute(
            update(PromoCode)
            .where(PromoCode.id == code_id, PromoCode.reminded_at.is_(None))
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def recent_failures(self, source: str, since: datetime) -> Sequence[datetime]:
        """When `source` failed to redeem since then, newest first."""
        query = (
            select(RedeemFailure.failed_at)
            .where(RedeemFailure.source == source, RedeemFailure.failed_at > since)
            .order_by(RedeemFailure.failed_at.desc())
        )
        return (await self.session.execute(query)).scalars().all()

    async def add_failure(self, source: str, now: datetime, *, forget_before: datetime) -> None:
        await self.session.execute(
            delete(RedeemFailure).where(
                RedeemFailure.source == source, RedeemFailure.failed_at <= forget_before
            )
        )
        self.session.add(RedeemFailure(source=source, failed_at=now))
