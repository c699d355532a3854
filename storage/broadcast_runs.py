"""Queries of `leadbot broadcast`: the record of each run that queued messages, its progress
and its cancelling, and the names a segment may use that only the database knows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, String, case, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import BroadcastRun, Event, Lead, OutboxRow, Tag

RUN_KEY = "broadcast_run"  # the outbox payload's key naming the run a row belongs to
# What the rows of a cancelled run say, and what `leadbot broadcast --status` recognises.
CANCELLED_BY_COMMAND = "cancelled with leadbot broadcast --cancel"
CHUNK = 5_000  # ids in one IN list

_outbox = OutboxRow.__table__


@dataclass(frozen=True)
class Progress:
    """Where a run's rows are now: the count of each outbox status, and when the next of
    those still queued is due."""

    counts: dict[str, int] = field(default_factory=dict)
    next_due: datetime | None = None
    # (status, last_error) -> rows: why rows did not go out; asked for one run only.
    reasons: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, *statuses: str) -> int:
        return sum(self.counts.get(status, 0) for status in statuses)


async def new_run(
    session: AsyncSession,
    broadcast: str,
    *,
    now: datetime,
    text: str | None = None,
    segment: str | None = None,
    at: str | None = None,
    run_id: str | None = None,
) -> str:
    """Record a run of `broadcast` and return its id: the broadcast's id and the run's
    number among that broadcast's runs (`webinar-1`, `webinar-2`), or `run_id` (one
    occurrence of a broadcast that repeats: `digest@2026-12-03`). Flushed: should another
    command take the same id at the same moment, this raises `IntegrityError` (the caller
    tries again in a new transaction and gets the next number, or leaves the occurrence to
    the process that recorded it)."""
    if run_id is None:
        query = select(BroadcastRun.id).where(BroadcastRun.broadcast == broadcast)
        found = (await session.execute(query)).scalars()
        numbers = [_number(found_id, broadcast) for found_id in found]
        run_id = f"{broadcast}-{max(numbers, default=0) + 1}"
    session.add(
        BroadcastRun(
            id=run_id,
            broadcast=broadcast,
            text=text,
            segment=segment,
            at=at,
            created_at=now,
            queued=0,
        )
    )
    await session.flush()
    return run_id


def _number(run_id: str, broadcast: str) -> int:
    suffix = run_id.removeprefix(f"{broadcast}-")
    return int(suffix) if suffix.isdigit() else 0


async def extend_run(session: AsyncSession, run_id: str, row_ids: Sequence[int]) -> None:
    """Count rows just queued for the run and widen its range of outbox ids to hold them."""
    if not row_ids:
        return
    low, high = min(row_ids), max(row_ids)
    first, last = BroadcastRun.first_row, BroadcastRun.last_row
    await session.execute(
        update(BroadcastRun)
        .where(BroadcastRun.id == run_id)
        .values(
            queued=BroadcastRun.queued + len(row_ids),
            first_row=case((first.is_(None) | (first > low), low), else_=first),
            last_row=case((last.is_(None) | (last < high), high), else_=last),
        )
    )


async def forget_run(session: AsyncSession, run_id: str) -> None:
    """Drop the record of a run that queued nothing: there is nothing to follow or cancel."""
    await session.execute(delete(BroadcastRun).where(BroadcastRun.id == run_id))


async def get_run(session: AsyncSession, run_id: str) -> BroadcastRun | None:
    return await session.get(BroadcastRun, run_id)


async def latest_runs(session: AsyncSession, limit: int) -> tuple[list[BroadcastRun], int]:
    """The `limit` newest runs, oldest first, and how many older ones there are."""
    query = (
        select(BroadcastRun)
        .order_by(BroadcastRun.created_at.desc(), BroadcastRun.id.desc())
        .limit(limit)
    )
    runs = list((await session.execute(query)).scalars())
    total = (await session.execute(select(func.count()).select_from(BroadcastRun))).scalar_one()
    return runs[::-1], int(total) - len(runs)


async def run_ids(session: AsyncSession) -> list[str]:
    return list((await session.execute(select(BroadcastRun.id))).scalars())


SUPERSEDED_WITHIN = timedelta(days=90)


def _rows_of(run: BroadcastRun) -> ColumnElement[bool]:
    """The run's rows: its range of the primary key first, then the payload's mark (other
    rows queued meanwhile share the range)."""
    return _outbox.c.id.between(run.first_row, run.last_row) & (
        _outbox.c.payload[RUN_KEY].as_string() == run.id
    )


async def progress(session: AsyncSession, run: BroadcastRun, *, reasons: bool = False) -> Progress:
    """Count the run's rows by status; with `reasons`, also why rows did not go out."""
    if run.first_row is None:
        return Progress()
    query = (
        select(_outbox.c.status, func.count(), func.min(_outbox.c.due_at))
        .where(_rows_of(run))
        .group_by(_outbox.c.status)
    )
    counts: dict[str, int] = {}
    next_due = None
    for status, number, due in await session.execute(query):
        counts[status] = int(number)
        if status == "pending":
            next_due = due
    why: dict[tuple[str, str], int] = {}
    if reasons:
        query = (
            select(_outbox.c.status, _outbox.c.last_error, func.count())
            .where(_rows_of(run), _outbox.c.status.in_(("failed", "cancelled", "skipped")))
            .group_by(_outbox.c.status, _outbox.c.last_error)
        )
        for status, error, number in await session.execute(query):
            why[(status, error or "")] = int(number)
    return Progress(counts, next_due, why)


async def cancel_run(session: AsyncSession, run: BroadcastRun, *, now: datetime) -> int:
    """Cancel every row of the run not yet sent, in one statement; how many.

    Rows claimed by a worker are cancelled too: the worker reads each row's status right
    before it goes on the wire and sends nothing of a cancelled one, and a row that was
    already on the wire is recorded as sent. A row that cannot have gone out at all (queued,
    never tried) gives its idempotency key up, so the broadcast may be queued for that lead
    again; a row that was claimed or tried keeps it, as it may have reached the person."""
    run.cancelled_at = now
    if run.first_row is None:
        return 0
    untouched = (
        (_outbox.c.status == "pending") & (_outbox.c.attempts == 0) & (_outbox.c.parts_sent == 0)
    )
    freed = _outbox.c.idempotency_key + ":cancelled:" + cast(_outbox.c.id, String)
    result = await session.execute(
        update(_outbox)
        .where(_rows_of(run), _outbox.c.status.in_(("pending", "sending")))
        .values(
            status="cancelled",
            last_error=CANCELLED_BY_COMMAND,
            idempotency_key=case((untouched, freed), else_=_outbox.c.idempotency_key),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def existing_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    """Which of these idempotency keys have an outbox row, whatever its status."""
    found: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        query = select(_outbox.c.idempotency_key).where(
            _outbox.c.idempotency_key.in_(keys[start : start + CHUNK])
        )
        found.update((await session.execute(query)).scalars())
    return found


async def sources_seen(session: AsyncSession) -> set[str]:
    """Every deep-link source the database knows: leads' first sources and those of any
    `start` since."""
    first = select(Lead.source).where(Lead.source.is_not(None)).distinct()
    later = (
        select(Event.payload["source"].as_string())
        .where(Event.name == "start", Event.payload["source"].as_string().is_not(None))
        .distinct()
    )
    return _names(await session.execute(first), await session.execute(later))


async def tags_seen(session: AsyncSession) -> set[str]:
    return _names(await session.execute(select(Tag.tag).distinct()))


async def events_seen(session: AsyncSession) -> set[str]:
    return _names(await session.execute(select(Event.name).distinct()))


def _names(*results: Iterable[Sequence[object]]) -> set[str]:
    return {str(row[0]) for result in results for row in result if row[0] is not None}


async def supersede(session: AsyncSession, broadcast: str, latest: str, *, now: datetime) -> int:
    """Cancel the rows still waiting (the advertising limit held them) of the earlier
    occurrences of a broadcast that repeats, now that `latest` is queued: last week's digest
    is not sent after this week's is due. How many."""
    query = select(BroadcastRun).where(
        BroadcastRun.broadcast == broadcast,
        BroadcastRun.id.like(f"{broadcast}@%"),
        BroadcastRun.id != latest,
        BroadcastRun.first_row.is_not(None),
        # A row is held at most the limit's window past its time: old runs have none left.
        BroadcastRun.created_at > now - SUPERSEDED_WITHIN,
    )
    cancelled = 0
    for run in (await session.execute(query)).scalars():
        result = await session.execute(
            update(_outbox)
            .where(_rows_of(run), _outbox.c.status == "pending")
            .values(status="cancelled", last_error=f"superseded by {latest}")
        )
        cancelled += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return cancelled
