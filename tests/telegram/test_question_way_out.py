"""The way out of an offer's question as Telegram renders it: inline under a choice, and as
keys beside the share-contact key under a phone question (one message, one keyboard)."""

from __future__ import annotations

from aiogram.methods import SendMessage
from aiogram.types import InlineKeyboardMarkup, ReplyKeyboardMarkup

from storage.database import Database
from tests.prospect import snapshot
from tests.telegram.conftest import Harness

MENU = ["Бесплатный аудит", "Гайд по настройке", "Чек-лист", "Сайт"]


async def test_the_phone_question_has_a_menu_key_that_works(
    telegram: Harness, sqlite_db: Database
) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    [ask] = await anna.text("Анна")
    assert isinstance(ask, SendMessage)
    assert isinstance(ask.reply_markup, ReplyKeyboardMarkup)
    rows = ask.reply_markup.keyboard
    assert [[(k.text, bool(k.request_contact)) for k in row] for row in rows] == [
        [("Отправить номер", True)],
        [("В меню", False)],
    ]

    [menu] = await anna.text("В меню")  # what the key sends
    assert isinstance(menu, SendMessage)
    assert menu.text == "Привет, Анна! Выберите:"
    assert isinstance(menu.reply_markup, InlineKeyboardMarkup)
    assert [b.text for row in menu.reply_markup.inline_keyboard for b in row] == MENU
    assert (await snapshot(sqlite_db, "1001")).awaiting is None


async def test_a_choice_question_shows_the_way_out_inline(telegram: Harness) -> None:
    anna = telegram.prospect()
    await anna.text("/start o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.text("Анна")
    [ask] = await anna.contact("79991234567")
    assert isinstance(ask, SendMessage)
    assert isinstance(ask.reply_markup, InlineKeyboardMarkup)
    last_row = ask.reply_markup.inline_keyboard[-1]
    assert [(b.text, b.callback_data) for b in last_row] == [("В меню", "p|menu")]
