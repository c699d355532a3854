"""Alembic migrations: every step goes up, down and up again, and head matches the models."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage import migrate
from storage.database import Database
from storage.models import Base

LEADBOT = Path(sys.executable).with_name("leadbot")


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def test_stairway_every_revision_upgrades_downgrades_and_upgrades_again(
    database_url: str,
) -> None:
    revisions = migrate.revisions()
    assert revisions[-1] == migrate.head_revision()
    db = Database(database_url)
    try:
        for previous, revision in zip(["base", *revisions[:-1]], revisions, strict=True):
            await migrate.upgrade(db.engine, revision)
            assert await migrate.current_revision(db.engine) == revision
            await migrate.downgrade(db.engine, previous)
            expected = None if previous == "base" else previous
            assert await migrate.current_revision(db.engine) == expected
            await migrate.upgrade(db.engine, revision)
            assert await migrate.current_revision(db.engine) == revision

        async with db.engine.connect() as connection:
            assert await connection.run_sync(_tables) == set(Base.metadata.tables)
            assert await connection.run_sync(_schema_differences) == []

        await migrate.downgrade(db.engine, "base")
        assert await migrate.current_revision(db.engine) is None
        async with db.engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
    finally:
        await db.dispose()


async def test_cli_upgrades_a_fresh_sqlite_file_to_head(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/data/fresh.db"
    env = {k: v for k, v in os.environ.items() if k.upper() != "DATABASE_URL"}
    # Run from an empty folder so a developer's .env cannot point the command elsewhere.
    process = await asyncio.create_subprocess_exec(
        LEADBOT,
        "db",
        "upgrade",
        "--db",
        url,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == migrate.head_revision()
    db = Database(url)
    try:
        assert await migrate.current_revision(db.engine) == migrate.head_revision()
    finally:
        await db.dispose()
