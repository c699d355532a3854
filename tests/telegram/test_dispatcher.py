"""Real `Update`s through the real dispatcher and routers; assertions on the requests the bot
made (the HTTP session is the only thing swapped)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiogram.methods import (
    AnswerCallbackQuery,
    SendDocument,
    SendMessage,
    SetMyCommands,
)
from aiogram.types import (
    BufferedInputFile,
    FSInputFile,
    InlineKeyboardMarkup,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)

from handlers.telegram.channel import COMMANDS, register_commands
from handlers.telegram.middlewares import InFlight
from handlers.telegram.session import TolerantSession
from storage.database import Database
from tests.prospect import snapshot
from tests.telegram.conftest import MANAGERS_CHAT, Harness, press_data
from tests.telegram.mocked_bot import sent_texts

MENU = ["Бесплатный аудит", "Гайд по настройке", "Чек-лист", "Сайт"]


def labels(request: SendMessage) -> list[str]:
    assert isinstance(request.reply_markup, InlineKeyboardMarkup)
    return [b.text for row in request.reply_markup.inline_keyboard for b in row]


async def test_start_with_a_deep_link_shows_the_menu_as_an_inline_keyboard(
    telegram: Harness, sqlite_db: Database
) -> None:
    anna = telegram.prospect()
    [reply] = await anna.text("/start src_test")
    assert isinstance(reply, SendMessage)
    assert reply.text == "Привет, Анна! Выберите:"
    assert labels(reply) == MENU
    assert isinstance(reply.reply_markup, InlineKeyboardMarkup)
    buttons = [b for row in reply.reply_markup.inline_keyboard for b in row]
    assert buttons[0].callback_data == "p|o:audit"
    assert buttons[3].url == "https://example.com"
    assert (await snapshot(sqlite_db, "1001")).source == "test"


async def test_a_press_is_answered_first_and_then_the_consent_is_asked(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start")
    requests = await anna.press("Гайд по настройке")
    assert isinstance(requests[0], AnswerCallbackQuery)
    assert isinstance(requests[1], SendMessage)
    assert requests[1].text.startswith("Нужно согласие на обработку данных")
    assert labels(requests[1]) == ["Даю согласие", "Не сейчас"]


async def test_the_guide_is_delivered_as_a_document_with_a_menu_button(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    requests = await anna.text("anna@example.com")
    [document] = [r for r in requests if isinstance(r, SendDocument)]
    assert isinstance(document.document, FSInputFile)
    assert document.document.filename == "guide.pdf"
    assert document.caption == "Ваш гайд, Анна."
    assert isinstance(document.reply_markup, InlineKeyboardMarkup)
    # A second delivery reuses the uploaded file's id instead of uploading again.
    await anna.text("/start o_guide")
    again = telegram.session.of(SendDocument)[-1]
    assert isinstance(again.document, str)
    assert again.document.startswith("doc")


async def test_the_phone_question_offers_the_share_button_and_checks_the_owner(
    telegram: Harness, sqlite_db: Database
) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    [ask] = await anna.text("Анна")
    assert isinstance(ask, SendMessage)
    assert isinstance(ask.reply_markup, ReplyKeyboardMarkup)
    button = ask.reply_markup.keyboard[0][0]
    assert (button.text, button.request_contact) == ("Отправить номер", True)

    refused = await anna.contact("+79990000000", user_id=777)
    assert sent_texts(telegram.session)[-2].startswith("Можно отправить только свой номер.")
    assert len(refused) == 2
    await anna.contact("79991234567")
    assert ("phone", "+79991234567", True) in (await snapshot(sqlite_db, "1001")).contacts


async def test_the_share_keyboard_is_removed_once_it_is_not_needed(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.text("Анна")
    await anna.text("+79991234567")  # typed instead of shared: the keyboard is still up
    await anna.press("до 10")
    [delivered] = [r for r in telegram.session.of(SendMessage) if r.text.startswith("Спасибо")]
    assert isinstance(delivered.reply_markup, InlineKeyboardMarkup)
    await anna.text("/stop")
    assert isinstance(telegram.session.of(SendMessage)[-1].reply_markup, InlineKeyboardMarkup)
    requests = await anna.sticker()
    assert isinstance(requests[-1], SendMessage)
    # The first message without inline buttons takes the share-phone keyboard away, once.
    assert isinstance(requests[0], SendMessage)
    assert isinstance(requests[0].reply_markup, ReplyKeyboardRemove)
    await anna.sticker()
    assert telegram.session.of(SendMessage)[-2].reply_markup is None


@pytest.mark.parametrize("data", ["garbage", "p|o:nosuch", "p|a:company_size:9", "x" * 64])
async def test_forged_or_stale_callbacks_are_answered_with_the_menu(
    telegram: Harness, data: str
) -> None:
    anna = telegram.prospect()
    await anna.text("/start")
    requests = await anna.press_data(data)
    assert isinstance(requests[0], AnswerCallbackQuery)
    assert isinstance(requests[1], SendMessage)
    assert requests[1].text == "Эта кнопка уже устарела. Вот актуальное меню:"
    assert labels(requests[1]) == MENU


async def test_a_sticker_or_a_very_long_text_gets_a_clear_answer(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.sticker()
    assert sent_texts(telegram.session)[-2:] == [
        "Я понимаю только текст и кнопки. Ответьте, пожалуйста, текстом.",
        "Напишите e-mail",
    ]
    await anna.text("x" * 4096)
    assert sent_texts(telegram.session)[-2:] == [
        "Сообщение слишком длинное. Напишите, пожалуйста, короче.",
        "Напишите e-mail",
    ]


async def test_group_messages_never_reach_the_prospect_flow(
    telegram: Harness, sqlite_db: Database
) -> None:
    group = {"id": MANAGERS_CHAT, "type": "supergroup", "title": "Менеджеры"}
    manager = {"id": 5, "is_bot": False, "first_name": "Олег"}
    requests = await telegram.feed(
        {"message": {"message_id": 1, "date": 0, "chat": group, "from": manager, "text": "/start"}}
    )
    assert requests == []
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.leads.find_by_identity("telegram", "5") is None


async def test_a_button_pressed_in_a_group_is_still_answered(telegram: Harness) -> None:
    group = {"id": MANAGERS_CHAT, "type": "supergroup", "title": "Менеджеры"}
    manager = {"id": 5, "is_bot": False, "first_name": "Олег"}
    message = {"message_id": 1, "date": 0, "chat": group, "text": "card"}
    requests = await telegram.feed(
        {
            "callback_query": {
                "id": "cq1",
                "from": manager,
                "chat_instance": "ci",
                "data": "whatever",
                "message": message,
            }
        }
    )
    assert [type(r) for r in requests] == [AnswerCallbackQuery]


def test_routers_are_in_a_fixed_order(telegram: Harness) -> None:
    names = [router.name for router in telegram.dispatcher.sub_routers]
    assert names == [
        "handlers.telegram.managers",
        "handlers.telegram.router",
        "handlers.telegram.router.fallback",
    ]


async def test_a_redelivered_update_is_handled_once(telegram: Harness) -> None:
    anna = telegram.prospect()
    update = Update.model_validate(
        {"update_id": 99_001, "message": anna.message(text="цена")}, context={"bot": telegram.bot}
    )
    first = await telegram.feed_raw(update)
    again = await telegram.feed_raw(update)
    assert len(first) == 1
    assert again == []


async def test_blocked_by_the_user_marks_the_lead_unreachable(
    telegram: Harness, sqlite_db: Database
) -> None:
    anna = telegram.prospect()
    await anna.text("/start")
    telegram.session.fail_next(SendMessage, 403, "Forbidden: bot was blocked by the user")
    await anna.text("цена")
    assert (await snapshot(sqlite_db, "1001")).stage == "blocked"


async def test_a_short_retry_after_is_waited_out_exactly(telegram: Harness) -> None:
    anna = telegram.prospect()
    telegram.session.fail_next(SendMessage, 429, "Too Many Requests: retry after 3", retry_after=3)
    await anna.text("/start")
    assert telegram.waits.seconds == [3]
    assert sent_texts(telegram.session) == ["Привет, Анна! Выберите:"] * 2  # failed, then sent


async def test_a_failure_while_replying_is_logged_and_apologised_for(
    telegram: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    anna = telegram.prospect()
    telegram.session.fail_next(SendMessage, 400, "Bad Request: something odd")
    await anna.text("/start")
    assert "update" in caplog.text
    assert "failed" in caplog.text
    assert sent_texts(telegram.session)[-1] == (
        "Простите, у нас что-то сломалось. Попробуйте ещё раз через минуту."
    )


async def test_a_flood_is_throttled_with_one_polite_answer(
    telegram: Harness, sqlite_db: Database
) -> None:
    anna = telegram.prospect()
    telegram.frozen = True  # twelve messages in the same instant
    for _ in range(12):
        await anna.text("цена")
    texts = sent_texts(telegram.session)
    assert texts.count("Вы пишете очень быстро. Подождите пару секунд, пожалуйста.") == 1
    assert texts.count("Внедрение от 30 000 ₽.") == 5  # the burst
    assert (await snapshot(sqlite_db, "1001")).events.count("faq_answered") == 5


async def test_mydata_sends_a_json_file(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start")
    [document] = [r for r in await anna.text("/mydata") if isinstance(r, SendDocument)]
    assert isinstance(document.document, BufferedInputFile)
    assert document.document.filename == "mydata.json"
    assert json.loads(document.document.data)["events"][0]["name"] == "start"


async def test_delete_asks_with_buttons_then_erases(
    telegram: Harness, sqlite_db: Database
) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.text("anna@example.com")
    [ask] = await anna.text("/delete")
    assert isinstance(ask, SendMessage)
    assert labels(ask) == ["Да, удалить", "Отмена"]
    await anna.press("Да, удалить")
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.leads.find_by_identity("telegram", "1001") is None


async def test_managers_chat_hears_of_a_new_lead_with_contacts(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.text("anna@example.com")
    assert sent_texts(telegram.session, MANAGERS_CHAT) == []  # through the outbox
    await telegram.deliver()
    [notice] = sent_texts(telegram.session, MANAGERS_CHAT)
    assert "оставил контакты" in notice
    assert "E-mail: anna@example.com" in notice


async def test_commands_are_registered_and_a_refusal_does_not_stop_the_bot(
    telegram: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await register_commands(telegram.bot)
    [request] = telegram.session.of(SetMyCommands)
    assert [c.command for c in request.commands] == [c.command for c in COMMANDS]
    telegram.session.fail_next(SetMyCommands, 404, "Not Found: method not found")
    await register_commands(telegram.bot)
    assert "could not register bot commands" in caplog.text


def test_a_malformed_update_in_a_batch_does_not_stall_polling(
    telegram: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    from aiogram.methods import GetUpdates

    session = TolerantSession()
    good = {
        "update_id": 7,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 1, "type": "private"},
            "text": "hi",
        },
    }
    bad = {"update_id": 8, "message": {"message_id": "not a number"}}
    content = json.dumps({"ok": True, "result": [good, bad]})
    response = session.check_response(telegram.bot, GetUpdates(), 200, content)
    assert [u.update_id for u in response.result or []] == [7, 8]
    assert (response.result or [])[1].message is None  # kept as an empty update: offset moves
    assert "malformed update 8 skipped" in caplog.text


def test_button_data_stays_within_64_bytes() -> None:
    assert len(press_data("a:" + "q" * 32 + ":10").encode()) <= 64


async def test_shutdown_waits_for_updates_in_flight() -> None:
    in_flight = InFlight()
    release = asyncio.Event()
    finished: list[str] = []

    async def handler(_event: object, _data: dict[str, object]) -> None:
        await release.wait()
        finished.append("reply sent")

    update = asyncio.create_task(in_flight(handler, Update(update_id=1), {}))
    await asyncio.sleep(0)  # the update is now being handled
    drain = asyncio.create_task(in_flight.drain(grace_seconds=30))
    await asyncio.sleep(0)
    assert not drain.done()  # shutdown waits...
    release.set()
    assert await drain == 1  # ...until the update finished
    assert finished == ["reply sent"]
    await update


async def test_the_managers_chat_gets_posts_with_buttons_and_edits_in_place(
    telegram: Harness,
) -> None:
    from aiogram.methods import EditMessageText

    from bot.messages import Button

    reference = await telegram.sender.post_to_managers(
        "Лид #1", ((Button("Взял", action="claim:1"),),)
    )
    [post] = [r for r in telegram.session.of(SendMessage) if int(r.chat_id) == MANAGERS_CHAT]
    assert labels(post) == ["Взял"]
    assert reference is not None
    chat, _, message_id = reference.partition(":")
    assert int(chat) == MANAGERS_CHAT  # named with its chat: ids count per chat
    await telegram.sender.edit_in_managers(reference, "Лид #1 — взял Олег")
    [edit] = telegram.session.of(EditMessageText)
    assert (edit.chat_id, edit.message_id, edit.text) == (
        MANAGERS_CHAT,
        int(message_id),
        "Лид #1 — взял Олег",
    )
    # A post of another (earlier) managers' chat is not touched.
    await telegram.sender.edit_in_managers(f"-42:{message_id}", "чужой чат")
    assert len(telegram.session.of(EditMessageText)) == 1
    telegram.session.fail_next(EditMessageText, 400, "Bad Request: message is not modified")
    await telegram.sender.edit_in_managers(reference, "Лид #1 — взял Олег")  # no error


async def test_retry_after_is_honoured_a_bounded_number_of_times(
    telegram: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    anna = telegram.prospect()
    for _ in range(3):
        telegram.session.fail_next(SendMessage, 429, "Too Many Requests", retry_after=2)
    await anna.text("/start")
    assert telegram.waits.seconds == [2, 2]  # waited twice, gave up on the third refusal
    assert "update" in caplog.text
    assert "failed" in caplog.text


@pytest.mark.parametrize(("chat_id", "answered"), [(MANAGERS_CHAT, True), (-100999, False)])
async def test_reload_works_only_in_the_managers_chat(
    telegram: Harness, chat_id: int, answered: bool
) -> None:
    group = {"id": chat_id, "type": "supergroup", "title": "Чат"}
    manager = {"id": 5, "is_bot": False, "first_name": "Олег"}
    requests = await telegram.feed(
        {
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": group,
                "from": manager,
                "text": "/reload",
                "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
            }
        }
    )
    texts = [r.text for r in requests if isinstance(r, SendMessage)]
    if answered:
        assert len(texts) == 1
        assert texts[0].startswith("Сценарий")
        assert "обновлён" in texts[0]
    else:
        assert texts == []
