"""The webhook endpoint over real HTTP (aiohttp test server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from handlers.telegram.channel import WEBHOOK_PATH, add_webhook_route
from handlers.web.server import web_app
from storage import sqlite_inline
from storage.database import Database
from tests.sqlite_lock import hold_write_lock, release
from tests.telegram.conftest import Harness

SECRET = "s3cret-webhook-token-value"


@pytest.fixture
async def client(telegram: Harness) -> AsyncIterator[TestClient[Any, Any]]:
    app = web_app()  # as the bot's web server
    add_webhook_route(app, telegram.dispatcher, telegram.bot, SECRET)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


def start_update(update_id: int) -> dict[str, Any]:
    user = {"id": 1001, "is_bot": False, "first_name": "Анна"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 1001, "type": "private"},
            "from": user,
            "text": "/start src_web",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]},
    ],
)
async def test_a_missing_or_wrong_secret_gets_401_and_never_reaches_the_bot(
    client: TestClient[Any, Any],
    sqlite_db: Database,
    telegram: Harness,
    headers: dict[str, str],
) -> None:
    response = await client.post(WEBHOOK_PATH, json=start_update(1), headers=headers)
    assert response.status == 401
    assert telegram.session.requests == []
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.leads.find_by_identity("telegram", "1001") is None


async def test_the_answer_comes_after_the_update_is_committed(
    client: TestClient[Any, Any], sqlite_db: Database
) -> None:
    response = await client.post(
        WEBHOOK_PATH, json=start_update(2), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert response.status == 200
    async with sqlite_db.unit_of_work() as uow:  # already there when Telegram hears "OK"
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        assert found[0].source == "web"


async def test_a_malformed_update_is_acknowledged_and_logged(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    bad = await client.post(WEBHOOK_PATH, json={"update_id": "x", "message": 5}, headers=headers)
    assert bad.status == 200
    not_json = await client.post(WEBHOOK_PATH, data=b"{nope", headers=headers)
    assert not_json.status == 200
    assert caplog.text.count("malformed webhook update skipped") == 2


async def test_the_webhook_answers_503_so_telegram_sends_the_update_again(
    monkeypatch: pytest.MonkeyPatch, telegram: Harness, sqlite_db: Database, tmp_path: Path
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 200)
    app = web_app()
    add_webhook_route(app, telegram.dispatcher, telegram.bot, SECRET)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        holder = await hold_write_lock(tmp_path / "leadbot.db")
        try:
            refused = await client.post(WEBHOOK_PATH, json=start_update(31), headers=headers)
        finally:
            await release(holder)
        assert refused.status == 503
        assert telegram.session.requests == []  # no apology: the update is not over
        again = await client.post(WEBHOOK_PATH, json=start_update(31), headers=headers)
        assert again.status == 200
    texts: list[Any] = [getattr(r, "text", None) for r in telegram.session.requests]
    assert texts == ["Привет, Анна! Выберите:"]
    async with sqlite_db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001")
    assert found is not None
