"""Inside the phone question over real messengers (issue 15): where the way out goes when
Telegram's message carries the share-contact keyboard, and VK's inline buttons; a question to
us and a refusal at the phone question; the skip button of an optional question."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.e2e.bot_process import RunningBot
from tests.e2e.telegram import BotMessage, TelegramClient
from tests.e2e.test_vk_bot import (
    AUDIT,
    CONSENT,
    MARKETING,
    MENU,
    START,
    press,
    reply_after,
    running_bot,
)
from tests.e2e.vk_api import VkApiFake

ASK_PHONE = "Оставьте, пожалуйста, номер телефона — позвоним только по делу."
PRICE = "Внедрение «под ключ»"
REFUSED = "Понимаем 🙂 Номер нужен, чтобы специалист позвонил"  # scenarios/main.yaml
SIZE = ["До 10", "10–50", "Больше 50", "Пропустить", "В меню"]


async def telegram_reply(
    tg: TelegramClient, chat: int, count: int, act: Callable[[], Awaitable[Any]]
) -> list[BotMessage]:
    """Do `act` and return the next `count` messages the bot sends to the chat."""
    before = len(await tg.bot_messages(chat))
    await act()
    messages = await tg.wait_for(chat, lambda ms: len(ms) >= before + count, timeout=20)
    return messages[before : before + count]


def keys(message: BotMessage) -> list[list[str]]:
    return [[str(b["text"]) for b in row] for row in message.keyboard_buttons]


async def test_telegram_puts_the_way_out_beside_the_share_button(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    tg = telegram_emulator
    chat = tg.new_chat_id()
    await tg.send_command(chat, "/start o_audit", first_name="Олег")
    await tg.wait_for(chat, "согласие")
    await tg.press_button(chat, "Даю согласие")
    await tg.wait_for(chat, "можно иногда присылать")
    await tg.press_button(chat, "Нет, спасибо")
    await tg.wait_for(chat, "Как к вам обращаться?")
    [ask] = await telegram_reply(tg, chat, 1, lambda: tg.send_text(chat, "Олег"))
    assert ask.text == ASK_PHONE
    # One message carries one keyboard: the menu key joins the share-contact one.
    assert keys(ask) == [["Отправить номер"], ["В меню"]]
    assert ask.keyboard_buttons[0][0].get("request_contact") is True
    assert not ask.keyboard_buttons[1][0].get("request_contact")
    assert ask.inline_buttons == []

    price, again = await telegram_reply(
        tg, chat, 2, lambda: tg.send_text(chat, "а сколько стоит?")
    )
    assert (price.text or "").startswith(PRICE)
    assert (again.text, keys(again)) == (ASK_PHONE, keys(ask))

    # The menu key sends its label as text: the menu, not "a typo in the number".
    [menu] = await telegram_reply(tg, chat, 1, lambda: tg.send_text(chat, "В меню"))
    assert menu.labels() == MENU

    _pitch, ask = await telegram_reply(tg, chat, 2, lambda: tg.press_button(chat, AUDIT))
    assert (ask.text, keys(ask)) == (ASK_PHONE, [["Отправить номер"], ["В меню"]])
    [refused] = await telegram_reply(
        tg, chat, 1, lambda: tg.send_text(chat, "не хочу давать телефон")
    )
    assert (refused.text or "").startswith(REFUSED)
    assert refused.labels() == MENU  # inline: the start buttons, so the person goes on

    await telegram_reply(tg, chat, 2, lambda: tg.press_button(chat, AUDIT))
    [size] = await telegram_reply(tg, chat, 1, lambda: tg.share_contact(chat, "79161234567"))
    assert size.labels() == SIZE  # an inline keyboard again: skip and menu in one row
    assert [b["text"] for b in size.inline_buttons[-1]] == ["Пропустить", "В меню"]
    skipped, role = await telegram_reply(tg, chat, 2, lambda: tg.press_button(chat, "Пропустить"))
    assert skipped.text == "Хорошо, пропустим 👌"
    assert (role.text or "").startswith("Какая у вас роль в выборе CRM?")
    assert bot.rows("select value from answers where question = 'company_size'") == []
    assert bot.rows("select count(*) from events where name = 'question_skipped'") == [(1,)]


async def test_vk_shows_the_way_out_as_buttons_under_the_phone_question(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    vk = vk_api
    async with running_bot(vk, tmp_path) as bot:
        user = vk.new_user_id()
        vk.push_message(user, "Начать", payload=START)
        await vk.wait_for(user, 1)
        await reply_after(vk, user, CONSENT, lambda: press(vk, user, AUDIT))
        await reply_after(vk, user, MARKETING, lambda: press(vk, user, "Даю согласие"))
        await reply_after(
            vk, user, "Как к вам обращаться?", lambda: press(vk, user, "Нет, спасибо")
        )
        ask = await reply_after(vk, user, ASK_PHONE, lambda: vk.push_message(user, "Мария"))
        # VK has no share-contact button: the phone is typed, and the way out is a button.
        assert ask.labels() == ["В меню"]
        assert ask.inline
        assert ask.button("В меню")["type"] == "callback"

        await reply_after(vk, user, PRICE, lambda: vk.push_message(user, "а сколько стоит?"))
        again = await vk.wait_for(user, lambda ms: ms[-1].text == ASK_PHONE)
        assert again[-1].labels() == ["В меню"]

        menu = await reply_after(
            vk, user, "Выберите, с чего начнём", lambda: press(vk, user, "В меню")
        )
        assert menu.labels() == MENU

        await reply_after(vk, user, ASK_PHONE, lambda: press(vk, user, AUDIT))
        refused = await reply_after(
            vk, user, REFUSED, lambda: vk.push_message(user, "не хочу давать телефон")
        )
        assert refused.labels() == MENU

        await reply_after(vk, user, ASK_PHONE, lambda: press(vk, user, AUDIT))
        size = await reply_after(
            vk, user, "Сколько сотрудников", lambda: vk.push_message(user, "+7 916 555-12-34")
        )
        assert size.labels() == SIZE
        assert size.inline
        await reply_after(vk, user, "Какая у вас роль", lambda: press(vk, user, "Пропустить"))
        assert vk.sent(user)[-2].text == "Хорошо, пропустим 👌"
        assert bot.rows("select count(*) from events where name = 'question_refused'") == [(1,)]
        assert bot.rows("select count(*) from events where name = 'question_skipped'") == [(1,)]
