"""A database that cannot take an event (another process holds SQLite's write lock past the
timeout) loses nothing: the event is not acknowledged as handled, no apology pretends it was,
and when it comes again it is handled once. A channel that cannot have it sent again (long
polling) waits for the database instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.clock import FakeClock
from bot.engine.funnel import Funnel, StorageUnavailable
from bot.handoff import ManagerDesk
from bot.messages import Incoming, Kind
from bot.redemption import Redemptions
from bot.settings import load_settings
from handlers.vk.channel import CALLBACK_PATH, VkChannel, create_sender
from handlers.web.server import web_app
from storage import sqlite_inline
from storage.database import Database
from tests.e2e.vk_api import VkApiFake, vk_api
from tests.prospect import snapshot
from tests.sqlite_lock import hold_write_lock, release

START = Incoming(
    channel="telegram",
    external_id="1001",
    kind=Kind.START,
    first_name="Анна",
    event_key="telegram:9",
)


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 200)


async def stored_events(db: Database) -> list[str]:
    async with db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001")
    return [] if found is None else (await snapshot(db, "1001")).events


async def test_an_event_the_database_cannot_take_is_refused_then_handled_once(
    funnel: Funnel, sqlite_db: Database, tmp_path: Path
) -> None:
    holder = await hold_write_lock(tmp_path / "leadbot.db")
    try:
        with pytest.raises(StorageUnavailable):
            await funnel.handle(START)
    finally:
        await release(holder)
    assert await stored_events(sqlite_db) == []  # nothing half-kept, not even the key

    reply = await funnel.handle(START)  # the messenger sends it again
    assert [m.text for m in reply.messages] == ["Привет, Анна! Выберите:"]
    assert await stored_events(sqlite_db) == ["start"]
    assert (await funnel.handle(START)).duplicate


async def test_long_polling_waits_for_the_database(
    funnel: Funnel, sqlite_db: Database, tmp_path: Path, clock: FakeClock
) -> None:
    holder = await hold_write_lock(tmp_path / "leadbot.db")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the other process lets go while the update waits
            await release(holder)

    funnel.patience["telegram"] = 600.0
    funnel.sleep = sleep
    reply = await funnel.handle_until_stored(START)
    assert [m.text for m in reply.messages] == ["Привет, Анна! Выберите:"]
    assert waits == [0.5, 1.0, 2.0]
    assert await stored_events(sqlite_db) == ["start"]


async def test_patience_has_an_end(funnel: Funnel, tmp_path: Path) -> None:
    holder = await hold_write_lock(tmp_path / "leadbot.db")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    funnel.patience["telegram"] = 2.0
    funnel.sleep = sleep
    try:
        with pytest.raises(StorageUnavailable):
            await funnel.handle_until_stored(START)
    finally:
        await release(holder)
    assert waits == [0.5, 1.0]  # 0.5 + 1 + 2 would pass the 2 s


async def test_a_vk_callback_event_the_database_cannot_take_is_not_ok(
    funnel: Funnel, sqlite_db: Database, tmp_path: Path, vk_api: VkApiFake
) -> None:
    """VK sends a Callback API event again until it hears "ok": it must not hear it. The
    real channel and vkbottle, against the fake VK API, in this process."""
    env = {name.lower(): value for name, value in vk_api.env().items()}
    settings = load_settings(**env, vk_callback_secret="s", vk_confirmation_code="c")
    sender = create_sender(settings)
    desk = ManagerDesk(sqlite_db, funnel.scenarios, funnel.clock, {})
    channel = VkChannel(settings, funnel, sender, desk, Redemptions(funnel), None)
    assert funnel.patience["vk"] == 5.0  # the Callback API waits a little, then says "again"
    funnel.patience["vk"] = 0.0  # not in this test: the lock outlasts it anyway
    app = web_app()
    channel.add_routes(app)
    user = vk_api.new_user_id()
    body = vk_api.callback_event(
        "message_new", vk_api.message_new_object(user, "Начать"), secret="s", event_id="ev1"
    )
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            holder = await hold_write_lock(tmp_path / "leadbot.db")
            try:
                refused = await client.post(CALLBACK_PATH, json=body)
            finally:
                await release(holder)
            assert (refused.status, await refused.text()) == (
                503,
                "storage unavailable, send again",
            )
            assert vk_api.sent(user) == []
            again = await client.post(CALLBACK_PATH, json=body)
            assert (again.status, await again.text()) == (200, "ok")
    finally:
        await channel.stop()
    assert len(vk_api.sent(user)) == 1
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.leads.find_by_identity("vk", str(user)) is not None


__all__ = ["vk_api"]  # the fake VK API's fixture
