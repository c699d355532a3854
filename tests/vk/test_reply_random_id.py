"""Answers sent at once carry a random_id derived from the VK update, so VK drops a repeat.

The real handlers behind vkbottle's router, on the shipped funnel and a SQLite file; only
vkbottle's http client is swapped, for one that reaches the VK API fake (tests/e2e/vk_api.py)
and can lose an answer on its way back, after VK has acted on the request."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from vkbottle import API, AiohttpClient, Bot
from vkbottle.api.request_rescheduler import BlockingRequestRescheduler

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.handoff import ManagerDesk
from bot.redemption import Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from handlers.vk.rate import PacedToken
from handlers.vk.router import VkHandlers
from handlers.vk.sender import VkSender
from storage import migrate
from storage.database import Database
from tests.conftest import SHIPPED_SCENARIO
from tests.e2e.vk_api import VkApiFake

GUIDE = "Гайд: настройка Битрикс24 за вечер"
CONSENT = "согласие на обработку персональных данных"
START = {"command": "start"}  # what VK's own "Начать" button sends
# What a proxy in front of VK answers when it loses VK's answer: not JSON, so vkbottle sends
# the same request again (its JSON validator hands it to the request rescheduler).
GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head></html>"


class LosingAnswers(AiohttpClient):
    """vkbottle's own client, except that VK's answer to the first attempt of each request
    of the methods in `losing` is lost after VK has acted on it."""

    def __init__(self) -> None:
        super().__init__()
        self.losing: set[str] = set()
        self._tried: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    async def request_text(  # type: ignore[override]
        self, url: str, method: str = "GET", data: dict[str, Any] | None = None, **kwargs: Any
    ) -> str:
        answer = await super().request_text(url, method, data, **kwargs)
        name = url.rsplit("/", 1)[-1]
        request = (name, tuple(sorted((k, str(v)) for k, v in (data or {}).items())))
        if name in self.losing and request not in self._tried:
            self._tried.add(request)
            return GATEWAY_PAGE
        return answer


class VkBot:
    """One bot process's VK side: vkbottle's router over the real handlers."""

    def __init__(
        self, vk: VkApiFake, bot: Bot, http: LosingAnswers, funnel: Funnel, sender: VkSender
    ) -> None:
        self.vk = vk
        self.bot = bot
        self.http = http
        self.funnel = funnel
        self.sender = sender

    async def feed(self, update: dict[str, Any]) -> list[int]:
        """Handle one update as the Callback API brings it; the random_ids it was answered
        with, one per messages.send."""
        before = len(self.vk.recorded("messages.send"))
        await self.bot.process_event(update)
        return [int(p["random_id"]) for p in self.vk.recorded("messages.send")[before:]]


@contextlib.asynccontextmanager
async def vk_bot(
    vk: VkApiFake, database: Path, *, managers_peer_id: int | None = None
) -> AsyncIterator[VkBot]:
    db = Database(f"sqlite+aiosqlite:///{database}")
    await migrate.upgrade(db.engine)
    http = LosingAnswers()
    # vkbottle waits 5 s before sending again; the test has no reason to.
    api = API(
        PacedToken(vk.token),  # as the bot's own API (handlers/vk/channel.create_api)
        http_client=http,
        request_rescheduler=BlockingRequestRescheduler(0),
    )
    api.API_URL = vk.api_url
    # Started now: the sender measures VK's 24-hour window on the wall clock.
    clock = FakeClock(datetime.now(UTC))
    scenarios = ActiveScenario(load_scenario(SHIPPED_SCENARIO))
    funnel = Funnel(db, scenarios, clock)
    sender = VkSender(api, group_id=vk.group_id, managers_peer_id=managers_peer_id)
    chats = {sender.channel: sender} if managers_peer_id is not None else {}
    desk = ManagerDesk(db, scenarios, clock, chats)
    handlers = VkHandlers(funnel, sender, desk, Redemptions(funnel))
    try:
        yield VkBot(vk, Bot(api=api, labeler=handlers.labeler()), http, funnel, sender)
    finally:
        await http.close()
        await db.dispose()


@pytest.fixture
async def vk() -> AsyncIterator[VkApiFake]:
    async with VkApiFake() as fake:
        yield fake


def message_new(vk: VkApiFake, user: int, text: str, **fields: Any) -> dict[str, Any]:
    return vk.callback_event(
        "message_new", vk.message_new_object(user, text, **fields), secret=None
    )


def message_event(vk: VkApiFake, user: int, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """A press of a callback button on the last message the bot sent to `user`."""
    assert payload is not None
    return vk.callback_event("message_event", vk.message_event_object(user, payload), secret=None)


async def test_a_send_vkbottle_repeats_after_its_answer_was_lost_is_delivered_once(
    vk: VkApiFake, tmp_path: Path
) -> None:
    user = vk.new_user_id()
    # An ad's link that opens the guide offer at once: a reply of two messages.
    update = message_new(vk, user, "Начать", payload=START, ref="src_vkads-o_guide")
    async with vk_bot(vk, tmp_path / "leads.db") as bot:
        bot.http.losing.add("messages.send")
        sent = await bot.feed(update)

    # Each message went to VK twice (vkbottle repeated it), and VK delivered it once.
    assert len(sent) == 4
    delivered = vk.sent(user)
    assert len(delivered) == 2, [m.text for m in delivered]
    pitch, ask = delivered
    assert pitch.text.startswith(GUIDE)
    assert CONSENT in ask.text
    assert sent == [pitch.random_id, pitch.random_id, ask.random_id, ask.random_id]
    assert 0 not in sent
    assert pitch.random_id != ask.random_id


async def test_each_message_of_a_reply_has_a_random_id_of_its_own_and_again_the_same(
    vk: VkApiFake, tmp_path: Path
) -> None:
    user = vk.new_user_id()
    start = message_new(vk, user, "Начать", payload=START)
    async with vk_bot(vk, tmp_path / "first.db") as bot:
        first = [await bot.feed(start)]
        [menu] = vk.sent(user)
        press = message_event(vk, user, menu.payload(GUIDE))
        first.append(await bot.feed(press))
        # This bot has both updates in its database: handled again, they send nothing.
        assert await bot.feed(start) == []
        assert await bot.feed(press) == []

    # The menu; the offer's pitch and the consent question.
    assert [len(reply) for reply in first] == [1, 2]
    ids = [random_id for reply in first for random_id in reply]
    assert 0 not in ids
    assert len(set(ids)) == len(ids)
    delivered = vk.sent(user)
    assert len(delivered) == 3

    # The random_ids come from the update and the message's place in the reply, nothing a
    # process holds: another bot, with a database of its own, sends the same ones, and VK
    # drops every message as a repeat.
    async with vk_bot(vk, tmp_path / "second.db") as other:
        again = [await other.feed(start), await other.feed(press)]
    assert again == first
    assert vk.sent(user) == delivered


async def test_an_answer_in_the_managers_chat_is_posted_once_for_an_update(
    vk: VkApiFake, tmp_path: Path
) -> None:
    chat = vk.new_chat_peer_id()
    manager = vk.new_user_id()
    stats = message_new(vk, manager, "/stats", peer_id=chat)
    async with vk_bot(vk, tmp_path / "leads.db", managers_peer_id=chat) as bot:
        bot.http.losing.add("messages.send")
        [lost, repeated] = await bot.feed(stats)
        # /stats changes nothing, so nothing stops the update's second handling but VK.
        [again] = await bot.feed(stats)

    assert lost == repeated == again != 0
    [answer] = vk.sent(chat)
    assert answer.random_id == lost
