"""Shared fixtures: real databases (a SQLite file, and PostgreSQL when the machine has it)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage import kept_facts, migrate
from storage.database import Database
from storage.models import Lead

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SCENARIO = ROOT / "tests" / "fixtures" / "funnel"
SHIPPED_SCENARIO = ROOT / "scenarios"
POSTGRES_URL = os.environ.get(
    "LEADBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LEADBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# CI sets this so that a missing service fails the run instead of skipping its tests.
REQUIRE_SERVICES = os.environ.get("LEADBOT_REQUIRE_SERVICES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "alone: measures wall-clock pacing, so under pytest-xdist it runs while no other test "
        "does (on a busy CPU its own sends bunch up and look like a broken limit)",
    )


@pytest.fixture(autouse=True)
def alone_or_beside_others(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist, a test marked `alone` waits for the other workers' tests to end and
    holds theirs back until it is done; any other test runs beside the others'. Two locks in
    the run's temporary folder, shared by its workers: every test holds `tests.lock` shared
    (`alone`: exclusive) from before its fixtures are set up until after they are torn down,
    and takes it through `gate.lock`, which an `alone` test holds while it waits, so that the
    others cannot keep it waiting for ever. Without xdist a test is alone anyway."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    import fcntl

    alone = request.node.get_closest_marker("alone") is not None
    folder = tmp_path_factory.getbasetemp().parent  # the run's, above each worker's own
    with (folder / "gate.lock").open("a") as gate, (folder / "tests.lock").open("a") as tests:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(tests, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(gate, fcntl.LOCK_UN)


def _unreachable(
    name: str, url: str, probe: Callable[[], Coroutine[Any, Any, None]]
) -> str | None:
    """None when the service answers the probe, else why not."""
    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure means "not here"
        return f"{name} not reachable at {url}: {exc.__class__.__name__}: {exc}"
    return None


def _needed(reason: str | None) -> None:
    """A service a test needs and the machine lacks: skipped with the reason, or failed
    under CI."""
    if reason is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} (LEADBOT_REQUIRE_SERVICES=1 makes it mandatory)")
        pytest.skip(reason)


async def _ask_postgres() -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=3)
    await conn.close()


async def _ask_redis() -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        await client.ping()
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    _needed(_unreachable("PostgreSQL", POSTGRES_URL, _ask_postgres))
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    _needed(_unreachable("Redis", REDIS_URL, _ask_redis))
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each kind; PostgreSQL gets a schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/leadbot.db"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"

    async def sql(statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(base.replace("+asyncpg", ""))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?search_path={schema}"
    finally:
        asyncio.run(sql(f'DROP SCHEMA "{schema}" CASCADE'))


async def check_kept_facts(db: Database) -> None:
    """After every test on a database: each lead's kept facts are what its rows say
    (storage/kept_facts.py), however the test got there."""
    async with db.unit_of_work() as uow:
        query = select(Lead.id, Lead.facts).where(Lead.facts.is_not(None))
        for lead_id, facts in (await uow.session.execute(query)).all():
            assert facts == await kept_facts.compute(uow.session, lead_id), f"lead {lead_id}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database (SQLite file or PostgreSQL schema)."""
    database = Database(database_url)
    await migrate.upgrade(database.engine)
    yield database
    try:
        await check_kept_facts(database)
    finally:
        await database.dispose()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/leadbot.db")
    await migrate.upgrade(database.engine)
    yield database
    try:
        await check_kept_facts(database)
    finally:
        await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


@pytest.fixture
def funnel(sqlite_db: Database, clock: FakeClock) -> Funnel:
    """The engine on the test funnel (tests/fixtures/funnel) and a SQLite file."""
    return Funnel(sqlite_db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
