"""A request of a person's time reaches the managers over the messengers: `leadbot run` as a
real process against the Telegram emulator and the VK API fake. A prospect who took the guide
(not handed over) gets a broadcast with a `handoff:` button; pressing it answers what happens
next and puts the lead's card in the managers' chat with the request as its reason; pressing
again posts the request there instead of a second card."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import SHIPPED_SCENARIO
from tests.e2e.bot_process import (
    DELIVERY_TIMEOUT,
    MANAGERS,
    RunningBot,
    eventually,
    run_broadcast,
    start_bot,
)
from tests.e2e.telegram import BotMessage, TelegramClient
from tests.e2e.test_vk_bot import lead_of, press, running_bot, take_the_guide
from tests.e2e.vk_api import SentMessage, VkApiFake

CALL_ME = "Да, перезвоните"
WHY = "просит перезвонить после рассылки"
REPLY = "Передали менеджеру — позвоним сегодня до 19:00 МСК."
OFFER_TEXT = "Расскажем за 15 минут, как внедрить CRM за неделю. Перезвонить вам?"


def scenario_with_a_call_me_broadcast(tmp_path: Path) -> Path:
    """The shipped scenario, with a broadcast to those who took the guide whose button asks
    for a call, and no quiet hours (the broadcast goes at once)."""
    folder = tmp_path / "scenario"
    shutil.copytree(SHIPPED_SCENARIO, folder)
    path = folder / "main.yaml"
    data = yaml.safe_load(path.read_text())
    data["settings"].pop("quiet_hours")
    data["broadcasts"] = {
        "call_me": {
            "segment": {"offer": "guide"},
            "text": OFFER_TEXT,
            "buttons": [
                {"text": CALL_ME, "event": "callback_requested", "handoff": WHY, "reply": REPLY}
            ],
        }
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000))
    return folder


def cards(texts: list[str], lead_id: int) -> list[str]:
    return [t for t in texts if t.startswith(f"🔥 Лид #{lead_id}")]


def requests(texts: list[str], lead_id: int) -> list[str]:
    return [t for t in texts if t.startswith("🔔 ") and f"(лид #{lead_id}," in t]


def handoff(bot: RunningBot, lead_id: int) -> list[tuple[Any, ...]]:
    return bot.rows("select status, rule from handoffs where lead_id = ?", lead_id)


async def test_telegram_a_call_me_button_hands_the_lead_over_and_then_posts_the_request(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    tg = telegram_emulator
    scenario = scenario_with_a_call_me_broadcast(tmp_path)
    bot = start_bot(tg, tmp_path, SCENARIO_DIR=str(scenario))
    try:
        with bot.log_on_failure():
            await tg.wait_for_calls("deleteWebhook", 1, timeout=30)
            chat = tg.new_chat_id()
            await tg.send_command(chat, "/start o_guide", first_name="Анна")
            await tg.wait_for(chat, "согласие")
            await tg.press_button(chat, "Даю согласие", first_name="Анна")
            await tg.wait_for(chat, "можно иногда присылать")
            await tg.press_button(chat, "Да, присылайте", first_name="Анна")
            await tg.wait_for(chat, "Напишите e-mail")
            await tg.send_text(chat, "anna@company.ru", first_name="Анна")
            await tg.wait_for(chat, lambda ms: any(m.document for m in ms), timeout=30)
            [(lead_id,)] = bot.rows(
                "select lead_id from identities where channel = 'telegram' and external_id = ?",
                str(chat),
            )
            assert handoff(bot, lead_id) == []

            await run_broadcast(bot, scenario, "call_me")
            await tg.wait_for(chat, OFFER_TEXT, timeout=DELIVERY_TIMEOUT)
            await tg.press_button(chat, CALL_ME, first_name="Анна")
            await tg.wait_for(chat, REPLY)

            def texts(ms: list[BotMessage]) -> list[str]:
                return [m.text or "" for m in ms if not m.deleted]

            shown = await tg.wait_for(
                MANAGERS, lambda ms: bool(cards(texts(ms), lead_id)), timeout=DELIVERY_TIMEOUT
            )
            [card] = cards(texts(shown), lead_id)
            assert f"Почему: {WHY}" in card
            assert "anna@company.ru" in card
            assert handoff(bot, lead_id) == [("open", WHY)]

            # The same button again: the lead was handed over, so the request is posted.
            await tg.press_button(chat, CALL_ME, first_name="Анна")
            shown = await tg.wait_for(
                MANAGERS, lambda ms: bool(requests(texts(ms), lead_id)), timeout=DELIVERY_TIMEOUT
            )
            [post] = requests(texts(shown), lead_id)
            assert post.startswith(f"🔔 Анна (лид #{lead_id}, карточка ещё не взята)\n{WHY}\n")
            assert len(cards(texts(shown), lead_id)) == 1
    finally:
        assert await asyncio.to_thread(bot.stop) == 0, bot.log.read_text()[-6000:]


async def test_vk_a_call_me_button_hands_the_lead_over(vk_api: VkApiFake, tmp_path: Path) -> None:
    vk = vk_api
    chat = vk.new_chat_peer_id()
    scenario = scenario_with_a_call_me_broadcast(tmp_path)
    async with running_bot(
        vk, tmp_path, MANAGERS_VK_PEER_ID=str(chat), SCENARIO_DIR=str(scenario)
    ) as bot:
        user = vk.new_user_id()
        vk.push_message(user, "Начать", payload={"command": "start"})
        await take_the_guide(vk, user)
        lead_id = lead_of(bot, user)

        await run_broadcast(bot, scenario, "call_me")
        await vk.wait_for(user, lambda ms: any(OFFER_TEXT in m.text for m in ms))
        before = len(vk.sent(user))
        await press(vk, user, CALL_ME)
        await vk.wait_for(user, lambda ms: any(REPLY in m.text for m in ms[before:]))

        def texts(ms: list[SentMessage]) -> list[str]:
            return [m.text for m in ms]

        shown = await vk.wait_for(
            chat, lambda ms: bool(cards(texts(ms), lead_id)), timeout=DELIVERY_TIMEOUT
        )
        [card] = cards(texts(shown), lead_id)
        assert f"Почему: {WHY}" in card
        await eventually(lambda: handoff(bot, lead_id) == [("open", WHY)], "the handoff")
