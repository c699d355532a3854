"""Real aiogram dispatcher and routers on the test funnel; only the HTTP session is swapped."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.methods import TelegramMethod
from aiogram.types import Update

from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.flood import FloodGate
from bot.pacing import DEFAULT_LIMITS, MemoryPacer
from bot.scenario.reload import ScenarioReloader
from bot.scoring import Routes
from handlers.telegram.callbacks import Press
from handlers.telegram.channel import create_dispatcher
from handlers.telegram.holds import ChatHolds
from handlers.telegram.managers_chat import ManagersChatId
from handlers.telegram.middlewares import InFlight, Throttle
from handlers.telegram.sender import TelegramSender
from tests.telegram.mocked_bot import BOT_USER, RecordingSession

MANAGERS_CHAT = -100500
_update_ids = itertools.count(1)


class Waits:
    """Stands in for asyncio.sleep: records how long the bot chose to wait, and moves its own
    clock (`now`) by as much, so that a wait really ends what it waited for."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.elapsed = 0.0

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.elapsed += seconds

    def now(self) -> float:
        return self.elapsed


class Prospect:
    """A Telegram user in a private chat with the bot."""

    def __init__(self, harness: Harness, user_id: int, first_name: str = "Анна") -> None:
        self.h = harness
        self.user = {"id": user_id, "is_bot": False, "first_name": first_name}
        self.chat = {"id": user_id, "type": "private", "first_name": first_name}

    def message(self, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(_update_ids),
            "date": int(datetime.now(UTC).timestamp()),
            "chat": self.chat,
            "from": self.user,
            **content,
        }

    async def text(self, text: str) -> list[TelegramMethod[Any]]:
        entities = (
            [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
            if text.startswith("/")
            else None
        )
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return await self.h.feed({"message": self.message(**content)})

    async def contact(
        self, phone: str, *, user_id: int | None = None
    ) -> list[TelegramMethod[Any]]:
        owner = self.user["id"] if user_id is None else user_id
        return await self.h.feed(
            {
                "message": self.message(
                    contact={"phone_number": phone, "first_name": "X", "user_id": owner}
                )
            }
        )

    async def sticker(self) -> list[TelegramMethod[Any]]:
        sticker = {
            "file_id": "s1",
            "file_unique_id": "s1",
            "type": "regular",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
        }
        return await self.h.feed({"message": self.message(sticker=sticker)})

    async def press_data(self, data: str) -> list[TelegramMethod[Any]]:
        query = {
            "id": str(next(_update_ids)),
            "from": self.user,
            "chat_instance": "ci",
            "data": data,
            "message": self.message(
                text="(an earlier message)", **{"from": BOT_USER.model_dump()}
            ),
        }
        return await self.h.feed({"callback_query": query})

    async def press(self, label: str) -> list[TelegramMethod[Any]]:
        """Press a button by its label in the last keyboard the bot sent to this chat."""
        for request in reversed(self.h.session.requests):
            markup = getattr(request, "reply_markup", None)
            if int(getattr(request, "chat_id", 0) or 0) != self.chat["id"] or markup is None:
                continue
            for row in getattr(markup, "inline_keyboard", []):
                for button in row:
                    if button.text == label:
                        return await self.press_data(button.callback_data)
        raise AssertionError(f"no button {label!r} sent to {self.chat['id']}")


class Harness:
    def __init__(self, funnel: Funnel) -> None:
        self.session = RecordingSession()
        self.bot = Bot("42:TEST", session=self.session)
        self.waits = Waits()
        self.sender = TelegramSender(
            self.bot,
            ManagersChatId(MANAGERS_CHAT, funnel.db, funnel.clock),
            sleep=self.waits,
            holds=ChatHolds(self.waits.now),
        )
        # The flood limit runs on a clock that moves a second per update (a person's pace)
        # unless a test freezes it to send a flood.
        self.seconds = 0.0
        self.frozen = False
        throttle = Throttle(FloodGate(rate=1.0, burst=5, clock=lambda: self.seconds))
        self.reloader = ScenarioReloader(funnel.scenarios)
        self.dispatcher: Dispatcher = create_dispatcher(
            funnel, self.sender, InFlight(), throttle, self.reloader
        )
        self.funnel = funnel
        pacer = MemoryPacer(DEFAULT_LIMITS, clock=lambda: funnel.clock.now().timestamp())
        channels = {self.sender.channel: self.sender}
        self.worker = DeliveryWorker(
            funnel.db,
            funnel.scenarios,
            funnel.clock,
            channels,
            pacer,
            funnel,
            managers=channels,
            worker_id="test",
            sleep=self.waits,
        )

    async def deliver(self) -> list[TelegramMethod[Any]]:
        """Run the delivery worker until nothing is due: what the outbox sent (cards, posts
        in the managers' chat, answers relayed to prospects)."""
        before = len(self.session.requests)
        await self.worker.drain()
        return self.session.requests[before:]

    async def feed(self, fields: dict[str, Any]) -> list[TelegramMethod[Any]]:
        """Feed one update through the real dispatcher; the requests the bot made for it."""
        if not self.frozen:
            self.seconds += 1
        before = len(self.session.requests)
        update = Update.model_validate(
            {"update_id": next(_update_ids), **fields}, context={"bot": self.bot}
        )
        await self.dispatcher.feed_update(self.bot, update)
        return self.session.requests[before:]

    async def feed_raw(self, update: Update) -> list[TelegramMethod[Any]]:
        before = len(self.session.requests)
        await self.dispatcher.feed_update(self.bot, update)
        return self.session.requests[before:]

    def prospect(self, user_id: int = 1001, first_name: str = "Анна") -> Prospect:
        return Prospect(self, user_id, first_name)


@pytest.fixture
def telegram(funnel: Funnel) -> Harness:
    """The test funnel with a managers' chat in Telegram."""
    return Harness(
        Funnel(
            funnel.db,
            funnel.scenarios,
            funnel.clock,
            routes=Routes(managers=("telegram",)),
        )
    )


def press_data(action: str) -> str:
    return Press(action=action).pack()
