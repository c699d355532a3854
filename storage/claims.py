"""Claiming due outbox rows, queueing rows unless their key exists, remembering an update's
key once, singleton periodic jobs and telling a retryable write conflict: the one module with
dialect-specific SQL and error codes.

PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several workers take disjoint batches without waiting
for each other. SQLite: one writer at a time (BEGIN IMMEDIATE), so a conditional UPDATE ...
RETURNING is already exclusive. Both take over rows whose lease expired (a crashed worker).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, func, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InboundEvent, OutboxRow

# What a claim returns of each row: what sending it needs, and the lease it now has.
CLAIMED_COLUMNS = (
    "id",
    "lead_id",
    "channel",
    "kind",
    "payload",
    "idempotency_key",
    "attempts",
    "parts_sent",
    "leased_by",
)


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    worker: str,
    lease: timedelta,
    limit: int,
    channels: Collection[str] | None = None,
) -> Sequence[Row[Any]]:
    """Mark up to `limit` claimable rows (pending and due, or sending with an expired lease:
    a crashed worker's) as being sent by `worker` until `now + lease`; the rows. With
    `channels`, only rows of those (a terminal chat on a shared database leaves the
    messengers' rows to the bot that has them)."""
    if is_postgresql(session):
        ids = await _postgresql_candidates(session, now, limit, channels)
    else:
        statement = _sqlite_candidates(now, limit, channels)
        ids = list((await session.execute(statement)).scalars())
    if not ids:
        return []
    table = OutboxRow.__table__
    # SQLite holds its write lock since BEGIN IMMEDIATE, and PostgreSQL has locked the rows
    # it chose: the ids alone say which rows, and the primary key finds them (with the
    # status condition as well, SQLite walked the status index over every due row).
    statement = (
        update(table)
        .where(table.c.id.in_(ids))
        .values(
            status="sending",
            lease_until=now + lease,
            leased_by=worker,
            attempts=table.c.attempts + 1,
        )
        .returning(*(table.c[name] for name in CLAIMED_COLUMNS))
    )
    # Plain rows, not ORM objects: a batch is read once, by attribute, and never changed.
    rows = {row.id: row for row in await session.execute(statement)}
    return [rows[row_id] for row_id in ids if row_id in rows]  # in due order, as chosen


RENEW_CHUNK = 500  # ids a statement: old SQLite builds take at most 999 parameters


async def renew_leases(
    session: AsyncSession, ids: Collection[int], *, worker: str, until: datetime
) -> int:
    """Extend to `until` the leases `worker` still holds on these rows; how many it held. A
    row another worker took over, or one already recorded, is left alone, and so is one
    locked now (being recorded: PostgreSQL skips it rather than wait, so this never
    deadlocks with the worker's own records)."""
    table = OutboxRow.__table__
    renewed = 0
    ordered = sorted(ids)
    for start in range(0, len(ordered), RENEW_CHUNK):
        held = (
            select(table.c.id)
            .where(
                table.c.id.in_(ordered[start : start + RENEW_CHUNK]),
                table.c.leased_by == worker,
                table.c.status == "sending",
            )
            .with_for_update(skip_locked=True)
        )
        result = await session.execute(
            update(table).where(table.c.id.in_(held)).values(lease_until=until)
        )
        renewed += result.rowcount or 0
    return renewed


async def insert_outbox_rows(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[int, str]]:
    """Insert the rows whose idempotency key is new (INSERT ... ON CONFLICT DO NOTHING); the
    (id, key) of those inserted. One cached statement, sent as multi-row batches (SQLAlchemy's
    "insertmanyvalues"), whatever the number of rows. Every row names the same columns."""
    if not rows:
        return []
    statement = _INSERT_OUTBOX["postgresql" if is_postgresql(session) else "sqlite"]
    result = await session.execute(statement, list(rows))
    return [(row_id, key) for row_id, key in result.all()]


def _insert_outbox(dialect: Any) -> Any:
    table = OutboxRow.__table__
    return (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.idempotency_key])
        .returning(table.c.id, table.c.idempotency_key)
    )


# Built once: constructing the statement and its cache key cost a single enqueue() more than
# running it.
_INSERT_OUTBOX = {"postgresql": _insert_outbox(postgresql), "sqlite": _insert_outbox(sqlite)}


async def remember_inbound(session: AsyncSession, key: str, now: datetime) -> bool:
    """Store an update's key unless it is there (INSERT ... ON CONFLICT DO NOTHING): False
    when it was, one statement either way. A twin being handled concurrently holds the key
    until it commits; PostgreSQL waits for it here, then finds it a repeat."""
    statement = _INSERT_INBOUND["postgresql" if is_postgresql(session) else "sqlite"]
    result = await session.execute(statement, {"key": key, "created_at": now})
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _insert_inbound(dialect: Any) -> Any:
    return dialect.insert(InboundEvent.__table__).on_conflict_do_nothing()


_INSERT_INBOUND = {"postgresql": _insert_inbound(postgresql), "sqlite": _insert_inbound(sqlite)}


def is_postgresql(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def _postgresql_candidates(
    session: AsyncSession, now: datetime, limit: int, channels: Collection[str] | None
) -> list[int]:
    """The due rows nobody else holds, in due order, locked (FOR UPDATE SKIP LOCKED), so
    several workers take disjoint batches without waiting for each other.

    Two queries, one per kind of claimable row, each walking the (status, due_at, id) index in
    order: with one OR of the two, PostgreSQL read every due row and sorted them on disk
    (46 ms with 100,000 due). The ids first, in statements of their own: as a subquery of the
    UPDATE, PostgreSQL may run `LIMIT ... FOR UPDATE SKIP LOCKED` again for every row of a
    nested loop (its plan when few rows look due), each run skipping the rows already
    updated: one claim of 200 then took every due row (5,000 of a broadcast)."""
    found: list[tuple[datetime, int]] = []
    for status, condition in (
        ("pending", OutboxRow.due_at <= now),
        ("sending", OutboxRow.lease_until < now),
    ):
        query = (
            select(OutboxRow.due_at, OutboxRow.id)
            .where(OutboxRow.status == status, condition, *_of_channels(channels))
            .order_by(OutboxRow.due_at, OutboxRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        found += [(due_at, row_id) for due_at, row_id in await session.execute(query)]
    # Rows locked here but not taken are let go at the claim's commit, a moment later.
    return [row_id for _, row_id in sorted(found)[:limit]]


def _of_channels(channels: Collection[str] | None) -> list[Any]:
    return [] if channels is None else [OutboxRow.channel.in_(sorted(channels))]


def _sqlite_candidates(
    now: datetime, limit: int, channels: Collection[str] | None = None
) -> Select[tuple[int]]:
    """The claimable rows in due order, read as two branches that each walk the
    (status, due_at, id) index in order. With the OR, SQLite sorted every due row in a temporary
    B-tree: 97 ms against 0.2 ms with 500,000 due rows (bench/outbox.py), all of it under the
    write lock that incoming events wait for."""
    branches = [
        select(OutboxRow.id, OutboxRow.due_at)
        .where(OutboxRow.status == status, condition, *_of_channels(channels))
        .order_by(OutboxRow.due_at, OutboxRow.id)
        .limit(limit)
        .subquery()
        for status, condition in (
            ("pending", OutboxRow.due_at <= now),
            ("sending", OutboxRow.lease_until < now),
        )
    ]
    both = union_all(*(select(b.c.id, b.c.due_at) for b in branches)).subquery()
    return select(both.c.id).order_by(both.c.due_at, both.c.id).limit(limit)


async def singleton_lock(session: AsyncSession, name: str) -> bool:
    """True when this transaction may run the periodic job `name` and no other process runs
    it now. PostgreSQL: a transaction-scoped advisory lock, released at commit or rollback.
    SQLite: BEGIN IMMEDIATE already lets one writer in at a time."""
    if not is_postgresql(session):
        return True
    query = select(func.pg_try_advisory_xact_lock(func.hashtext(name)))
    return bool((await session.execute(query)).scalar_one())


async def key_lock(session: AsyncSession, name: str) -> None:
    """Wait until no other transaction holds `name`, and hold it until this one ends.
    PostgreSQL: a transaction-scoped advisory lock. SQLite: BEGIN IMMEDIATE already lets one
    writer in at a time."""
    if is_postgresql(session):
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))


# PostgreSQL's lock_not_available: FOR UPDATE NOWAIT met a row another transaction holds.
LOCK_NOT_AVAILABLE = "55P03"


def is_lock_unavailable(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE


# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back
# only because it met another one; running it again is the documented remedy.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def is_write_conflict(exc: BaseException) -> bool:
    """A unique key taken meanwhile, or a PostgreSQL deadlock or serialization failure:
    the event can be handled again from the start."""
    if isinstance(exc, IntegrityError):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and sqlstate in RETRYABLE_SQLSTATES


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or written now (SQLite's lock held past the timeout,
    the server gone), as opposed to a statement that is wrong: the same work can succeed
    later. SQLite's lock wait raises from SQLAlchemy's `begin` event, unwrapped."""
    if isinstance(exc, sqlite3.OperationalError):
        return True
    if isinstance(exc, OperationalError | InterfaceError | SQLAlchemyTimeoutError | OSError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
