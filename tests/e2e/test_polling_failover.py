"""Two `leadbot run` processes long polling one bot on one PostgreSQL database: one polls (it
holds the poll lock, storage/poll_lock.py), the other waits; killed, the poller is replaced
within seconds, and every update is answered exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from storage import migrate
from storage.database import Database
from storage.poll_lock import PollLock
from tests.e2e.bot_process import RunningBot, eventually, start_bot
from tests.e2e.telegram import TelegramClient

pytestmark = pytest.mark.postgres

POLLS = "this process polls Telegram"
WAITS = "another process polls Telegram; waiting to take over"
TAKEOVER_LIMIT = 10.0  # seconds from the poller's death to the survivor's first answer
SETTLE = 3.0  # seconds to let a second answer to the same update show, if one were coming


@pytest.fixture
async def schema_url(postgres_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL schema of this test's own (as `leadbot db upgrade` leaves it)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{postgres_url}?search_path={schema}"
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
        finally:
            await db.dispose()
        yield url
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@pytest.fixture
def bots(
    telegram_emulator: TelegramClient, schema_url: str, tmp_path: Path
) -> Iterator[list[RunningBot]]:
    started = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        started.append(start_bot(telegram_emulator, tmp_path / name, DATABASE_URL=schema_url))
    try:
        yield started
    finally:
        for bot in started:
            bot.stop()  # the killed one included: it is already gone


def says(bot: RunningBot, line: str) -> bool:
    return line in bot.log.read_text()


async def replies(tg: TelegramClient, chat: int) -> int:
    return len(await tg.bot_messages(chat))


async def test_the_survivor_polls_within_seconds_and_answers_every_update_once(
    telegram_emulator: TelegramClient, bots: list[RunningBot]
) -> None:
    tg = telegram_emulator
    # One takes the lock and polls, the other waits for it.
    await eventually(
        lambda: any(says(bot, POLLS) for bot in bots) and any(says(bot, WAITS) for bot in bots),
        "one bot polling and the other waiting",
        timeout=30,
    )
    [poller] = [bot for bot in bots if says(bot, POLLS)]
    [survivor] = [bot for bot in bots if bot is not poller]
    assert says(survivor, WAITS), survivor.log.read_text()

    # /start in a fresh chat is answered with one message (the menu): a chat per update makes
    # the number of replies the number of times the update was handled.
    chats = [tg.new_chat_id() for _ in range(4)]
    await tg.send_command(chats[0], "/start")
    await tg.wait_for(chats[0], 1, timeout=20)
    assert not says(survivor, POLLS)  # the waiting process never polled meanwhile

    poller.process.kill()  # SIGKILL: no goodbye, the server drops its connection and lock
    poller.process.wait()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    for chat in chats[1:]:
        await tg.send_command(chat, "/start")
    with survivor.log_on_failure():
        for chat in chats[1:]:
            await tg.wait_for(chat, 1, timeout=max(0.1, killed_at + TAKEOVER_LIMIT - loop.time()))
        assert says(survivor, POLLS)

        await asyncio.sleep(SETTLE)
        counts = {chat: await replies(tg, chat) for chat in chats}
        assert counts == dict.fromkeys(chats, 1)
    assert survivor.stop() == 0, survivor.log.read_text()


async def test_the_poll_lock_is_one_holders_and_lost_with_its_connection(
    schema_url: str, postgres_url: str
) -> None:
    """The lock alone: a second holder is refused; a killed connection (the server ending the
    session) is seen as lost, and the lock is then free for another."""
    db = Database(schema_url)
    first, second = (PollLock(db.engine, f"test:{uuid.uuid4().hex}") for _ in range(2))
    second.name = first.name
    try:
        assert await first.try_acquire()
        assert await first.alive()
        assert not await second.try_acquire()
        admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND objid = hashtext($1)::oid "
                "AND pid <> pg_backend_pid()",
                first.name,
            )
        finally:
            await admin.close()
        assert not await first.alive()
        await first.release()
        assert await second.try_acquire()
    finally:
        await first.release()
        await second.release()
        await db.dispose()
