"""One deployment, both messengers: `leadbot run` with a Telegram token and a VK token serves
a VK prospect and Telegram managers from one process (one delivery worker, one desk). A VK
prospect qualifies, the card reaches the Telegram managers' chat, a manager claims it there
and answers the prospect, whose answer arrives in VK."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e.bot_process import MANAGERS, start_bot
from tests.e2e.telegram import BotMessage, TelegramClient
from tests.e2e.test_vk_bot import DELIVERY_TIMEOUT, take_the_audit
from tests.e2e.vk_api import VkApiFake

OLGA: dict[str, Any] = {"user_id": 90_011, "first_name": "Ольга", "last_name": "Петрова"}


async def test_a_vk_prospect_reaches_telegram_managers_and_their_answer_comes_back(
    telegram_emulator: TelegramClient, vk_api: VkApiFake, tmp_path: Path
) -> None:
    tg, vk = telegram_emulator, vk_api
    bot = start_bot(tg, tmp_path, **vk.env())
    try:
        with bot.log_on_failure():
            await vk.wait_for_calls("groups.getLongPollServer", 1, timeout=30)
            await tg.wait_for_calls("deleteWebhook", 1, timeout=30)
            user = vk.new_user_id()
            vk.add_user(user, "Мария")
            await take_the_audit(vk, user)

            def cards(messages: list[BotMessage]) -> list[BotMessage]:
                return [m for m in messages if (m.text or "").startswith("🔥 Лид #")]

            [card] = cards(await tg.wait_for(MANAGERS, cards, timeout=DELIVERY_TIMEOUT))
            assert "vk.com/id" in (card.text or "")  # the link opens the prospect's VK page
            assert "+79165551234" in (card.text or "")

            press = await tg.press_group_button(MANAGERS, card, "✋ Взял", **OLGA)
            assert "ваш" in (await tg.wait_for_callback_answer(press)).text
            await tg.send_group_text(
                MANAGERS, "Мария, добрый день! Позвоню в 15:00.", reply_to=card, **OLGA
            )
            answer = await vk.wait_for(user, "Позвоню в 15:00", timeout=DELIVERY_TIMEOUT)
            assert answer[-1].text == "Мария, добрый день! Позвоню в 15:00."
            # Nothing of the managers' side went to VK but the answer.
            assert not any("🔥" in m.text for m in vk.sent(user))
    finally:
        code = await asyncio.to_thread(bot.stop)
        assert code == 0, bot.log.read_text()[-6000:]
