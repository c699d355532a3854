"""Flood control is the core's, in VK as in Telegram: forty texts at once from one person
reach the engine only up to the burst, and the person hears one "slow down"."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.handoff import MANAGERS_POST, ManagerDesk
from bot.redemption import Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import Routes
from bot.settings import load_settings
from handlers.vk.channel import CALLBACK_PATH, VkChannel, create_sender
from handlers.web.server import web_app
from storage.database import Database
from storage.models import OutboxRow
from tests.conftest import FIXTURE_SCENARIO
from tests.e2e.vk_api import VkApiFake, vk_api

BURST = 3
SLOW_DOWN = "Вы пишете очень быстро. Подождите пару секунд, пожалуйста."


async def test_a_flood_in_vk_is_capped_with_one_polite_answer(
    sqlite_db: Database, clock: FakeClock, vk_api: VkApiFake, tmp_path: Path
) -> None:
    funnel = Funnel(
        sqlite_db,
        ActiveScenario(load_scenario(FIXTURE_SCENARIO)),
        clock,
        routes=Routes(managers=("vk",)),
    )
    env = {name.lower(): value for name, value in vk_api.env().items()}
    settings = load_settings(
        **env, vk_callback_secret="s", vk_confirmation_code="c", flood_burst=BURST
    )
    sender = create_sender(settings)
    desk = ManagerDesk(sqlite_db, funnel.scenarios, funnel.clock, {})
    channel = VkChannel(settings, funnel, sender, desk, Redemptions(funnel), None)
    channel.handlers.flood.clock = lambda: 0.0  # all forty at the same moment
    app = web_app()
    channel.add_routes(app)
    user = vk_api.new_user_id()
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            for number in range(40):
                text = f"вопрос номер {number} без ответа в FAQ"
                body = vk_api.callback_event(
                    "message_new",
                    vk_api.message_new_object(user, text),
                    secret="s",
                    event_id=f"flood{number}",
                )
                response = await client.post(CALLBACK_PATH, json=body)
                assert (response.status, await response.text()) == (200, "ok")
    finally:
        await channel.stop()
    texts = [message.text for message in vk_api.sent(user)]
    assert texts.count(SLOW_DOWN) == 1
    assert len(texts) == BURST + 1  # an answer to each of the first three, then one warning
    async with sqlite_db.unit_of_work() as uow:
        posts = select(func.count()).where(OutboxRow.kind == MANAGERS_POST)
        assert (await uow.session.execute(posts)).scalar_one() == BURST


__all__ = ["vk_api"]  # the fake VK API's fixture
