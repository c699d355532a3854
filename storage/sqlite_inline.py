"""SQLite calls made on the event loop's own thread, and a write lock waited for without
blocking it.

aiosqlite runs every call (a cursor, an execute, a fetch, a close: four for one statement
through SQLAlchemy) on a thread of its own and hands the result back through the event loop:
about 90 µs of CPU a hand-off on this class of machine, more than the SQLite work of most of
the statements an event or a delivery runs (a due-row claim is 0.2 ms in SQLite itself). The
calls here run in place instead: SQLite in WAL mode never waits for a reader, and this
process queues its own writers (`Database`), so the only wait is for the write lock another
process holds. That one is taken at BEGIN IMMEDIATE without a busy handler and waited for with
`asyncio.sleep`, so the loop goes on serving while another process writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiosqlite.core import Connection
from sqlalchemy.util import await_

# A statement other than BEGIN IMMEDIATE that meets a lock (a checkpoint that restarts the
# log, say) still waits this long inside SQLite.
BUSY_TIMEOUT_MS = 15_000


class _InPlace:
    """Stands in for aiosqlite's queue to its thread: runs each call as it is queued."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, call = item
        try:
            result = call()
        except BaseException as exc:  # handed to the caller, as aiosqlite's thread does
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InPlaceConnection(Connection):
    """An aiosqlite connection whose calls run on the caller's thread (see the module)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InPlace()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InPlaceConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Any:
        return self._connect().__await__()

    def __del__(self) -> None:
        # No thread to leak (aiosqlite warns of its own): an unclosed connection just closes.
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:  # type: ignore[override]
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def connector(database: str) -> Callable[[], InPlaceConnection]:
    """`async_creator` for SQLAlchemy's aiosqlite dialect: a file path or ":memory:"."""

    def connect() -> InPlaceConnection:
        def open_sqlite() -> sqlite3.Connection:
            # SQLAlchemy may close a pooled connection from the garbage collector's thread.
            return sqlite3.connect(database, check_same_thread=False)

        return InPlaceConnection(open_sqlite)

    return connect


def begin_immediate(driver_connection: Any) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write lock on the event loop (called
    from SQLAlchemy's `begin` event, inside its greenlet); raises what SQLite raised once
    BUSY_TIMEOUT_MS have passed."""
    raw: sqlite3.Connection = driver_connection._conn
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_MS / 1000, 0.001
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            await_(asyncio.sleep(pause))
            pause = min(pause * 2, 0.05)
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)
