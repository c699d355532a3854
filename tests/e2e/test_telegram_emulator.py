"""The e2e harness itself: a real aiogram Bot talks to the emulator over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.methods import GetChat
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    ForceReply,
    FSInputFile,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyParameters,
    Update,
)
from aiohttp import web

from tests.e2e.telegram import CallbackAnswer, EmulatorProcess, TelegramClient


@pytest.fixture
async def bot(telegram_emulator: TelegramClient) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram_emulator.base_url))
    bot = Bot(telegram_emulator.token, session=session)
    try:
        yield bot
    finally:
        await bot.session.close()


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data)] for text, data in pairs
        ]
    )


async def test_get_me_is_a_full_user(bot: Bot, telegram_emulator: TelegramClient) -> None:
    me = await bot.get_me()

    assert me.is_bot is True
    assert me.id == telegram_emulator.bot_id == bot.id
    assert me.username


async def test_sent_message_with_inline_keyboard_is_seen_by_the_client(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()

    sent = await bot.send_message(
        chat,
        "<b>Привет</b> &amp; welcome",
        parse_mode="HTML",
        reply_markup=keyboard(("Аудит", "offer:audit"), ("Гайд", "offer:guide")),
    )

    assert sent.chat.id == chat
    assert sent.chat.type == "private"
    assert sent.from_user is not None
    assert sent.from_user.id == bot.id
    assert sent.text == "Привет & welcome"
    assert sent.reply_markup is not None
    [message] = await telegram_emulator.bot_messages(chat)
    assert message.message_id == sent.message_id
    assert message.text == "Привет & welcome"
    assert message.raw_text == "<b>Привет</b> &amp; welcome"
    assert message.labels() == ["Аудит", "Гайд"]
    assert message.callback_data("Гайд") == "offer:guide"


async def test_reply_keyboard_is_recorded_but_not_returned(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    markup = ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text="Поделиться номером", request_contact=True)]],
        resize_keyboard=True,
    )

    sent = await bot.send_message(chat, "Телефон?", reply_markup=markup)

    assert sent.reply_markup is None  # Telegram returns inline keyboards only
    [message] = await telegram_emulator.bot_messages(chat)
    assert message.keyboard_buttons == [[{"text": "Поделиться номером", "request_contact": True}]]


async def test_message_ids_increase(bot: Bot, telegram_emulator: TelegramClient) -> None:
    chat = telegram_emulator.new_chat_id()

    first = await bot.send_message(chat, "one")
    second = await bot.send_message(chat, "two")

    assert second.message_id > first.message_id
    assert [m.text for m in await telegram_emulator.bot_messages(chat)] == ["one", "two"]


async def test_client_messages_arrive_as_parsed_updates(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    start = await telegram_emulator.send_command(chat, "/start src_test", first_name="Анна")
    text = await telegram_emulator.send_text(chat, "anna@example.com", first_name="Анна")
    contact = await telegram_emulator.share_contact(chat, "+79991234567", first_name="Анна")

    updates = await bot.get_updates()

    assert [u.update_id for u in updates] == [start.update_id, text.update_id, contact.update_id]
    command, email, phone = (u.message for u in updates)
    assert isinstance(command, Message)
    assert command.text == "/start src_test"
    assert command.message_id == start.message_id
    assert command.entities is not None
    assert command.entities[0].type == "bot_command"
    assert command.entities[0].length == len("/start")
    assert command.chat.id == chat
    assert command.chat.type == "private"
    assert command.from_user is not None
    assert command.from_user.id == chat
    assert command.from_user.first_name == "Анна"
    assert email is not None
    assert email.text == "anna@example.com"
    assert phone is not None
    assert phone.contact is not None
    assert phone.contact.phone_number == "+79991234567"
    assert phone.contact.user_id == chat


async def test_updates_stay_until_confirmed_by_offset(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    sent = await telegram_emulator.send_text(chat, "hello")

    again = [u.update_id for u in await bot.get_updates()]
    assert again == [u.update_id for u in await bot.get_updates()] == [sent.update_id]

    assert await bot.get_updates(offset=sent.update_id + 1) == []


async def test_get_updates_long_polls_until_a_message_comes(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    loop = asyncio.get_running_loop()
    started = loop.time()
    polling = asyncio.create_task(bot.get_updates(timeout=20))
    await telegram_emulator.send_text(chat, "late")

    updates = await polling

    assert [u.message.text for u in updates if u.message] == ["late"]
    assert loop.time() - started < 10


async def test_button_press_is_a_full_callback_query(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    offers = await bot.send_message(chat, "Выберите", reply_markup=keyboard(("Аудит", "audit")))
    await bot.send_message(chat, "Или напишите вопрос")

    pressed = await telegram_emulator.press(chat, "audit")  # no message_id: the one with "audit"
    [update] = await bot.get_updates()

    query = update.callback_query
    assert isinstance(query, CallbackQuery)
    assert query.id == pressed.callback_query_id
    assert query.data == "audit"
    assert query.chat_instance
    assert query.from_user.id == chat
    assert isinstance(query.message, Message)
    assert query.message.message_id == offers.message_id == pressed.message_id
    assert query.message.chat.id == chat
    assert query.message.chat.type == "private"
    assert query.message.date is not None
    assert await bot.answer_callback_query(query.id, text="ok") is True
    assert await telegram_emulator.recorded("answerCallbackQuery") == [
        {"callback_query_id": query.id, "text": "ok"}
    ]
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_press_button_by_label_and_on_unknown_message(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    first = await bot.send_message(chat, "1", reply_markup=keyboard(("Да", "yes:1")))
    await bot.send_message(chat, "2", reply_markup=keyboard(("Да", "yes:2")))

    newest = await telegram_emulator.press_button(chat, "Да")
    explicit = await telegram_emulator.press(chat, "yes:1", first.message_id)
    stale = await telegram_emulator.press(chat, "old", 999_999)
    updates = await bot.get_updates()

    queries = [u.callback_query for u in updates if u.callback_query]
    assert [q.data for q in queries] == ["yes:2", "yes:1", "old"]
    assert queries[0].message is not None
    assert queries[0].message.message_id == newest.message_id != first.message_id
    assert queries[1].message is not None
    assert queries[1].message.message_id == explicit.message_id == first.message_id
    assert isinstance(queries[2].message, InaccessibleMessage)
    assert queries[2].message.message_id == stale.message_id == 999_999
    with pytest.raises(AssertionError, match="no inline button"):
        await telegram_emulator.press_button(chat, "Нет")


async def test_send_document_upload_and_url(
    bot: Bot, telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    chat = telegram_emulator.new_chat_id()
    content = "Чек-лист аудита CRM\n".encode() * 10
    path = tmp_path / "checklist.pdf"
    path.write_bytes(content)

    uploaded = await bot.send_document(chat, FSInputFile(path), caption="Ваш чек-лист")
    by_url = await bot.send_document(chat, "https://example.com/files/guide%20v2.pdf")
    again = await bot.send_document(chat, uploaded.document.file_id if uploaded.document else "")

    assert uploaded.document is not None
    assert uploaded.document.file_name == "checklist.pdf"
    assert uploaded.document.file_size == len(content)
    assert uploaded.caption == "Ваш чек-лист"
    assert by_url.document is not None
    assert again.document is not None
    assert again.document.file_id == uploaded.document.file_id
    first, second, third = await telegram_emulator.bot_messages(chat)
    assert first.method == "sendDocument"
    assert first.text == "Ваш чек-лист"
    assert first.document is not None
    assert first.document.source == "upload"
    assert first.document.file_name == "checklist.pdf"
    assert first.document.size == len(content)
    assert first.document.mime_type == "application/pdf"
    assert await telegram_emulator.file_bytes(first.document.file_id) == content
    assert second.document is not None
    assert second.document.source == "url"
    assert second.document.given == "https://example.com/files/guide%20v2.pdf"
    assert second.document.file_name == "guide v2.pdf"
    assert third.document is not None
    assert (third.document.source, third.document.given) == ("file_id", first.document.file_id)
    [call] = (await telegram_emulator.calls("sendDocument"))[:1]
    assert call["files"][0]["file_name"] == "checklist.pdf"
    assert call["files"][0]["size"] == len(content)


async def test_send_photo(bot: Bot, telegram_emulator: TelegramClient, tmp_path: Path) -> None:
    chat = telegram_emulator.new_chat_id()
    path = tmp_path / "pic.png"
    path.write_bytes(b"\x89PNG fake")

    sent = await bot.send_photo(chat, FSInputFile(path))

    assert sent.photo
    [message] = await telegram_emulator.bot_messages(chat)
    assert message.media is not None
    assert (message.media.kind, message.media.size) == ("photo", len(b"\x89PNG fake"))


async def test_commands_are_recorded(bot: Bot, telegram_emulator: TelegramClient) -> None:
    commands = [
        BotCommand(command="start", description="Начать"),
        BotCommand(command="help", description="Помощь"),
    ]

    assert await bot.set_my_commands(commands) is True

    assert await telegram_emulator.recorded("setMyCommands") == [
        {
            "commands": [
                {"command": "start", "description": "Начать"},
                {"command": "help", "description": "Помощь"},
            ]
        }
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == []


async def test_fail_next_retry_after_then_succeeds(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    await telegram_emulator.fail_next("sendMessage", error_code=429, retry_after=1)

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(chat, "hi")

    assert caught.value.retry_after == 1
    await bot.send_message(chat, "hi")
    assert [m.text for m in await telegram_emulator.bot_messages(chat)] == ["hi"]
    [failed, succeeded] = await telegram_emulator.calls("sendMessage")
    assert (failed["ok"], failed["error_code"], succeeded["ok"]) == (False, 429, True)


async def test_fail_next_forbidden(bot: Bot, telegram_emulator: TelegramClient) -> None:
    await telegram_emulator.fail_next("sendDocument", error_code=403)

    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_document(telegram_emulator.new_chat_id(), "https://example.com/a.pdf")


async def test_injected_malformed_updates_come_back_raw(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    no_chat = await telegram_emulator.inject_update({"message": {"text": "no chat, no date"}})
    await telegram_emulator.inject_update("not even an object")

    answer = await telegram_emulator.bot_api("getUpdates")

    assert answer == {
        "ok": True,
        "result": [
            {"message": {"text": "no chat, no date"}, "update_id": no_chat},
            "not even an object",
        ],
    }
    # The string had no update_id to confirm it by, so it went out once; the dict stays.
    assert (await telegram_emulator.bot_api("getUpdates"))["result"] == [
        {"message": {"text": "no chat, no date"}, "update_id": no_chat}
    ]
    assert no_chat is not None
    assert await bot.get_updates(offset=no_chat + 1) == []


async def test_unknown_method_is_404(bot: Bot, telegram_emulator: TelegramClient) -> None:
    answer = await telegram_emulator.bot_api("noSuchMethod")

    assert answer == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    with pytest.raises(TelegramNotFound):
        await bot(GetChat(chat_id=1))


async def test_telegram_checks_that_catch_real_bugs(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()

    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(chat, "Здравствуйте, <Анна>!", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(chat, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(chat, "x", reply_markup=keyboard(("a", "d" * 65)))
    assert await telegram_emulator.bot_messages(chat) == []


async def test_edits_and_deletions(bot: Bot, telegram_emulator: TelegramClient) -> None:
    chat = telegram_emulator.new_chat_id()
    sent = await bot.send_message(chat, "Выберите", reply_markup=keyboard(("A", "a")))

    edited = await bot.edit_message_text(
        text="Выбрано: A", chat_id=chat, message_id=sent.message_id
    )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="Выбрано: A", chat_id=chat, message_id=sent.message_id)
    assert await bot.delete_message(chat, sent.message_id) is True

    assert isinstance(edited, Message)
    assert edited.reply_markup is None  # an edit without reply_markup drops the keyboard
    [message] = await telegram_emulator.bot_messages(chat)
    assert (message.text, message.deleted, len(message.edits)) == ("Выбрано: A", True, 1)


async def test_aiogram_polling_end_to_end(bot: Bot, telegram_emulator: TelegramClient) -> None:
    dispatcher = Dispatcher()

    @dispatcher.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}", reply_markup=keyboard(("Ещё", "more")))

    @dispatcher.callback_query(F.data == "more")
    async def more(query: CallbackQuery) -> None:
        assert query.message is not None
        await query.answer()
        await query.message.answer("more")

    polling = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False)
    )
    try:
        chat = telegram_emulator.new_chat_id()
        await telegram_emulator.send_text(chat, "привет")
        await telegram_emulator.wait_for(chat, "echo: привет")
        await telegram_emulator.press_button(chat, "Ещё")
        messages = await telegram_emulator.wait_for(chat, 2)
        await telegram_emulator.wait_for_calls("answerCallbackQuery")
    finally:
        await dispatcher.stop_polling()
        await polling

    assert [m.text for m in messages] == ["echo: привет", "more"]
    # The last long poll is cut short by stop_polling (answered or not); none failed.
    calls = await telegram_emulator.calls("getUpdates")
    assert [c for c in calls if "error_code" in c] == []


async def test_webhook_delivery_carries_the_secret_token(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    received: asyncio.Queue[tuple[str | None, dict[str, object]]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        secret = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        await received.put((secret, await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        chat = telegram_emulator.new_chat_id()
        sent = await telegram_emulator.send_text(chat, "via webhook")
        secret, update = await asyncio.wait_for(received.get(), 10)
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook() is True
    finally:
        await runner.cleanup()

    assert secret == "s3cret"
    parsed = Update.model_validate(update)
    assert parsed.update_id == sent.update_id
    assert parsed.message is not None
    assert parsed.message.text == "via webhook"
    assert await bot.get_updates() == []


# ------------------------------------------------------------------ a managers' group chat


async def test_a_group_message_and_the_bots_answer_there(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    group = telegram_emulator.new_group_id()

    sent = await telegram_emulator.send_group_text(
        group, "/stats всем", user_id=501, first_name="Ольга", last_name="Петрова"
    )
    [update] = await bot.get_updates()
    answer = await bot.send_message(group, "Сводка за неделю")

    message = update.message
    assert isinstance(message, Message)
    assert message.message_id == sent.message_id
    assert message.text == "/stats всем"
    assert (message.chat.id, message.chat.type, message.chat.title) == (
        group,
        "supergroup",
        "Менеджеры",
    )
    assert message.from_user is not None
    assert (message.from_user.id, message.from_user.full_name) == (501, "Ольга Петрова")
    assert message.from_user.is_bot is False
    assert (answer.chat.id, answer.chat.type, answer.chat.title) == (
        group,
        "supergroup",
        "Менеджеры",
    )
    [shown] = await telegram_emulator.bot_messages(group)
    assert (shown.message_id, shown.text) == (answer.message_id, "Сводка за неделю")
    assert await telegram_emulator.bot_messages(501) == []  # nothing leaked to the user
    with pytest.raises(AssertionError, match="needs from"):
        await telegram_emulator._post(
            "/sendMessage",
            {"botToken": telegram_emulator.token, "chat": {"id": group}, "text": "кто я?"},
        )


async def test_a_reply_to_the_bots_message_in_a_group(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    group = telegram_emulator.new_group_id()
    question = await bot.send_message(group, "💬 Вопрос от лида #7: работаете в Казахстане?")
    [posted] = await telegram_emulator.bot_messages(group)

    sent = await telegram_emulator.send_group_text(
        group, "Да, работаем", user_id=502, first_name="Иван", reply_to=posted
    )
    [update] = await bot.get_updates()
    confirmation = await bot.send_message(
        group, "Отправил клиенту", reply_parameters=ReplyParameters(message_id=sent.message_id)
    )

    reply = update.message
    assert isinstance(reply, Message)
    assert reply.text == "Да, работаем"
    assert reply.from_user is not None
    assert reply.from_user.id == 502
    replied = reply.reply_to_message
    assert isinstance(replied, Message)
    assert replied.message_id == question.message_id
    assert replied.text == question.text
    assert replied.chat.id == group
    assert replied.from_user is not None
    assert replied.from_user.is_bot is True
    assert replied.from_user.id == bot.id == (await bot.get_me()).id
    # The bot's own reply quotes the manager's message, as Telegram returns it.
    assert confirmation.reply_to_message is not None
    assert confirmation.reply_to_message.message_id == sent.message_id
    assert confirmation.reply_to_message.text == "Да, работаем"
    shown = await telegram_emulator.bot_message(group, confirmation.message_id)
    assert shown.reply_to_message_id == sent.message_id
    with pytest.raises(AssertionError, match="no message 999999"):
        await telegram_emulator.send_group_text(
            group, "?", user_id=502, first_name="Иван", reply_to=999_999
        )
    await bot.delete_message(group, question.message_id)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(
            group, "Поздно", reply_parameters=ReplyParameters(message_id=question.message_id)
        )


async def test_a_button_press_in_a_group_an_edited_card_and_toasts(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    group = telegram_emulator.new_group_id()
    card = await bot.send_message(
        group,
        "🔥 Лид #5\n🟢 Ждёт менеджера",
        reply_markup=keyboard(("✋ Взял", "p|h:claim:5"), ("🚫 Не наш клиент", "p|h:nofit:5")),
    )
    [posted] = await telegram_emulator.bot_messages(group)

    first = await telegram_emulator.press_group_button(
        group, posted, "✋ Взял", user_id=601, first_name="Ольга", last_name="Петрова"
    )
    [update] = await bot.get_updates()
    query = update.callback_query
    assert isinstance(query, CallbackQuery)
    assert query.id == first
    assert query.data == "p|h:claim:5"
    assert query.chat_instance
    assert (query.from_user.id, query.from_user.full_name) == (601, "Ольга Петрова")
    assert isinstance(query.message, Message)
    assert query.message.message_id == card.message_id
    assert (query.message.chat.id, query.message.chat.type) == (group, "supergroup")
    assert query.message.from_user is not None
    assert query.message.from_user.id == bot.id
    assert query.message.text == "🔥 Лид #5\n🟢 Ждёт менеджера"

    await bot.edit_message_text(
        text="🔥 Лид #5\n🤝 Взял: Ольга Петрова",
        chat_id=group,
        message_id=card.message_id,
        reply_markup=keyboard(("✅ Сделка", "p|h:won:5"), ("❌ Отказ", "p|h:lost:5")),
    )
    assert await bot.answer_callback_query(first, text="Лид #5 ваш.") is True

    edited = await telegram_emulator.bot_message(group, card.message_id)
    assert edited.text == "🔥 Лид #5\n🤝 Взял: Ольга Петрова"
    assert edited.labels() == ["✅ Сделка", "❌ Отказ"]
    assert len(edited.edits) == 1
    with pytest.raises(AssertionError, match="no inline button"):
        await telegram_emulator.press_group_button(
            group, posted, "✋ Взял", user_id=602, first_name="Иван"
        )  # the stale copy's button is gone from the card
    second = await telegram_emulator.press_group_button(
        group, posted, "✅ Сделка", user_id=602, first_name="Иван"
    )
    [update] = await bot.get_updates(offset=update.update_id + 1)
    assert update.callback_query is not None
    assert update.callback_query.data == "p|h:won:5"
    assert isinstance(update.callback_query.message, Message)
    assert update.callback_query.message.text == "🔥 Лид #5\n🤝 Взял: Ольга Петрова"
    assert update.callback_query.chat_instance == query.chat_instance  # the same chat
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(second, text="x" * 201)
    await bot.answer_callback_query(second, text="Сделку закрывает взявший.", show_alert=True)

    assert await telegram_emulator.callback_answers() == [
        CallbackAnswer(first, "Лид #5 ваш.", show_alert=False, url=None),
        CallbackAnswer(second, "Сделку закрывает взявший.", show_alert=True, url=None),
    ]
    assert (await telegram_emulator.wait_for_callback_answer(second)).show_alert is True


async def test_force_reply_markup(bot: Bot, telegram_emulator: TelegramClient) -> None:
    group = telegram_emulator.new_group_id()

    sent = await bot.send_message(
        group,
        "Сумма сделки по лиду #5? Ответьте на это сообщение.",
        reply_markup=ForceReply(input_field_placeholder="150 000"),
    )

    assert sent.reply_markup is None  # Telegram returns inline keyboards only
    [message] = await telegram_emulator.bot_messages(group)
    assert message.reply_markup == {"force_reply": True, "input_field_placeholder": "150 000"}
    assert message.labels() == []


# ------------------------------------------------------------------ Telegram's flood limits


def too_many(seconds: int) -> dict[str, object]:
    """Telegram's answer past a limit."""
    return {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {seconds}",
        "parameters": {"retry_after": seconds},
    }


async def test_a_private_chat_takes_a_short_burst_then_gets_429(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat, other = telegram_emulator.new_chat_id(), telegram_emulator.new_chat_id()
    for n in range(3):
        await bot.send_message(chat, f"{n}")

    refused = await telegram_emulator.bot_api("sendMessage", chat_id=chat, text="3")
    await bot.send_message(other, "another chat is not held")
    await asyncio.sleep(1)  # the retry_after, as a bot must wait it
    await bot.send_message(chat, "3")

    assert refused == too_many(1)
    assert [m.text for m in await telegram_emulator.bot_messages(chat)] == ["0", "1", "2", "3"]


async def test_aiogram_reads_the_429_as_retry_after(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    for n in range(3):
        await bot.send_message(chat, f"{n}")

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_document(chat, "https://example.com/a.pdf")

    assert caught.value.retry_after == 1
    assert len(await telegram_emulator.bot_messages(chat)) == 3


async def test_a_send_inside_the_retry_after_is_refused_again_and_recorded(
    telegram_emulator_server: EmulatorProcess,
) -> None:
    # A client of its own: the fixture's asserts that its bot never did this.
    client = TelegramClient(telegram_emulator_server.url)
    try:
        chat = client.new_chat_id()
        for n in range(3):
            await client.bot_api("sendMessage", chat_id=chat, text=f"{n}")
        first = await client.bot_api("sendMessage", chat_id=chat, text="too soon")
        again = await client.bot_api("sendMessage", chat_id=chat, text="sooner still")

        assert first == again == too_many(1)
        [violation] = await client.violations()
        assert (violation["method"], violation["chat_id"], violation["scope"]) == (
            "sendMessage",
            chat,
            f"chat:{chat}",
        )
        assert 0 < violation["early_ms"] <= 1000
        assert len(await client.bot_messages(chat)) == 3
    finally:
        await client.close()


async def test_a_group_takes_20_messages_a_minute(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    group = telegram_emulator.new_group_id()
    for n in range(20):
        await bot.send_message(group, f"Лид #{n}")

    refused = await telegram_emulator.bot_api("sendMessage", chat_id=group, text="Лид #20")

    retry_after = refused.get("parameters", {}).get("retry_after")
    assert isinstance(retry_after, int)
    assert 1 < retry_after <= 60  # until the first of the twenty is a minute old
    assert refused == too_many(retry_after)
    assert len(await telegram_emulator.bot_messages(group)) == 20


async def test_about_30_messages_a_second_in_all(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chats = [telegram_emulator.new_chat_id() for _ in range(31)]
    answers = await asyncio.gather(
        *(telegram_emulator.bot_api("sendMessage", chat_id=chat, text="Новость") for chat in chats)
    )

    assert sorted(a["ok"] for a in answers) == [False] + [True] * 30
    [refused] = [a for a in answers if not a["ok"]]
    assert refused == too_many(1)


async def test_limits_can_be_turned_off_for_a_test_that_measures_something_else(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    chat = telegram_emulator.new_chat_id()
    limits = await telegram_emulator.set_limits(enabled=False)

    for n in range(10):
        await bot.send_message(chat, f"{n}")

    assert limits["enabled"] is False
    assert len(await telegram_emulator.bot_messages(chat)) == 10
    assert (await telegram_emulator.set_limits(chat_burst=1))["enabled"] is True


# ------------------------------------------------------------------ a group becomes a supergroup


async def test_a_group_upgraded_to_a_supergroup(
    bot: Bot, telegram_emulator: TelegramClient
) -> None:
    group = telegram_emulator.new_basic_group_id()
    await telegram_emulator.send_group_text(group, "Привет", user_id=501, first_name="Ольга")
    [hello] = await bot.get_updates()
    assert hello.message is not None
    assert hello.message.chat.type == "group"

    supergroup = await telegram_emulator.upgrade_group(group, user_id=501, first_name="Ольга")
    raw = await telegram_emulator.bot_api("sendMessage", chat_id=group, text="Карточка")
    with pytest.raises(TelegramMigrateToChat) as caught:
        await bot.send_message(group, "Карточка")
    updates = await bot.get_updates(offset=hello.update_id + 1)
    sent = await bot.send_message(supergroup, "Карточка")

    assert str(supergroup).startswith("-100")
    assert raw == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": supergroup},
    }
    assert caught.value.migrate_to_chat_id == supergroup
    old, new = (u.message for u in updates)
    assert old is not None
    assert (old.chat.id, old.chat.type, old.migrate_to_chat_id) == (group, "group", supergroup)
    assert new is not None
    assert (new.chat.id, new.chat.type, new.migrate_from_chat_id) == (
        supergroup,
        "supergroup",
        group,
    )
    assert (sent.chat.id, sent.chat.type, sent.chat.title) == (
        supergroup,
        "supergroup",
        "Менеджеры",
    )
    with pytest.raises(AssertionError, match="was upgraded to the supergroup"):
        await telegram_emulator.send_group_text(group, "?", user_id=501, first_name="Ольга")
    await telegram_emulator.send_group_text(supergroup, "Здесь", user_id=501, first_name="Ольга")
    [here] = await bot.get_updates(offset=updates[-1].update_id + 1)
    assert here.message is not None
    assert (here.message.chat.id, here.message.text) == (supergroup, "Здесь")
