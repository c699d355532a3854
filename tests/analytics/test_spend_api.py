"""`POST /api/spend` through a real aiohttp server and client, on SQLite and PostgreSQL: a
day or a month of spend stored behind the API token, a retry stored once, bad bodies
refused with the reason, and no route at all without a token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.analytics.spend import spend_by_source
from bot.analytics.window import Window
from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.outside import OutsideEvents
from handlers.web.api import SPEND_PATH, api_app
from storage.database import Database
from storage.models import AdSpend
from tests.test_events_api import Api, make_funnel, serving


@pytest.fixture
def any_funnel(db: Database, clock: FakeClock) -> Funnel:
    return make_funnel(db, clock)


@pytest.fixture
async def api(any_funnel: Funnel) -> AsyncIterator[Api]:
    async with serving(any_funnel, path=SPEND_PATH) as client:
        yield client


async def rows(db: Database) -> list[tuple[str, date, date, str, str | None, str | None]]:
    async with db.unit_of_work() as uow:
        query = select(
            AdSpend.source,
            AdSpend.first_day,
            AdSpend.last_day,
            AdSpend.amount,
            AdSpend.note,
            AdSpend.request_key,
        ).order_by(AdSpend.id)
        return [tuple(row) for row in (await uow.session.execute(query)).all()]  # type: ignore[misc]


async def test_a_month_is_stored_and_answered_201_with_the_row(
    api: Api, db: Database, clock: FakeClock
) -> None:
    status, answer, _ = await api.post({"source": "vk", "amount": 31000, "month": "2026-12"})
    assert status == 201, answer
    assert answer["source"] == "vk"
    assert answer["amount"] == "31000"
    assert (answer["first_day"], answer["last_day"]) == ("2026-12-01", "2026-12-31")
    assert answer["duplicate"] is False
    assert answer["note"] is None
    assert datetime.fromisoformat(answer["created_at"]) == clock.now()
    assert await rows(db) == [("vk", date(2026, 12, 1), date(2026, 12, 31), "31000", None, None)]
    # ... and a report over ten days of the month counts ten 31sts of it.
    zone = ZoneInfo("Europe/Moscow")
    since = datetime.combine(date(2026, 12, 10), time(), tzinfo=zone)
    window = Window(since, since + timedelta(days=10), clock.now(), zone)
    async with db.unit_of_work() as uow:
        spent = await spend_by_source(uow.session, window)
    assert spent == {"vk": (Decimal(31000) * 10 / 31).quantize(Decimal("0.01"))}


async def test_a_retried_id_is_stored_once_and_answered_200_as_a_duplicate(
    api: Api, db: Database
) -> None:
    body = {
        "source": "ya_direct",
        "amount": "1500.50",
        "date": "2026-12-05",
        "note": "счёт 17",
        "id": "spend-2026-12-05",
    }
    status, first, _ = await api.post(body)
    assert status == 201, first
    status, again, _ = await api.post(body)
    assert status == 200, again
    assert again == {**first, "duplicate": True}
    status, other, _ = await api.post({**body, "id": "spend-2026-12-06", "date": "2026-12-06"})
    assert status == 201
    assert other["id"] != first["id"]
    assert await rows(db) == [
        (
            "ya_direct",
            date(2026, 12, 5),
            date(2026, 12, 5),
            "1500.50",
            "счёт 17",
            "spend-2026-12-05",
        ),
        (
            "ya_direct",
            date(2026, 12, 6),
            date(2026, 12, 6),
            "1500.50",
            "счёт 17",
            "spend-2026-12-06",
        ),
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"amount": 10, "date": "2026-12-01"}, "source: Field required"),
        ({"source": "vk-ads", "amount": 10, "date": "2026-12-01"}, "source: String should match"),
        ({"source": "vk", "amount": -1, "date": "2026-12-01"}, "amount: Input should be greater"),
        ({"source": "vk", "amount": "ten", "date": "2026-12-01"}, "amount:"),
        ({"source": "vk", "amount": 1.234, "date": "2026-12-01"}, "no more than 2 decimal places"),
        ({"source": "vk", "amount": 1e12, "date": "2026-12-01"}, "amount: Input should be less"),
        ({"source": "vk", "amount": 10}, "exactly one of date"),
        ({"source": "vk", "amount": 10, "date": "2026-12-01", "month": "2026-12"}, "exactly one"),
        ({"source": "vk", "amount": 10, "date": "2026-12-32"}, "date:"),
        ({"source": "vk", "amount": 10, "month": "2026-13"}, "month '2026-13' is not a month"),
        ({"source": "vk", "amount": 10, "month": "12.2026"}, "month: String should match"),
        ({"source": "vk", "amount": 10, "month": "2026-12", "note": "x" * 257}, "note:"),
        ({"source": "vk", "amount": 10, "month": "2026-12", "campaign": "a"}, "campaign:"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
async def test_a_bad_body_is_400_with_the_reason_and_stores_nothing(
    api: Api, db: Database, body: Any, reason: str
) -> None:
    status, answer, _ = await api.post(body)
    assert status == 400, answer
    assert reason in answer["error"]
    assert await rows(db) == []


async def test_a_body_that_is_not_json_is_400(api: Api, db: Database) -> None:
    status, answer, _ = await api.post(data=b"source=vk&amount=10")
    assert status == 400
    assert answer["error"] == "the body is not JSON"
    assert await rows(db) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_without_the_token_it_is_401(
    api: Api, db: Database, headers: dict[str, str]
) -> None:
    status, _answer, sent = await api.post(
        {"source": "vk", "amount": 10, "month": "2026-12"}, headers=headers
    )
    assert status == 401
    assert sent["WWW-Authenticate"] == "Bearer"
    assert await rows(db) == []


async def test_without_an_api_token_configured_there_is_no_route(
    any_funnel: Funnel, db: Database
) -> None:
    runner = web.AppRunner(api_app(OutsideEvents(any_funnel), None))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        body = json.dumps({"source": "vk", "amount": 10, "month": "2026-12"}).encode()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}{SPEND_PATH}",
                data=body,
                headers={"Authorization": "Bearer anything", "Content-Type": "application/json"},
            ) as response,
        ):
            assert response.status == 404
    finally:
        await runner.cleanup()
    async with db.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(AdSpend)) == 0


async def test_two_retries_at_once_store_one_row(api: Api, db: Database) -> None:
    body = {"source": "vk", "amount": "99.90", "date": "2026-12-07", "id": "twin"}
    answers = await asyncio.gather(api.post(body), api.post(body))
    assert sorted(status for status, _, _ in answers) == [200, 201]
    assert len({answer["id"] for _, answer, _ in answers}) == 1
    assert await rows(db) == [("vk", date(2026, 12, 7), date(2026, 12, 7), "99.90", None, "twin")]
