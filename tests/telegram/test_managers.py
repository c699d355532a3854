"""The managers' group chat through the real dispatcher: card buttons, replies, commands."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from aiogram.types import ForceReply, InlineKeyboardMarkup
from sqlalchemy import select

from handlers.telegram.managers_chat import ManagersChatId
from storage.models import ChatMigration
from tests.telegram.conftest import MANAGERS_CHAT, Harness, press_data
from tests.telegram.mocked_bot import BOT_USER, sent_texts

GROUP = {"id": MANAGERS_CHAT, "type": "supergroup", "title": "Продажи"}
# The supergroup the managers' group was upgraded to, as Telegram names it.
UPGRADED = -1009876543210
SUPERGROUP = {"id": UPGRADED, "type": "supergroup", "title": "Продажи"}
UPGRADED_REFUSAL = "Bad Request: group chat was upgraded to a supergroup chat"
_ids = iter(range(10_000, 20_000))


def manager(user_id: int, first_name: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name}


def bot_post(request: SendMessage, message_id: int) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "date": int(datetime.now(UTC).timestamp()),
        "chat": GROUP,
        "from": BOT_USER.model_dump(),
        "text": request.text,
    }


async def group_text(
    h: Harness,
    user: dict[str, Any],
    text: str,
    reply_to: dict[str, Any] | None = None,
    chat: dict[str, Any] = GROUP,
) -> list[Any]:
    message: dict[str, Any] = {
        "message_id": next(_ids),
        "date": int(datetime.now(UTC).timestamp()),
        "chat": chat,
        "from": user,
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [
            {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
        ]
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    return await h.feed({"message": message})


async def press_card(
    h: Harness, user: dict[str, Any], card: dict[str, Any], data: str, chat: dict[str, Any] = GROUP
) -> list[Any]:
    query = {
        "id": str(next(_ids)),
        "from": user,
        "chat_instance": "group",
        "data": data,
        "message": {**card, "chat": chat},
    }
    return await h.feed({"callback_query": query})


async def qualified(h: Harness) -> tuple[dict[str, Any], SendMessage]:
    """A prospect takes the audit (a qualify rule); the card the worker posts, and its id."""
    anna = h.prospect()
    await anna.text("/start src_vkads-o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.text("Анна Петрова")
    await anna.contact("79991234567")
    await anna.press("больше 50")
    sent = await h.deliver()
    [card] = [r for r in sent if isinstance(r, SendMessage) and r.text.startswith("🔥 Лид #")]
    return bot_post(card, h.session.message_ids[id(card)]), card


def toast(requests: list[Any]) -> str | None:
    [answer] = [r for r in requests if isinstance(r, AnswerCallbackQuery)]
    return answer.text


async def test_a_manager_claims_the_card_and_a_second_cannot(telegram: Harness) -> None:
    card, request = await qualified(telegram)
    assert isinstance(request.reply_markup, InlineKeyboardMarkup)
    claim = request.reply_markup.inline_keyboard[0][0]
    assert claim.text == "✋ Взял"
    lead = request.text.split("#", 1)[1].split()[0]
    sent = await press_card(telegram, manager(501, "Иван"), card, claim.callback_data or "")
    assert toast(sent) == f"Лид #{lead} ваш."
    [edit] = [r for r in sent if isinstance(r, EditMessageText)]
    assert (edit.chat_id, edit.message_id) == (MANAGERS_CHAT, card["message_id"])
    assert "🤝 Взял: Иван" in edit.text
    sent = await press_card(telegram, manager(502, "Ольга"), card, claim.callback_data or "")
    assert toast(sent) == "Лида уже взял Иван."


async def test_card_data_from_outside_the_managers_chat_claims_nothing(
    telegram: Harness,
) -> None:
    card, _ = await qualified(telegram)
    lead = card["text"].split("#", 1)[1].split()[0]
    stranger = {"id": 777, "type": "private", "first_name": "Чужой"}
    sent = await press_card(
        telegram, manager(777, "Чужой"), card, press_data(f"h:claim:{lead}"), chat=stranger
    )
    # Answered (no spinning button), handled as a stale button of a prospect: nothing claimed.
    assert any(isinstance(r, AnswerCallbackQuery) for r in sent)
    assert not [r for r in sent if isinstance(r, EditMessageText)]
    assert "уже устарела" in " ".join(sent_texts(telegram.session, 777))
    sent = await press_card(telegram, manager(501, "Иван"), card, press_data(f"h:claim:{lead}"))
    assert toast(sent) == f"Лид #{lead} ваш."  # still unclaimed until a manager took it


async def test_won_asks_for_the_amount_by_reply(telegram: Harness) -> None:
    card, request = await qualified(telegram)
    lead = request.text.split("#", 1)[1].split()[0]
    await press_card(telegram, manager(501, "Иван"), card, press_data(f"h:claim:{lead}"))
    sent = await press_card(telegram, manager(501, "Иван"), card, press_data(f"h:won:{lead}"))
    [prompt] = [r for r in sent if isinstance(r, SendMessage)]
    assert isinstance(prompt.reply_markup, ForceReply)
    asked = bot_post(prompt, telegram.session.message_ids[id(prompt)])
    sent = await group_text(telegram, manager(501, "Иван"), "250000", reply_to=asked)
    assert sent_texts(telegram.session, MANAGERS_CHAT)[-1] == f"✅ Лид #{lead}: сделка на 250000."
    edits = [r for r in sent if isinstance(r, EditMessageText)]
    assert edits
    assert "✅ Сделка: 250000 (закрыл Иван)" in edits[-1].text


async def test_a_question_goes_to_managers_and_the_reply_comes_back(telegram: Harness) -> None:
    await qualified(telegram)
    anna = telegram.prospect()
    await anna.text("Вы работаете в Казахстане?")
    assert sent_texts(telegram.session, 1001)[-1] == (
        "Передали ваш вопрос менеджеру — ответим здесь же, в этом чате."
    )
    [post] = [r for r in await telegram.deliver() if isinstance(r, SendMessage)]
    assert post.text.startswith("💬 Анна Петрова (лид #")
    asked = bot_post(post, telegram.session.message_ids[id(post)])
    await group_text(telegram, manager(501, "Иван"), "Да, работаем.", reply_to=asked)
    await telegram.deliver()
    assert sent_texts(telegram.session, 1001)[-1] == "Да, работаем."


async def test_lead_and_stats_commands_answer_only_in_the_managers_chat(
    telegram: Harness,
) -> None:
    _, request = await qualified(telegram)
    lead = request.text.split("#", 1)[1].split()[0]
    await group_text(telegram, manager(501, "Иван"), "/lead +7 999 123-45-67")
    assert sent_texts(telegram.session, MANAGERS_CHAT)[-1].startswith(f"🔥 Лид #{lead}")
    await group_text(telegram, manager(501, "Иван"), "/lead nobody@example.com")
    assert sent_texts(telegram.session, MANAGERS_CHAT)[-1] == "Лид «nobody@example.com» не найден."
    await group_text(telegram, manager(501, "Иван"), "/stats")
    assert sent_texts(telegram.session, MANAGERS_CHAT)[-1].startswith("Воронка:")
    await group_text(telegram, manager(501, "Иван"), "/today")
    assert sent_texts(telegram.session, MANAGERS_CHAT)[-1].startswith("📅 Записи на ")
    # A prospect typing the same commands learns nothing about leads.
    outsider = telegram.prospect(user_id=2002, first_name="Борис")
    await outsider.text(f"/lead {lead}")
    await outsider.text("/stats")
    await outsider.text("/today")
    assert not any("Лид #" in text for text in sent_texts(telegram.session, 2002))


# ---- the managers' group upgraded to a supergroup


async def moves(h: Harness) -> list[tuple[str, str, str]]:
    async with h.funnel.db.reading() as session:
        rows = await session.execute(
            select(ChatMigration.channel, ChatMigration.from_chat, ChatMigration.to_chat)
        )
        return [tuple(row) for row in rows]


async def test_a_post_that_meets_the_upgrade_goes_to_the_supergroup_and_so_do_later_ones(
    telegram: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.session.fail_next(
        SendMessage, 400, UPGRADED_REFUSAL, migrate_to_chat_id=UPGRADED, chat_id=MANAGERS_CHAT
    )
    anna = telegram.prospect()
    await anna.text("/start src_vkads-o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.text("Анна Петрова")
    await anna.contact("79991234567")
    await anna.press("больше 50")
    with caplog.at_level(logging.WARNING):
        sent = await telegram.deliver()

    posts = [r for r in sent if isinstance(r, SendMessage) and int(r.chat_id) < 0]
    # Refused once in the old group, then each post went to the supergroup, none lost or twice.
    assert int(posts[0].chat_id) == MANAGERS_CHAT
    assert {int(r.chat_id) for r in posts[1:]} == {UPGRADED}
    assert sorted(r.text for r in posts[1:]) == sorted({r.text for r in posts})
    [card] = [r for r in posts[1:] if r.text.startswith("🔥 Лид #")]
    assert f"set MANAGERS_TELEGRAM_CHAT_ID={UPGRADED}" in caplog.text
    assert await moves(telegram) == [("telegram", str(MANAGERS_CHAT), str(UPGRADED))]

    # A manager claims the card in the supergroup: the managers' chat, and the card is edited.
    lead = card.text.split("#", 1)[1].split()[0]
    posted = {**bot_post(card, telegram.session.message_ids[id(card)]), "chat": SUPERGROUP}
    pressed = await press_card(
        telegram, manager(501, "Иван"), posted, press_data(f"h:claim:{lead}"), chat=SUPERGROUP
    )
    assert toast(pressed) == f"Лид #{lead} ваш."
    [edit] = [r for r in pressed if isinstance(r, EditMessageText)]
    assert (edit.chat_id, edit.message_id) == (UPGRADED, posted["message_id"])
    await group_text(telegram, manager(501, "Иван"), "/stats", chat=SUPERGROUP)
    assert sent_texts(telegram.session, UPGRADED)[-1].startswith("Воронка:")

    # After a restart with the old id in the settings, the bot still posts in the supergroup.
    restarted = ManagersChatId(MANAGERS_CHAT, telegram.funnel.db, telegram.funnel.clock)
    await restarted.restore()
    assert restarted.current == UPGRADED


@pytest.mark.parametrize(
    "service",
    [
        {"chat": GROUP, "migrate_to_chat_id": UPGRADED},  # the old group's last message
        {"chat": SUPERGROUP, "migrate_from_chat_id": MANAGERS_CHAT},  # the supergroup's first
    ],
)
async def test_the_upgrade_message_moves_the_managers_chat_before_any_post(
    telegram: Harness, service: dict[str, Any]
) -> None:
    await telegram.feed(
        {
            "message": {
                "message_id": next(_ids),
                "date": int(datetime.now(UTC).timestamp()),
                "from": manager(501, "Иван"),
                **service,
            }
        }
    )
    await telegram.sender.post_to_managers("🆕 Новый лид")

    assert telegram.sender.managers_chat_id == UPGRADED
    assert sent_texts(telegram.session, UPGRADED) == ["🆕 Новый лид"]
    assert sent_texts(telegram.session, MANAGERS_CHAT) == []
    assert await moves(telegram) == [("telegram", str(MANAGERS_CHAT), str(UPGRADED))]
