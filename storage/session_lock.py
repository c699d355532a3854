"""A PostgreSQL session-level advisory lock held on a connection of its own for as long as a
process needs it: one long poller per bot across processes, and no process pacing alone
beside others (bot/roles.py).

Session-level, not transaction-scoped like `claims.singleton_lock`: it lasts as long as the
process, and when the process dies its connection closes and the server drops the lock at
once, so another process can take over within seconds without any lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0  # seconds a liveness check may take before the lock counts as lost


class SessionLock:
    """`pg_try_advisory_lock(hashtext(name))` on a dedicated connection, or its `_shared`
    form: any number of shared holders, or one exclusive holder. Not reentrant."""

    def __init__(self, engine: AsyncEngine, name: str, *, shared: bool = False) -> None:
        self.engine = engine
        self.name = name
        self.shared = shared
        self._connection: AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False if another session does (or the database
        cannot be reached now: the caller tries again later either way)."""
        assert self._connection is None, "the lock is held already"
        try:
            connection = await self.engine.connect()
        except Exception as exc:  # the database away is a reason to wait, not to crash
            log.warning("session lock %s: database unreachable: %s", self.name, _line(exc))
            return False
        try:
            # Autocommit: a connection idle in an open transaction for hours would hold back
            # vacuum and could be cut by idle_in_transaction_session_timeout.
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            try_lock = (
                func.pg_try_advisory_lock_shared if self.shared else func.pg_try_advisory_lock
            )
            query = select(try_lock(func.hashtext(self.name)))
            taken = bool((await connection.execute(query)).scalar_one())
        except Exception as exc:
            log.warning("session lock %s: could not ask for it: %s", self.name, _line(exc))
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
            log.warning("session lock %s: its connection failed: %s", self.name, _line(exc))
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
        log.debug("session lock: closing a broken connection: %s", _line(exc))


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


async def poll_while_locked(
    lock: SessionLock,
    poll: Callable[[], Awaitable[None]],
    stop: Callable[[asyncio.Task[None]], Awaitable[None]],
    *,
    messenger: str,
    retry: float = 2.0,
    check: float = 3.0,
) -> None:
    """Poll a messenger only while this process holds `lock`: wait for it (another process
    polls; tried every `retry` seconds), poll, and `stop` polling as soon as the lock's
    connection fails (checked every `check` seconds), since the server then frees the lock
    for another process. Ends only when polling itself ends, which is an error; cancel it to
    stop."""
    said = False
    try:
        while True:
            if not await lock.try_acquire():
                if not said:
                    log.info("another process polls %s; waiting to take over", messenger)
                    said = True
                await asyncio.sleep(retry)
                continue
            said = False
            log.info("this process polls %s (it holds the poll lock)", messenger)
            polling = asyncio.create_task(poll())
            try:
                while not polling.done():
                    await asyncio.wait({polling}, timeout=check)
                    if not polling.done() and not await lock.alive():
                        break
                else:
                    polling.result()  # its error, if it failed
                    return
            finally:
                await stop(polling)
            log.warning("lost the poll lock's connection: stopped polling %s", messenger)
            await lock.release()
    finally:
        await lock.release()
