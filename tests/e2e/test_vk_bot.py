"""The VK channel end to end: `leadbot run` on VK alone as a real process, talking real HTTP to
the in-process VK API fake (tests/e2e/vk_api.py) by Bots Long Poll or by the Callback API; the
test acts as VK users and as managers in a VK conversation, and reads what the bot sent."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import SHIPPED_SCENARIO
from tests.e2e.bot_process import DELIVERY_TIMEOUT, RunningBot, eventually, free_port, start_vk_bot
from tests.e2e.vk_api import SentMessage, VkApiFake

AUDIT = "Час добра: бесплатный аудит процессов"
GUIDE = "Гайд: настройка Битрикс24 за вечер"
CONSULT = "Час консультации специалиста"
MENU = [AUDIT, GUIDE, CONSULT]
START = {"command": "start"}  # what VK's own "Начать" button sends
CONSENT = "согласие на обработку персональных данных"
MARKETING = "можно иногда присылать"
ASK_EMAIL = "Напишите e-mail"
STALE = "Эта кнопка уже неактуальна. Вот свежее меню:"  # messages.stale_button
QUESTION = "А вы работаете с Мегапланом в Казахстане?"
FORWARDED = "Передали ваш вопрос менеджеру — ответим здесь же, в этом чате."
GUIDE_FILE = SHIPPED_SCENARIO / "files" / "bitrix24-guide.pdf"
SECRET = "vk-callback-secret-0123456789"
CONFIRMATION = "c0nf1rm-3a7b"
# The delivery worker sends queued messages on its ticks (every second); generous for CI.


@contextlib.asynccontextmanager
async def running_bot(vk: VkApiFake, tmp_path: Path, **extra: str) -> AsyncIterator[RunningBot]:
    """The bot on VK, ready: long polling once it has asked for its long-poll server (updates
    pushed before that would be lost, as in VK), the Callback API once its web server answers.
    Stopped with SIGTERM in a thread: the fake serves from this event loop, and the bot may
    still call it while it stops."""
    bot = start_vk_bot(vk, tmp_path, **extra)
    try:
        with bot.log_on_failure():
            if "VK_CALLBACK_SECRET" in extra:
                await wait_for_http(bot)
            else:
                await vk.wait_for_calls("groups.getLongPollServer", 1, timeout=30)
            yield bot
    finally:
        code = await asyncio.to_thread(bot.stop)
        log = bot.log.read_text()
        assert code == 0, log[-6000:]
        assert vk.token not in log  # the community token never reaches the logs
        assert SECRET not in log


async def wait_for_http(bot: RunningBot) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{bot.http_url}/vk/callback") as response:
                    await response.read()
                    return  # anything (405 for GET) means the server listens
            except aiohttp.ClientConnectionError:
                if loop.time() >= deadline or bot.process.poll() is not None:
                    raise AssertionError(
                        f"the bot's web server at {bot.http_url} does not answer"
                    ) from None
                await asyncio.sleep(0.1)


def texts(messages: list[SentMessage]) -> list[str]:
    return [m.text for m in messages]


def lead_of(bot: RunningBot, user: int) -> int:
    [(lead_id,)] = bot.rows(
        "select lead_id from identities where channel = 'vk' and external_id = ?", str(user)
    )
    return int(lead_id)


async def press(vk: VkApiFake, peer: int, label: str, *, user_id: int | None = None) -> None:
    """Press a callback button and wait until the bot has answered the press."""
    pressed = vk.press(peer, label, user_id=user_id)
    assert pressed.kind == "callback", f"{label!r} is a {pressed.kind} button"
    assert pressed.event_id is not None
    await vk.wait_for_event_answer(pressed.event_id)


async def reply_after(
    vk: VkApiFake, peer: int, needle: str, act: Callable[[], Any]
) -> SentMessage:
    """Do `act` and wait for the bot's next message in `peer` containing `needle`."""
    before = len(vk.sent(peer))
    result = act()
    if asyncio.iscoroutine(result):
        await result
    messages = await vk.wait_for(peer, lambda ms: any(needle in m.text for m in ms[before:]))
    return next(m for m in messages[before:] if needle in m.text)


async def take_the_guide(vk: VkApiFake, user: int, *, from_link: bool = False) -> SentMessage:
    """The guide offer to the delivered document: consent, marketing consent, an e-mail."""
    if from_link:  # vk.me/<community>?ref=src_vkads-o_guide: the offer opens at once
        vk.push_message(user, "Начать", payload=START, ref="src_vkads-o_guide", ref_source="ad")
        pitch, ask = await vk.wait_for(user, 2)
        assert pitch.text.startswith(f"{GUIDE}\n\nPDF-гайд на 12 шагов")
    else:
        await vk.wait_for(user, 1)
        await reply_after(vk, user, CONSENT, lambda: press(vk, user, GUIDE))
        pitch, ask = vk.sent(user)[-2:]
        assert pitch.text.startswith(f"{GUIDE}\n\nPDF-гайд")
    assert CONSENT in ask.text
    assert ask.labels() == ["Даю согласие", "Не сейчас"]
    marketing = await reply_after(vk, user, MARKETING, lambda: press(vk, user, "Даю согласие"))
    assert marketing.labels() == ["Да, присылайте", "Нет, спасибо"]
    email = await reply_after(vk, user, ASK_EMAIL, lambda: press(vk, user, "Да, присылайте"))
    assert email.text == "Напишите e-mail — и гайд ваш 📘"
    assert email.labels() == ["В меню"]  # typed, not pressed; the button is the way out
    vk.push_message(user, "anna@company.ru")
    messages = await vk.wait_for(user, lambda ms: any(m.attachments for m in ms))
    [guide] = [m for m in messages if m.attachments]
    return guide


# ------------------------------------------------------------------------------ the funnel


async def test_the_shipped_funnel_from_start_to_the_guide_in_vk(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    vk = vk_api
    async with running_bot(vk, tmp_path) as bot:
        anna = vk.new_user_id()
        vk.add_user(anna, "Анна", "Смирнова")
        vk.push_message(anna, "Начать", payload=START)
        [menu] = await vk.wait_for(anna, 1)
        assert menu.text.startswith("Здравствуйте, Анна! 👋\nМы — «CRM-Мастерская»")
        assert menu.text.rstrip().endswith("Выберите, с чего начнём:")
        assert menu.labels() == MENU
        assert menu.inline
        assert {menu.button(label)["type"] for label in MENU} == {"callback"}

        guide = await take_the_guide(vk, anna)
        assert guide.text.startswith("Держите гайд 📘 Начните с шага 3 «Воронка продаж»")
        assert guide.labels() == ["В меню"]
        [attachment] = guide.attachments
        assert attachment.startswith(f"doc-{vk.group_id}_")
        doc = vk.doc(attachment)
        assert (doc.title, doc.ext, doc.peer_id) == ("bitrix24-guide.pdf", "pdf", anna)
        assert doc.content == GUIDE_FILE.read_bytes()
        [upload_server] = vk.recorded("docs.getMessagesUploadServer")
        assert upload_server["peer_id"] == str(anna)
        assert len(vk.recorded("docs.save")) == 1

        # Every press was answered (the spinner stops) with no snackbar: 3 presses.
        answers = [a for a in vk.event_answers() if a.user_id == anna]
        assert len(answers) == 3
        assert all(a.peer_id == anna and a.event_data is None for a in answers)
        # Answers to the person's own messages and presses: inside VK's 24 hours, no intent.
        assert [m.intent for m in vk.sent(anna)] == [None] * len(vk.sent(anna))
        # Each keyed by its update and place in the reply: VK would drop a repeat.
        random_ids = [m.random_id for m in vk.sent(anna)]
        assert 0 not in random_ids
        assert len(set(random_ids)) == len(random_ids)

        # A second person comes by an ad's link that names the source and the offer.
        oleg = vk.new_user_id()
        guide = await take_the_guide(vk, oleg, from_link=True)
        assert guide.text.startswith("Держите гайд 📘")
        assert vk.doc(guide.attachments[0]).peer_id == oleg  # uploaded for this person
        assert [m.intent for m in vk.sent(oleg)] == [None] * len(vk.sent(oleg))
        assert not any(m.peer_id != oleg for m in vk.sent(oleg))

        stored = bot.rows(
            "select i.external_id, l.stage, l.source, l.offer from leads l "
            "join identities i on i.lead_id = l.id where i.channel = 'vk' order by l.id"
        )
        assert stored == [
            (str(anna), "warming", None, "guide"),
            (str(oleg), "warming", "vkads", "guide"),
        ]
        assert bot.rows("select count(*) from contacts where kind = 'email'") == [(2,)]
        # The warm-up chain waits in the outbox (its first step is an hour away).
        steps = bot.rows(
            "select status from outbox where kind = 'step' and lead_id = ?",
            lead_of(bot, anna),
        )
        assert steps == [("pending",)]


async def test_a_forged_callback_is_answered_with_the_stale_button_text(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    vk = vk_api
    async with running_bot(vk, tmp_path) as bot:
        user = vk.new_user_id()
        vk.push_message(user, "Начать", payload=START)
        await vk.wait_for(user, 1)
        forged: list[dict[str, Any]] = [
            {"a": 5},
            {"evil": 1},
            {"a": "o:no_such_offer"},
            {"a": "h:claim:1"},  # a managers' card action, pressed in a private chat
        ]
        for number, payload in enumerate(forged, start=1):
            event_id = vk.push_event(user, payload)
            answer = await vk.wait_for_event_answer(event_id)
            assert (answer.user_id, answer.peer_id) == (user, user)
            messages = await vk.wait_for(user, lambda ms, n=number: texts(ms).count(STALE) == n)
            stale = messages[-1]
            assert stale.text == STALE
            assert stale.labels() == MENU  # with the menu, so the person can go on
        assert len(vk.sent(user)) == 1 + len(forged)
        assert bot.rows("select count(*) from contacts") == [(0,)]


# ------------------------------------------------------------------------------ Callback API


async def test_the_callback_api_confirms_refuses_a_forgery_and_drops_a_repeat(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    vk = vk_api
    port = free_port()
    settings = {
        "VK_CALLBACK_SECRET": SECRET,
        "VK_CONFIRMATION_CODE": CONFIRMATION,
        "HTTP_PORT": str(port),
    }
    async with (
        running_bot(vk, tmp_path, **settings) as bot,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
    ):
        url = f"http://127.0.0.1:{port}/vk/callback"

        async def post(body: dict[str, Any]) -> tuple[int, str]:
            async with http.post(url, json=body) as response:
                return response.status, await response.text()

        assert await post(vk.callback_event("confirmation", secret=None)) == (200, CONFIRMATION)

        user = vk.new_user_id()
        obj = vk.message_new_object(user, "Начать", payload=START)
        for secret in (None, "not-the-secret"):
            status, _ = await post(vk.callback_event("message_new", obj, secret=secret))
            assert status == 403
        assert vk.sent(user) == []
        assert vk.calls("messages.send") == []
        assert bot.rows("select count(*) from identities") == [(0,)]
        assert bot.rows("select count(*) from inbound_events") == [(0,)]

        body = vk.callback_event("message_new", obj, secret=SECRET, event_id="a1b2c3d4e5")
        assert await post(body) == (200, "ok")
        [menu] = vk.sent(user)  # `ok` came once the event was handled
        assert menu.labels() == MENU
        assert await post(body) == (200, "ok")  # VK sends it again: no second reply
        assert len(vk.sent(user)) == 1
        assert bot.rows("select count(*) from events where name = 'start'") == [(1,)]

        # A press through the Callback API is answered as well.
        pressed = vk.message_event_object(user, menu.payload(GUIDE) or {})
        body = vk.callback_event("message_event", pressed, secret=SECRET)
        assert await post(body) == (200, "ok")
        [answer] = vk.event_answers()
        assert answer.event_id == pressed["event_id"]
        assert CONSENT in vk.last_sent(user).text
        assert vk.calls("groups.getLongPollServer") == []  # no long polling beside it


# ------------------------------------------------------------------------------ blocked


async def test_error_901_marks_the_lead_unreachable_and_the_bot_stops_writing(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    """A person who took the guide (a warm-up chain starts) closes their messages; a
    manager's answer from the outbox meets VK's 901: the lead is blocked, its queue cancelled,
    and the next answer is refused in the managers' chat without a call to VK."""
    vk = vk_api
    chat = vk.new_chat_peer_id()
    async with running_bot(vk, tmp_path, MANAGERS_VK_PEER_ID=str(chat)) as bot:
        user, manager = vk.new_user_id(), vk.new_user_id()
        vk.add_user(manager, "Ольга", "Петрова")
        vk.push_message(user, "Начать", payload=START)
        await take_the_guide(vk, user)
        lead_id = lead_of(bot, user)
        await reply_after(vk, user, FORWARDED, lambda: vk.push_message(user, QUESTION))

        def question_posts(ms: list[SentMessage]) -> list[SentMessage]:
            return [m for m in ms if m.text.startswith("💬 ") and QUESTION in m.text]

        messages = await vk.wait_for(
            chat, lambda ms: bool(question_posts(ms)), timeout=DELIVERY_TIMEOUT
        )
        [post] = question_posts(messages)
        assert f"(лид #{lead_id}, стадия warming)" in post.text
        # The post is recorded a moment after it is out; a manager answers seconds later.
        await eventually(
            lambda: bot.rows("select 1 from manager_messages where kind = 'question'"),
            "the post to be recorded",
        )
        # The guide's warm-up chain runs; its first step waits in the outbox.
        assert bot.rows(
            "select sequence, status from sequence_runs where lead_id = ?", lead_id
        ) == [("guide_warmup", "active")]
        assert bot.rows(
            "select status from outbox where kind = 'step' and lead_id = ?", lead_id
        ) == [("pending",)]

        vk.fail("messages.send", 901, peer_id=user, times=None)  # the person closed messages
        sent_before = len(vk.sent(user))
        vk.push_message(
            manager, "Да, работаем", peer_id=chat, reply_to=post.conversation_message_id
        )

        def unreachable() -> list[tuple[Any, ...]]:
            return bot.rows(
                "select stage, unreachable_at from leads "
                "where id = ? and unreachable_at is not null",
                lead_id,
            )

        [(stage, _)] = await eventually(unreachable, "the lead to be marked unreachable")
        assert stage == "blocked"
        attempts = [c for c in vk.calls("messages.send") if c.params.get("peer_id") == str(user)]
        assert [c.error_code for c in attempts if not c.ok] == [901]
        assert len(vk.sent(user)) == sent_before
        relay = await eventually(
            lambda: bot.rows(
                "select status, last_error from outbox where kind = 'manager_reply' "
                "and lead_id = ? and status != 'sending'",
                lead_id,
            ),
            "the manager's answer to be settled",
        )
        assert relay == [("cancelled", "blocked")]
        # The warm-up is over: its chain stopped, its queued step cancelled.
        assert bot.rows(
            "select status, stop_reason from sequence_runs where lead_id = ?", lead_id
        ) == [("stopped", "blocked")]
        assert bot.rows(
            "select status from outbox where kind = 'step' and lead_id = ?", lead_id
        ) == [("cancelled",)]
        assert bot.rows(
            "select count(*) from events where name = 'blocked' and lead_id = ?", lead_id
        ) == [(1,)]

        # The next answer is not even tried: the chat is told why.
        refused = await reply_after(
            vk,
            chat,
            "заблокировал бота",
            lambda: vk.push_message(
                manager, "Алло?", peer_id=chat, reply_to=post.conversation_message_id
            ),
        )
        assert refused.text == f"Лид #{lead_id} заблокировал бота: ответ не отправлен."
        again = [c for c in vk.calls("messages.send") if c.params.get("peer_id") == str(user)]
        assert len(again) == len(attempts)
        assert bot.rows(
            "select count(*) from outbox where lead_id = ? and status = 'pending'", lead_id
        ) == [(0,)]


# ------------------------------------------------------------------------------ managers


async def take_the_audit(vk: VkApiFake, user: int) -> None:
    """The shipped audit offer: consent, name, a typed phone and three choices; it hands the
    lead over to the managers (its `handoff:` in offers.yaml)."""
    vk.push_message(user, "Начать", payload=START)
    await vk.wait_for(user, 1)
    await reply_after(vk, user, CONSENT, lambda: press(vk, user, AUDIT))
    await reply_after(vk, user, MARKETING, lambda: press(vk, user, "Даю согласие"))
    await reply_after(vk, user, "Как к вам обращаться?", lambda: press(vk, user, "Нет, спасибо"))
    await reply_after(vk, user, "номер телефона", lambda: vk.push_message(user, "Мария"))
    size = await reply_after(
        vk, user, "Сколько сотрудников", lambda: vk.push_message(user, "+7 916 555-12-34")
    )
    assert size.labels() == ["До 10", "10–50", "Больше 50", "Пропустить", "В меню"]
    await reply_after(vk, user, "Какая у вас роль", lambda: press(vk, user, "10–50"))
    await reply_after(
        vk, user, "В чём сейчас ведёте клиентов", lambda: press(vk, user, "Принимаю решение")
    )
    times = await reply_after(
        vk, user, "Выберите удобное время", lambda: press(vk, user, "Битрикс24")
    )
    # The first free time, booked with VK's inline buttons (the times follow the real clock).
    first = times.labels()[0]
    assert first[:3] in ("пн ", "вт ", "ср ", "чт ", "пт ")
    assert times.labels()[-2:] == ["Пропустить", "В меню"]
    await reply_after(vk, user, "Вы записаны на «Час добра»", lambda: press(vk, user, first))


async def test_managers_in_a_vk_conversation_claim_a_card_and_redeem(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    vk = vk_api
    chat = vk.new_chat_peer_id()
    async with running_bot(vk, tmp_path, MANAGERS_VK_PEER_ID=str(chat)) as bot:
        maria, olga, ivan = vk.new_user_id(), vk.new_user_id(), vk.new_user_id()
        vk.add_user(olga, "Ольга", "Петрова")
        vk.add_user(ivan, "Иван", "Смирнов")
        await take_the_audit(vk, maria)
        lead_id = lead_of(bot, maria)

        card_start = re.compile(rf"^🔥 Лид #{lead_id}(?!\d)")

        def cards(ms: list[SentMessage]) -> list[SentMessage]:
            return [m for m in ms if card_start.match(m.text)]

        messages = await vk.wait_for(chat, lambda ms: bool(cards(ms)), timeout=DELIVERY_TIMEOUT)
        [card] = cards(messages)
        assert "Мария" in card.text
        assert "📞 +79165551234" in card.text
        assert f"VK: https://vk.com/id{maria}" in card.text
        assert "🟢 Ждёт менеджера" in card.text
        assert card.message_id == 0  # a conversation: the bot knows it by its cmid only
        assert card.labels() == ["✋ Взял", "🚫 Не наш клиент"]
        assert card.button("✋ Взял")["type"] == "callback"
        assert card.payload("✋ Взял") == {"a": f"h:claim:{lead_id}"}

        # Olga takes it: her snackbar, and the card is edited in place by its cmid.
        pressed = vk.press(chat, "✋ Взял", user_id=olga)
        assert pressed.event_id is not None
        answer = await vk.wait_for_event_answer(pressed.event_id)
        assert (answer.user_id, answer.peer_id) == (olga, chat)
        assert answer.snackbar == f"Лид #{lead_id} ваш."

        def claimed(ms: list[SentMessage]) -> bool:
            return any("🤝 Взял: Ольга" in m.text for m in cards(ms))

        [edited] = cards(await vk.wait_for(chat, claimed))
        assert edited.conversation_message_id == card.conversation_message_id
        assert "🟢 Ждёт менеджера" not in edited.text
        assert edited.labels() == ["✅ Сделка", "❌ Отказ"]
        [edit, *_] = vk.edits(chat)
        assert edit.conversation_message_id == card.conversation_message_id
        assert edit.params["conversation_message_id"] == str(card.conversation_message_id)
        assert "message_id" not in edit.params
        assert bot.rows("select status from handoffs where lead_id = ?", lead_id) == [("claimed",)]

        # Ivan presses the same button on the card as his screen still showed it: too late.
        late = vk.push_event(
            ivan,
            {"a": f"h:claim:{lead_id}"},
            conversation_message_id=card.conversation_message_id,
            peer_id=chat,
        )
        assert (await vk.wait_for_event_answer(late)).snackbar == "Лида уже взял Ольга."

        # A press the bot never made, in the managers' chat: answered, nothing changes.
        forged = vk.push_event(
            olga, {"evil": 1}, conversation_message_id=card.conversation_message_id, peer_id=chat
        )
        assert (await vk.wait_for_event_answer(forged)).snackbar == "Эта кнопка устарела."

        # A code nobody issued.
        unknown = await reply_after(
            vk,
            chat,
            "не найден",
            lambda: vk.push_message(olga, "/redeem UNKNOWN-CODE", peer_id=chat),
        )
        assert unknown.text == "❓ Код UNKNOWN-CODE не найден. Проверьте, нет ли опечатки."
        # Nothing of the managers' chat reached the prospect.
        assert not any("Лид #" in m.text for m in vk.sent(maria))


async def test_a_person_who_forbids_messages_is_not_written_to_any_more(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    """VK's `message_deny` (the person switched the community's messages off) stops
    everything at once, as a block does, before any send fails."""
    vk = vk_api
    async with running_bot(vk, tmp_path) as bot:
        user = vk.new_user_id()
        vk.push_message(user, "Начать", payload=START)
        await take_the_guide(vk, user)
        lead_id = lead_of(bot, user)

        vk.push_update("message_deny", {"user_id": user, "key": ""})

        [(stage,)] = await eventually(
            lambda: bot.rows(
                "select stage from leads where id = ? and unreachable_at is not null", lead_id
            ),
            "the lead to be marked unreachable",
        )
        assert stage == "blocked"
        assert bot.rows(
            "select status from outbox where kind = 'step' and lead_id = ?", lead_id
        ) == [("cancelled",)]


async def test_no_text_sends_a_vk_person_to_a_start_command_vk_does_not_have(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    """VK has no /start to press: declining the consent leaves the menu buttons to come back
    by, and the erasure notice says to just write; writing again starts afresh."""
    vk = vk_api
    async with running_bot(vk, tmp_path):
        user = vk.new_user_id()
        vk.push_message(user, "Начать", payload=START)
        await vk.wait_for(user, 1)
        await reply_after(vk, user, CONSENT, lambda: press(vk, user, CONSULT))
        declined = await reply_after(
            vk, user, "Без согласия", lambda: press(vk, user, "Не сейчас")
        )
        assert "/start" not in declined.text
        assert declined.labels() == MENU
        # The menu under the refusal is the way back: the consent is asked again.
        await reply_after(vk, user, CONSENT, lambda: press(vk, user, CONSULT))

        confirm = await reply_after(
            vk, user, "Удалить все ваши данные", lambda: vk.push_message(user, "/delete")
        )
        deleted = await reply_after(
            vk, user, "ваши данные удалены", lambda: press(vk, user, confirm.labels()[0])
        )
        assert "/start" not in deleted.text
        assert "просто напишите нам" in deleted.text
        greeting = await reply_after(
            vk, user, "Здравствуйте", lambda: vk.push_message(user, "Здравствуйте!")
        )
        assert greeting.labels() == MENU
