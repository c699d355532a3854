"""SQLite runs on the event loop's thread: while another process holds the write lock, a unit
of work waits for it without stopping the loop, then goes on; it gives up after the timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import sqlite_inline
from storage.database import Database
from tests.sqlite_lock import hold_write_lock


async def _database(tmp_path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/lock.db")
    async with db.unit_of_work() as uow:
        await uow.session.execute(text("CREATE TABLE notes (body TEXT)"))
        await uow.commit()
    return db


async def _hold_lock(path: Path) -> asyncio.subprocess.Process:
    return await hold_write_lock(
        path, "INSERT INTO notes (body) VALUES ('from the other process')"
    )


async def _notes(db: Database) -> list[str]:
    async with db.reading() as session:
        return list((await session.execute(text("SELECT body FROM notes"))).scalars())


async def test_a_writer_waits_for_another_process_without_stopping_the_loop(
    tmp_path: Path,
) -> None:
    db = await _database(tmp_path)
    holder = await _hold_lock(tmp_path / "lock.db")

    async def write() -> None:
        async with db.unit_of_work() as uow:
            await uow.session.execute(text("INSERT INTO notes (body) VALUES ('ours')"))
            await uow.commit()

    writing = asyncio.create_task(write())
    ticks = 0
    for _ in range(20):  # the loop keeps turning while the writer waits
        await asyncio.sleep(0.01)
        ticks += 1
    assert not writing.done()
    assert ticks == 20
    # A reader does not wait for the lock at all (WAL), and sees nothing uncommitted.
    assert await _notes(db) == []
    assert holder.stdin is not None
    holder.stdin.write(b"go\n")
    await holder.stdin.drain()
    await asyncio.wait_for(writing, 10)
    assert await holder.wait() == 0
    assert sorted(await _notes(db)) == ["from the other process", "ours"]
    await db.dispose()


async def test_a_writer_gives_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await _database(tmp_path)
    holder = await _hold_lock(tmp_path / "lock.db")
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 200)
    try:
        with pytest.raises(Exception, match="database is locked"):
            async with db.unit_of_work() as uow:
                await uow.session.execute(text("INSERT INTO notes (body) VALUES ('lost')"))
    finally:
        assert holder.stdin is not None
        holder.stdin.write(b"go\n")
        await holder.stdin.drain()
        await holder.wait()
    # The connection is usable afterwards: the next unit of work writes.
    async with db.unit_of_work() as uow:
        await uow.session.execute(text("INSERT INTO notes (body) VALUES ('after')"))
        await uow.commit()
    assert sorted(await _notes(db)) == ["after", "from the other process"]
    await db.dispose()
