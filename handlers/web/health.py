"""Probes and metrics on the bot's web server: `/healthz` (the process answers), `/readyz`
(the database answers, its schema is the code's, Redis answers when configured) and
`/metrics` (Prometheus' text format, bot/metrics.py).

A probe never fails with a 500 and never hangs: each check is bounded by a timeout, run beside
the others, and whatever goes wrong becomes a 503 naming the check and what it saw."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from bot.metrics import Metrics
from storage import migrate
from storage.claims import is_unavailable
from storage.database import Database, create_engine, missing_file

CHECK_TIMEOUT = 2.0  # seconds each readiness check may take: a probe must answer quickly
OK = "ok"


class Probes:
    """What `/readyz` checks and `/metrics` reads, for one process."""

    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        now: Callable[[], datetime],
        *,
        redis_url: str | None = None,
        timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.now = now
        self.redis_url = redis_url
        self.timeout = timeout
        self.head = migrate.head_revision()  # the code's: read from disk once
        # A fresh connection for every check, not one of the bot's pooled ones: it says
        # whether the database can be reached now, and on SQLite whether the file the URL
        # names is the database (a pooled connection keeps a deleted or replaced file open).
        self._engine: AsyncEngine | None = None

    async def ready(self) -> dict[str, str]:
        """Each check's result: "ok" or what is wrong."""
        checks: dict[str, Callable[[], Awaitable[str]]] = {"database": self._database}
        if self.redis_url:
            checks["redis"] = self._redis
        results = await asyncio.gather(*(self._bounded(check) for check in checks.values()))
        return dict(zip(checks, results, strict=True))

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def _bounded(self, check: Callable[[], Awaitable[str]]) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                return await check()
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as exc:  # any failure is "not ready", never the probe's 500
            return _short(exc)

    async def _database(self) -> str:
        missing = missing_file(self.db.url)
        if missing is not None:  # connecting would create an empty file
            return f"the database file {missing} does not exist"
        if self._engine is None:
            self._engine = create_engine(self.db.url, writer=False, poolclass=NullPool)
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            try:
                rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
                versions = set(rows.scalars())
            except DBAPIError as exc:
                if is_unavailable(exc) and "alembic_version" not in str(exc):
                    raise
                versions = set()  # no such table: never migrated
        if versions != {self.head}:
            found = ", ".join(sorted(versions)) or "nothing"
            return f"schema is at {found}, the code needs {self.head}: run `leadbot db upgrade`"
        return OK

    async def _redis(self) -> str:
        from redis.asyncio import Redis  # only a bot with REDIS_URL needs it

        assert self.redis_url is not None
        client = Redis.from_url(
            self.redis_url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout
        )
        try:
            await client.ping()
        finally:
            await client.aclose()
        return OK


def add_health_routes(app: web.Application, probes: Probes) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": OK})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await probes.ready()
        ready = all(result == OK for result in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        body = await probes.metrics.scrape(probes.db, probes.now)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def close(_app: web.Application) -> None:
        await probes.close()

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(close)


def _short(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0]
    return f"{exc.__class__.__name__}: {first}"[:200]
