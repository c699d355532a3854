"""One long poller per bot across processes: a PostgreSQL session-level advisory lock held on
a connection of its own for as long as the process polls.

Session-level, not transaction-scoped like `claims.singleton_lock`: polling lasts as long as
the process, and when the process dies its connection closes and the server drops the lock at
once, so another process can take over within seconds without any lease to expire.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0  # seconds a liveness check may take before the lock counts as lost


class PollLock:
    """`pg_try_advisory_lock(hashtext(name))` on a dedicated connection. Not reentrant."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._connection: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False if another session does (or the database
        cannot be reached now: the caller tries again later either way)."""
        assert self._connection is None, "the poll lock is held already"
        try:
            connection = await self.engine.connect()
        except Exception as exc:  # the database away is a reason to wait, not to crash
            log.warning("poll lock: database unreachable: %s", _line(exc))
            return False
        try:
            # Autocommit: a connection idle in an open transaction for hours would hold back
            # vacuum and could be cut by idle_in_transaction_session_timeout.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            query = select(func.pg_try_advisory_lock(func.hashtext(self.name)))
            taken = bool((await connection.execute(query)).scalar_one())
        except Exception as exc:
            log.warning("poll lock: could not ask for the lock: %s", _line(exc))
            await _discard(connection)
            return False
        if not taken:
            await connection.close()  # holds no lock: back to the pool as it is
            return False
        self._connection = connection
        return True

    async def alive(self) -> bool:
        """Whether the lock's connection still answers (so the server still counts this
        process as the holder). Cheap: one `SELECT 1`."""
        if self._connection is None:
            return False
        try:
            await asyncio.wait_for(self._connection.execute(text("SELECT 1")), CHECK_TIMEOUT)
        except Exception as exc:
            log.warning("poll lock: its connection failed: %s", _line(exc))
            return False
        return True

    async def release(self) -> None:
        """Let the lock go by closing its connection for good: returned to the pool, a
        connection would keep the session's lock with it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await _discard(connection)


async def _discard(connection: AsyncConnection) -> None:
    try:
        await connection.invalidate()  # closes the DBAPI connection, ending the session
        await connection.close()
    except Exception as exc:  # a connection already broken: nothing left to free
        log.debug("poll lock: closing a broken connection: %s", _line(exc))


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
