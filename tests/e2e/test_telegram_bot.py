"""`leadbot run` as a real process, talking real HTTP to the Telegram Bot API emulator; the test
acts as prospects through the emulator's client routes and reads what the bot sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.e2e.bot_process import MANAGERS, RunningBot, free_port, start_bot
from tests.e2e.telegram import BotMessage, TelegramClient

GUIDE = "Гайд: настройка Битрикс24 за вечер"
AUDIT = "Час добра: бесплатный аудит процессов"


def texts(messages: list[BotMessage]) -> list[str]:
    return [m.text or "" for m in messages]


async def test_the_shipped_funnel_from_start_to_the_guide(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    tg = telegram_emulator
    chat = tg.new_chat_id()
    await tg.send_command(chat, "/start src_test", first_name="Анна")
    [menu] = await tg.wait_for(chat, 1)
    assert (menu.text or "").startswith("Здравствуйте, Анна!")
    assert menu.labels() == [AUDIT, GUIDE, "Час консультации специалиста"]

    await tg.press_button(chat, GUIDE)
    await tg.wait_for(chat, "согласие на обработку персональных данных")
    await tg.press_button(chat, "Даю согласие")
    await tg.wait_for(chat, "можно иногда присылать")
    await tg.press_button(chat, "Да, присылайте")
    await tg.wait_for(chat, "Напишите e-mail")
    await tg.send_text(chat, "anna@company.ru")
    messages = await tg.wait_for(chat, lambda ms: any(m.document for m in ms))
    [guide] = [m for m in messages if m.document]
    assert guide.document is not None
    assert guide.document.file_name == "bitrix24-guide.pdf"
    assert (guide.text or "").startswith("Держите гайд")
    # Every press was answered, so no button kept spinning.
    assert len(await tg.recorded("answerCallbackQuery")) == 3
    commands = await tg.recorded("setMyCommands")
    assert [c["command"] for c in commands[0]["commands"]] == [
        "start",
        "menu",
        "stop",
        "promo",
        "invite",
        "booking",
        "mydata",
        "delete",
    ]
    [notice] = await tg.wait_for(MANAGERS, "оставил контакты")
    assert "E-mail: anna@company.ru" in (notice.text or "")
    assert bot.rows("select stage, source from leads") == [("warming", "test")]


async def test_a_phone_shared_by_the_contact_button(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    tg = telegram_emulator
    chat = tg.new_chat_id()
    await tg.send_command(chat, "/start o_audit")
    await tg.wait_for(chat, "согласие")
    await tg.press_button(chat, "Даю согласие")
    await tg.wait_for(chat, "можно иногда присылать")
    await tg.press_button(chat, "Нет, спасибо")
    await tg.wait_for(chat, "Как к вам обращаться?")
    await tg.send_text(chat, "Олег")
    [*_, ask] = await tg.wait_for(chat, "номер телефона")
    assert [[b["text"] for b in row] for row in ask.keyboard_buttons] == [
        ["Отправить номер"],
        ["В меню"],  # the way out: a key that sends its label
    ]
    assert ask.keyboard_buttons[0][0].get("request_contact") is True
    await tg.share_contact(chat, "+7 916 123-45-67", user_id=chat + 1)  # someone else's
    await tg.wait_for(chat, "Похоже, это чужой контакт")
    await tg.share_contact(chat, "79161234567")
    await tg.wait_for(chat, "Сколько сотрудников")
    assert bot.rows("select kind, value, verified from contacts") == [("phone", "+79161234567", 1)]


async def test_stop_delete_and_a_forged_button(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    tg = telegram_emulator
    chat = tg.new_chat_id()
    await tg.send_command(chat, "/start o_guide")
    await tg.wait_for(chat, "согласие")
    await tg.press_button(chat, "Даю согласие")
    await tg.wait_for(chat, "можно иногда присылать")
    await tg.press_button(chat, "Да, присылайте")
    await tg.wait_for(chat, "Напишите e-mail")
    await tg.send_text(chat, "oleg@company.ru")
    await tg.wait_for(chat, lambda ms: any(m.document for m in ms))

    await tg.send_command(chat, "/stop")
    await tg.wait_for(chat, "больше не будем присылать рассылки")
    assert bot.rows("select kind from consents where withdrawn_at is null") == [("personal_data",)]

    pressed = await tg.press(chat, "p|o:no_such_offer")
    await tg.wait_for(chat, "Эта кнопка уже неактуальна")
    answered = [c["callback_query_id"] for c in await tg.recorded("answerCallbackQuery")]
    assert pressed.callback_query_id in answered
    await tg.press(chat, "not our data at all")
    await tg.wait_for(
        chat, lambda ms: texts(ms).count("Эта кнопка уже неактуальна. Вот свежее меню:") == 2
    )

    await tg.send_command(chat, "/delete")
    await tg.wait_for(chat, "Удалить все ваши данные")
    await tg.press_button(chat, "Да, удалить")
    await tg.wait_for(chat, "ваши данные удалены")
    assert bot.rows("select count(*) from contacts") == [(0,)]
    assert bot.rows("select count(*) from identities") == [(0,)]
    assert bot.rows("select erased_at is not null from leads") == [(1,)]


async def test_a_malformed_update_does_not_stall_polling(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    tg = telegram_emulator
    await tg.inject_update({"message": {"message_id": "broken", "chat": 5}})
    chat = tg.new_chat_id()
    await tg.send_command(chat, "/start")
    await tg.wait_for(chat, 1)
    assert "malformed update" in bot.log.read_text()


async def test_the_webhook_refuses_a_wrong_secret(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    webhook_port = free_port()
    running = start_bot(
        telegram_emulator,
        tmp_path,
        WEBHOOK_BASE_URL="https://bot.example.test",
        WEBHOOK_SECRET="the-right-secret-0123456789",
        HTTP_PORT=str(webhook_port),
    )
    try:
        [hook] = await telegram_emulator.wait_for_calls("setWebhook", 1, timeout=30)
        assert hook["url"] == "https://bot.example.test/telegram/webhook"
        url = f"http://127.0.0.1:{webhook_port}/telegram/webhook"
        update = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 77, "type": "private"},
                "from": {"id": 77, "is_bot": False, "first_name": "X"},
                "text": "/start",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            },
        }
        async with aiohttp.ClientSession() as http:
            wrong = await http.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
            )
            missing = await http.post(url, json=update)
            right = await http.post(
                url,
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": "the-right-secret-0123456789"},
            )
        assert (wrong.status, missing.status, right.status) == (401, 401, 200)
        # 200 came after the commit: the lead of the accepted update is stored, only it.
        assert running.rows("select external_id from identities") == [("77",)]
    finally:
        assert running.stop() == 0, running.log.read_text()


async def test_sigterm_stops_the_bot_cleanly_with_everything_stored(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    running = start_bot(telegram_emulator, tmp_path)
    try:
        await telegram_emulator.wait_for_calls("deleteWebhook", 1, timeout=30)
        chat = telegram_emulator.new_chat_id()
        await telegram_emulator.send_command(chat, "/start src_shutdown")
        await telegram_emulator.wait_for(chat, 1)
    finally:
        code = await asyncio.to_thread(running.stop)
    assert code == 0, running.log.read_text()
    assert "Polling stopped" in running.log.read_text()
    assert running.rows("select source from leads") == [("shutdown",)]
