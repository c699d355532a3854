"""Two `leadbot run` processes long polling one bot on one PostgreSQL database: one polls (it
holds the poll lock, storage/session_lock.py), the other waits; killed, the poller is replaced
within seconds, and every update is answered exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from storage.database import Database
from storage.session_lock import SessionLock
from tests.e2e.bot_process import RunningBot, eventually, start_bot, start_vk_bot
from tests.e2e.cluster import postgres_schema
from tests.e2e.telegram import TelegramClient
from tests.e2e.vk_api import VkApiFake

pytestmark = pytest.mark.postgres

POLLS = "this process polls Telegram"
WAITS = "another process polls Telegram; waiting to take over"
VK_POLLS = "this process polls VK"
VK_WAITS = "another process polls VK; waiting to take over"
TAKEOVER_LIMIT = 10.0  # seconds from the poller's death to the survivor's first answer
SETTLE = 3.0  # seconds to let a second answer to the same update show, if one were coming


@pytest.fixture
async def schema_url(postgres_url: str) -> AsyncIterator[str]:
    async with postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture
def bots(
    telegram_emulator: TelegramClient, schema_url: str, redis_url: str, tmp_path: Path
) -> Iterator[list[RunningBot]]:
    started = two(partial(start_bot, telegram_emulator), tmp_path, schema_url, redis_url)
    try:
        yield started
    finally:
        for bot in started:
            bot.stop()  # the killed one included: it is already gone


def two(
    start: Callable[..., RunningBot], tmp_path: Path, schema_url: str, redis_url: str
) -> list[RunningBot]:
    """Two processes of one bot on one schema, sharing its limits through Redis (as two
    must), each in a folder of its own."""
    started = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        started.append(start(tmp_path / name, DATABASE_URL=schema_url, REDIS_URL=redis_url))
    return started


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


async def test_a_process_without_redis_beside_them_is_refused(
    telegram_emulator: TelegramClient, bots: list[RunningBot], schema_url: str, tmp_path: Path
) -> None:
    """A third process of the bot without REDIS_URL would pace alone beside the two: it
    stops at once with the reason, and the others go on."""
    await eventually(lambda: any(says(bot, POLLS) for bot in bots), "a bot polling", timeout=30)
    (tmp_path / "alone").mkdir()
    alone = start_bot(telegram_emulator, tmp_path / "alone", DATABASE_URL=schema_url)
    code = await asyncio.to_thread(alone.process.wait, 60)
    log = alone.log.read_text()
    assert code == 1, log
    assert "leadbot: cannot start: another leadbot process sends for this telegram bot" in log
    chat = telegram_emulator.new_chat_id()
    await telegram_emulator.send_command(chat, "/start")
    await telegram_emulator.wait_for(chat, 1, timeout=20)


async def test_the_poll_lock_is_one_holders_and_lost_with_its_connection(
    schema_url: str, postgres_url: str
) -> None:
    """The lock alone: a second holder is refused; a killed connection (the server ending the
    session) is seen as lost, and the lock is then free for another."""
    db = Database(schema_url)
    first, second = (SessionLock(db.engine, f"test:{uuid.uuid4().hex}") for _ in range(2))
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


async def test_one_of_two_processes_polls_vk_and_the_other_takes_over(
    vk_api: VkApiFake, schema_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The same for a VK community's Bots Long Poll: one process polls, the other takes over
    when it dies, and each message is answered once. (A new poller starts from VK's current
    `ts`: a message written in the seconds between the death and the takeover is not seen;
    the Callback API has no such gap, docs/production.md.)"""
    vk = vk_api
    started = two(partial(start_vk_bot, vk), tmp_path, schema_url, redis_url)
    try:
        await eventually(
            lambda: (
                any(says(b, VK_POLLS) for b in started) and any(says(b, VK_WAITS) for b in started)
            ),
            "one bot polling VK and the other waiting",
            timeout=30,
        )
        [poller] = [b for b in started if says(b, VK_POLLS)]
        [survivor] = [b for b in started if b is not poller]
        first = vk.new_writer()
        vk.push_message(first, "Начать")
        await vk.wait_for(first, 1, timeout=20)

        poller.process.kill()
        poller.process.wait()
        with survivor.log_on_failure():
            await eventually(lambda: says(survivor, VK_POLLS), "the takeover", TAKEOVER_LIMIT)
            second = vk.new_writer()
            vk.push_message(second, "Начать")
            await vk.wait_for(second, 1, timeout=20)
            await asyncio.sleep(SETTLE)
            assert [len(vk.sent(user)) for user in (first, second)] == [1, 1]
        assert survivor.stop() == 0, survivor.log.read_text()
    finally:
        for b in started:
            b.stop()
