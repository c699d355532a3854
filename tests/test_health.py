"""`/healthz`, `/readyz` and `/metrics` over real HTTP: ready while the database answers at the
code's schema (and Redis when configured), 503 naming the check while it does not, ready again
once it is back; alive throughout. PostgreSQL is taken away for real, behind a TCP proxy of
the test's own (the shared server keeps running); SQLite by its file going away."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

from bot.clock import FakeClock
from bot.metrics import Metrics
from handlers.web.health import Probes, add_health_routes
from handlers.web.server import web_app
from storage.database import Database


class Proxy:
    """Forwards TCP connections on a port of its own to `target`; `close` cuts them all and
    refuses new ones (the database is away), `open` on the same port again brings it back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(
            self._forward, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers (a service that hangs): its port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


@asynccontextmanager
async def serving(probes: Probes) -> AsyncIterator[Client]:
    app = web_app()
    add_health_routes(app, probes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        yield Client(http)
    await runner.cleanup()


class Client:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def ready(self) -> tuple[int, dict[str, str]]:
        """/readyz's status and checks, /healthz being 200 at the same moment."""
        assert await self.get("/healthz") == (200, {"status": "ok"})
        started = time.monotonic()
        status, body = await self.get("/readyz")
        assert time.monotonic() - started < 5, "a probe must not hang"
        assert status in (200, 503)
        assert body["status"] == ("ready" if status == 200 else "not ready")
        return status, body["checks"]


async def test_ready_down_and_back(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    metrics = Metrics()
    if db.dialect == "postgresql":
        url = make_url(db.url)
        proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
        await proxy.open()
        bot_db = Database(url.set(port=proxy.port).render_as_string(hide_password=False))
        take_away, bring_back = proxy.close, proxy.open
    else:
        bot_db = db
        path = Path(make_url(db.url).database or "")
        aside = tmp_path / "aside.db"

        async def take_away() -> None:
            await asyncio.to_thread(path.rename, aside)

        async def bring_back() -> None:
            await asyncio.to_thread(aside.rename, path)

    try:
        async with serving(Probes(bot_db, metrics, clock.now)) as client:
            assert await client.ready() == (200, {"database": "ok"})
            status, _ = await client.get("/metrics")
            assert status == 200

            await take_away()
            status, checks = await client.ready()
            assert status == 503
            assert checks["database"] != "ok"
            # The scrape still answers; on PostgreSQL the outbox is unreadable and says so.
            status, text = await client.get("/metrics")
            assert status == 200
            if db.dialect == "postgresql":
                assert "leadbot_scrape_error 1.0" in text
                assert "leadbot_outbox_pending_rows" not in text

            await bring_back()
            assert await client.ready() == (200, {"database": "ok"})
            status, text = await client.get("/metrics")
            assert (status, "leadbot_scrape_error 0.0" in text) == (200, True)
            assert "leadbot_outbox_pending_rows 0.0" in text
    finally:
        if bot_db is not db:
            await bot_db.dispose()
            with contextlib.suppress(AssertionError):
                await proxy.close()


async def test_not_ready_on_an_outdated_schema(database_url: str, clock: FakeClock) -> None:
    """A database never migrated: reachable, but the schema is not the code's."""
    unmigrated = Database(database_url)
    async with unmigrated.engine.connect():
        pass  # SQLite's file exists now, empty
    try:
        async with serving(Probes(unmigrated, Metrics(), clock.now)) as client:
            status, checks = await client.ready()
    finally:
        await unmigrated.dispose()
    assert status == 503
    assert checks["database"].startswith("schema is at nothing, the code needs ")
    assert "leadbot db upgrade" in checks["database"]


async def test_not_ready_without_redis(sqlite_db: Database, clock: FakeClock) -> None:
    redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    async with serving(Probes(sqlite_db, Metrics(), clock.now, redis_url=redis_url)) as client:
        status, checks = await client.ready()
    assert status == 503
    assert checks["database"] == "ok"
    assert checks["redis"] != "ok"


async def test_a_hanging_redis_is_not_ready_within_the_timeout(
    sqlite_db: Database, clock: FakeClock
) -> None:
    async with silent_server() as port:
        redis_url = f"redis://127.0.0.1:{port}/0"
        probes = Probes(sqlite_db, Metrics(), clock.now, redis_url=redis_url, timeout=0.5)
        async with serving(probes) as client:
            started = time.monotonic()
            status, checks = await client.ready()
            assert time.monotonic() - started < 2
    assert status == 503
    assert checks["database"] == "ok"
    assert "within 0.5 s" in checks["redis"] or "Timeout" in checks["redis"]


async def test_a_hanging_database_is_not_ready_within_the_timeout(clock: FakeClock) -> None:
    """A server that accepts and never answers (a black-holed network): 503, no hang."""
    async with silent_server() as port:
        hanging = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/leadbot")
        probes = Probes(hanging, Metrics(), clock.now, timeout=0.5)
        try:
            async with serving(probes) as client:
                started = time.monotonic()
                status, checks = await client.ready()
                assert time.monotonic() - started < 2
        finally:
            await hanging.dispose()
    assert (status, checks) == (503, {"database": "no answer within 0.5 s"})


async def test_ready_with_a_live_redis(sqlite_db: Database, clock: FakeClock) -> None:
    redis_url = os.environ.get("LEADBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    probes = Probes(sqlite_db, Metrics(), clock.now, redis_url=redis_url)
    async with serving(probes) as client:
        status, checks = await client.ready()
    if checks["redis"] != "ok" and os.environ.get("LEADBOT_REQUIRE_SERVICES") != "1":
        pytest.skip(f"Redis not reachable at {redis_url}: {checks['redis']}")
    assert (status, checks) == (200, {"database": "ok", "redis": "ok"})
