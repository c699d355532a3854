"""Engine and sessions: SQLite (WAL, busy timeout, immediate transactions) or PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.sqlite_inline import BUSY_TIMEOUT_MS, begin_immediate, connector
from storage.unit_of_work import UnitOfWork


def _prepare_sqlite(engine: AsyncEngine, *, writer: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (see the "begin" hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes
        # fails with "database is locked" instead of waiting when another process wrote.
        # A reader's transaction never writes, so it takes no lock and runs beside the writer.
        if writer:
            begin_immediate(connection.connection.driver_connection)
        else:
            connection.exec_driver_sql("BEGIN")


def shown_url(url: str) -> str:
    """The URL with its password masked, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def missing_file(url: str) -> Path | None:
    """The SQLite file the URL names, when there is none (opening it would create it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)  # type: ignore[arg-type]
    return None if path.exists() else path


def create_engine(url: str, *, writer: bool = True, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # The calls run on the event loop's thread (see storage/sqlite_inline.py).
        database = parsed.database if parsed.database not in (None, "") else ":memory:"
        engine = create_async_engine(url, async_creator=connector(database), **kwargs)
        _prepare_sqlite(engine, writer=writer)
        return engine
    search_path = parsed.query.get("search_path")
    if search_path:
        # asyncpg takes server settings as arguments, not URL parameters.
        parsed = parsed.difference_update_query(["search_path"])
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("server_settings", {})["search_path"] = search_path
    return create_async_engine(parsed, pool_pre_ping=True, **kwargs)


class Database:
    """One per process: the engine and the session factory behind every unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing our own transactions here costs nothing
        # and spares them SQLite's busy-wait, which sleeps in steps of up to 100 ms; other
        # processes are still kept out by BEGIN IMMEDIATE and the busy timeout.
        self._sqlite_writer = asyncio.Lock() if self.dialect == "sqlite" else None
        self._writer_task: asyncio.Task[object] | None = None
        # Reads that must not queue behind writes (the delivery worker's look at a row right
        # before it sends): SQLite in WAL lets readers run beside its one writer, on
        # connections of their own. PostgreSQL needs nothing apart.
        self._reader_engine: AsyncEngine | None = None
        self._readers = self._sessions
        if self.dialect == "sqlite" and make_url(url).database not in (None, "", ":memory:"):
            self._reader_engine = create_engine(url, writer=False, **engine_kwargs)
            self._readers = async_sessionmaker(self._reader_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction: commit with `uow.commit()`; anything not committed rolls back."""
        async with self._writer(), self._sessions() as session:
            try:
                yield UnitOfWork(session)
            finally:
                if session.in_transaction():
                    await session.rollback()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A short read-only transaction that sees what is committed now and never waits for
        a writer (on SQLite it runs beside the write queue)."""
        if self._reader_engine is None and self._sqlite_writer is not None:
            async with self.unit_of_work() as uow:  # an in-memory SQLite has one connection
                yield uow.session
            return
        async with self._readers() as session:
            try:
                yield session
            finally:
                if session.in_transaction():
                    await session.rollback()

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        if self._sqlite_writer is None:
            yield
            return
        if self._writer_task is asyncio.current_task():
            # Waiting for our own lock would hang for ever; fail loudly instead.
            raise RuntimeError("a unit of work was opened inside another one on SQLite")
        async with self._sqlite_writer:
            self._writer_task = asyncio.current_task()
            try:
                yield
            finally:
                self._writer_task = None

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._reader_engine is not None:
            await self._reader_engine.dispose()
