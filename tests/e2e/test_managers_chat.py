"""The managers' group chat end to end: `leadbot run` as a real process against the Telegram
emulator, with its events API served over HTTP. A prospect takes the audit offer (which
qualifies), the website reports what they did, one lead card reaches the managers, one manager
claims it and a second cannot; a question the FAQ does not know goes to the managers and the
manager's reply comes back to the prospect."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.bot_process import MANAGERS, RunningBot, eventually, start_bot
from tests.e2e.telegram import BotMessage, TelegramClient

AUDIT = "Час добра: бесплатный аудит процессов"
API_TOKEN = "site-events-token-0123456789abcdef"
CARD = "🔥 Лид #"
QUESTION = "А вы работаете с Мегапланом в Казахстане?"
FORWARDED = "Передали ваш вопрос менеджеру — ответим здесь же, в этом чате."
# Two managers of the managers' chat.
OLGA: dict[str, Any] = {"user_id": 90_001, "first_name": "Ольга", "last_name": "Петрова"}
IVAN: dict[str, Any] = {"user_id": 90_002, "first_name": "Иван", "last_name": "Смирнов"}
QUIET = 1.5  # seconds: room for a wrong edit of a card to land


@pytest.fixture
async def bot(telegram_emulator: TelegramClient, tmp_path: Path) -> AsyncIterator[RunningBot]:
    """The bot in long-polling mode with the managers' chat and the events API."""
    running = start_bot(telegram_emulator, tmp_path, API_TOKEN=API_TOKEN)
    try:
        await telegram_emulator.wait_for_calls("deleteWebhook", 1, timeout=30)
        yield running
    finally:
        code = running.stop()
        log = running.log.read_text()
        assert code == 0, log
        assert telegram_emulator.token.split(":")[1] not in log  # no secret reaches the logs
        assert API_TOKEN not in log


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def post_event(
    http: aiohttp.ClientSession, bot: RunningBot, body: dict[str, Any], token: str | None
) -> tuple[int, Any]:
    """POST /api/events, waiting for the API to listen (it starts beside the polling)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            async with http.post(f"{bot.http_url}/api/events", json=body, headers=headers) as r:
                return r.status, await r.json(content_type=None)
        except aiohttp.ClientConnectionError:
            if loop.time() >= deadline or bot.process.poll() is not None:
                raise AssertionError(
                    f"the events API at {bot.http_url} does not answer; the bot's log:\n"
                    f"{bot.log.read_text()[-3000:]}"
                ) from None
            await asyncio.sleep(0.1)


def cards(messages: list[BotMessage], lead_id: int | None = None) -> list[BotMessage]:
    """Lead cards (of one lead, if given) among the managers' chat messages."""
    number = str(lead_id) if lead_id is not None else r"\d+"
    pattern = re.compile(rf"^{re.escape(CARD)}{number}(?!\d)")
    return [m for m in messages if not m.deleted and pattern.match(m.text or "")]


async def take_the_audit(tg: TelegramClient, chat: int) -> None:
    """The shipped audit offer from /start to its confirmation: consent, name, phone and three
    choices; the audit is a person's time, so its delivery hands the lead over (`handoff:`)."""
    await tg.send_command(chat, "/start src_site", first_name="Мария")
    await tg.wait_for(chat, 1)
    await tg.press_button(chat, AUDIT, first_name="Мария")
    await tg.wait_for(chat, "согласие на обработку персональных данных")
    await tg.press_button(chat, "Даю согласие", first_name="Мария")
    await tg.wait_for(chat, "можно иногда присылать")
    await tg.press_button(chat, "Нет, спасибо", first_name="Мария")
    await tg.wait_for(chat, "Как к вам обращаться?")
    await tg.send_text(chat, "Мария", first_name="Мария")
    await tg.wait_for(chat, "номер телефона")
    await tg.share_contact(chat, "+7 916 555-12-34", first_name="Мария")
    await tg.wait_for(chat, "Сколько сотрудников")
    await tg.press_button(chat, "10–50", first_name="Мария")
    await tg.wait_for(chat, "Какая у вас роль")
    await tg.press_button(chat, "Принимаю решение", first_name="Мария")
    await tg.wait_for(chat, "В чём сейчас ведёте клиентов")
    await tg.press_button(chat, "Битрикс24", first_name="Мария")
    await tg.wait_for(chat, "Выберите удобное время")
    await tg.press_button(chat, "Пропустить", first_name="Мария")  # the manager calls
    await tg.wait_for(chat, "Вы записаны на «Час добра»")


async def test_a_qualified_lead_gets_one_card_that_one_manager_claims(
    telegram_emulator: TelegramClient, bot: RunningBot, http: aiohttp.ClientSession
) -> None:
    with bot.log_on_failure():
        tg = telegram_emulator
        chat = tg.new_chat_id()
        await take_the_audit(tg, chat)
        [(lead_id,)] = bot.rows(
            "select lead_id from identities where channel = 'telegram' and external_id = ?",
            str(chat),
        )

        # The audit qualified the lead: its card reaches the managers' chat.
        messages = await tg.wait_for(MANAGERS, lambda ms: bool(cards(ms, lead_id)), timeout=15)
        [card] = cards(messages, lead_id)
        text = card.text or ""
        assert "Мария" in text
        assert "+79165551234" in text
        assert "Почему: " in text
        assert "🟢 Ждёт менеджера" in text
        assert card.labels() == ["✋ Взял", "🚫 Не наш клиент"]
        assert card.callback_data("✋ Взял") == f"p|h:claim:{lead_id}"

        # The website reports what the lead did there; the lead was handed over already.
        [(score,)] = bot.rows("select score from leads where id = ?", lead_id)
        answers = []
        for event in ["case_read", "webinar_registered", *["pricing_viewed"] * 3]:
            status, body = await post_event(
                http, bot, {"event": event, "lead_id": lead_id}, API_TOKEN
            )
            assert status == 200, (event, body)
            answers.append(body)
        assert [a["lead_id"] for a in answers] == [lead_id] * 5
        assert [a["score"] for a in answers] == [score + n for n in (10, 30, 35, 40, 45)]
        assert [a["qualified"] for a in answers] == [False] * 5  # qualified once, by the audit
        assert all(isinstance(a["stage"], str) and a["stage"] for a in answers)
        wrong, refused = await post_event(
            http, bot, {"event": "case_read", "lead_id": lead_id}, "not-the-token"
        )
        missing, _ = await post_event(http, bot, {"event": "case_read", "lead_id": lead_id}, None)
        assert (wrong, missing) == (401, 401), refused

        # Still exactly one card: the events matched another qualify rule, but a lead is handed
        # over once. The API answers after what an event queues (a card too), so once no card
        # waits to go out, a twin would be in the chat.
        unsent = (
            "select 1 from outbox where kind = 'lead_card' and status in ('pending', 'sending')"
        )
        await eventually(lambda: not bot.rows(unsent), "no card waiting to go out")
        assert bot.rows("select status from outbox where kind = 'lead_card'") == [("sent",)]
        assert [m.message_id for m in cards(await tg.bot_messages(MANAGERS))] == [card.message_id]

        # Olga claims the lead: her toast, and the card shows her with the next buttons.
        olga_press = await tg.press_group_button(MANAGERS, card, "✋ Взял", **OLGA)
        olga_toast = await tg.wait_for_callback_answer(olga_press)
        assert olga_toast.text == f"Лид #{lead_id} ваш."

        def claimed(ms: list[BotMessage]) -> bool:
            return any("🤝 Взял: Ольга Петрова" in (m.text or "") for m in cards(ms, lead_id))

        [claimed_card] = cards(await tg.wait_for(MANAGERS, claimed), lead_id)
        assert claimed_card.message_id == card.message_id  # edited in place
        assert "🟢 Ждёт менеджера" not in (claimed_card.text or "")
        assert claimed_card.labels() == ["✅ Сделка", "❌ Отказ"]

        # Ivan presses "✋ Взял" on the card as it was on his screen a moment ago: too late.
        ivan_press = await tg.press_group(
            MANAGERS, card.callback_data("✋ Взял"), card.message_id, **IVAN
        )
        ivan_toast = await tg.wait_for_callback_answer(ivan_press)
        assert ivan_toast.text == "Лида уже взял Ольга Петрова."
        await asyncio.sleep(QUIET)  # room for a wrong edit to land
        after = await tg.bot_message(MANAGERS, card.message_id)
        assert (after.text, after.reply_markup, len(after.edits)) == (
            claimed_card.text,
            claimed_card.reply_markup,
            len(claimed_card.edits),
        )
        assert [m.message_id for m in cards(await tg.bot_messages(MANAGERS))] == [card.message_id]


async def test_an_unknown_question_goes_to_the_managers_and_their_reply_comes_back(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    with bot.log_on_failure():
        tg = telegram_emulator
        chat = tg.new_chat_id()
        await take_the_audit(tg, chat)

        await tg.send_text(chat, QUESTION, first_name="Мария")
        await tg.wait_for(chat, FORWARDED)

        def question_posts(ms: list[BotMessage]) -> list[BotMessage]:
            return [
                m for m in ms if (m.text or "").startswith("💬 ") and QUESTION in (m.text or "")
            ]

        [post] = question_posts(
            await tg.wait_for(MANAGERS, lambda ms: bool(question_posts(ms)), timeout=15)
        )
        before = len(await tg.bot_messages(chat))
        # The post is recorded a moment after it is out; a manager answers seconds later.
        await eventually(
            lambda: bot.rows("select 1 from manager_messages where kind = 'question'"),
            "the post to be recorded",
        )
        await tg.send_group_text(MANAGERS, "Да, работаем", reply_to=post, **OLGA)

        messages = await tg.wait_for(
            chat, lambda ms: any(m.text == "Да, работаем" for m in ms[before:]), timeout=10
        )
        [relayed] = [m for m in messages[before:] if m.text == "Да, работаем"]
        assert relayed.method == "sendMessage"


async def test_a_burst_of_answers_past_the_chat_limit_arrives_once_each_in_order(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    with bot.log_on_failure():
        tg = telegram_emulator
        chat = tg.new_chat_id()
        # A question straight after /start goes to the managers as after the audit (the test
        # above): the same post, the same relay of the answers.
        await tg.send_command(chat, "/start src_site", first_name="Мария")
        await tg.wait_for(chat, 1)
        await tg.send_text(chat, QUESTION, first_name="Мария")
        await tg.wait_for(chat, FORWARDED)
        messages = await tg.wait_for(
            MANAGERS, lambda ms: any(QUESTION in (m.text or "") for m in ms)
        )
        [post] = [m for m in messages if QUESTION in (m.text or "")]
        await eventually(
            lambda: bot.rows("select 1 from manager_messages where kind = 'question'"),
            "the post to be recorded",
        )
        # Telegram tightens a bot's limits as it sees fit: one message every two seconds in a
        # chat, no burst, is stricter than the bot's own pacing of one a second. Four answers
        # at once: each after the first meets the limit, and two wait behind a refused one.
        await tg.set_limits(chat_per_second=0.5, chat_burst=1)
        before = len(await tg.bot_messages(chat))
        answers = [f"Ответ {n}: да, работаем, подробности ниже." for n in range(1, 5)]
        for answer in answers:
            await tg.send_group_text(MANAGERS, answer, reply_to=post, **OLGA)

        await tg.wait_for(chat, lambda ms: len(ms) - before >= len(answers), timeout=60)
        # Every answer recorded as sent: nothing is left to go out again, so a message sent
        # twice would be in the chat by now.
        relayed = "select status from outbox where kind = 'manager_reply'"
        await eventually(
            lambda: bot.rows(relayed) == [("sent",)] * len(answers), "the answers recorded sent"
        )

        assert [m.text for m in (await tg.bot_messages(chat))[before:]] == answers
        refused = [
            c
            for c in await tg.calls("sendMessage")
            if c.get("error_code") == 429 and c["params"].get("chat_id") == chat
        ]
        assert refused  # the bot was pushed past the limit...
        assert await tg.violations() == []  # ...and never sent inside a retry_after
