"""A scenario text that grows past 4096 characters once its placeholders are filled reaches the
prospect whole, in order, as several messages, with the buttons (and the file) under the last
one; a broadcast of such a text is sent at its first attempt. `leadbot run` as a real process
against the Telegram emulator and the VK API fake, which refuse a text over 4096 characters as
the platforms do; a message VK still refuses fails its row at once, with VK's reason."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import SHIPPED_SCENARIO
from tests.e2e.bot_process import (
    RunningBot,
    eventually,
    run_broadcast,
    start_bot,
    start_vk_bot,
)
from tests.e2e.telegram import BotMessage, TelegramClient
from tests.e2e.vk_api import SentMessage, VkApiFake

# A long first name (Telegram allows 64 characters): each {first_name} grows by 33.
NAME = "Александра-Виктория Константинопольская-Ивова"
GUIDE = "Гайд: настройка Битрикс24 за вечер"
START = {"command": "start"}
DELIVERY = "держите гайд"  # the guide's text, sent at once with the file
NEWS = "в четверг вебинар"  # a broadcast, sent from the outbox
WEBINAR = "Хочу на вебинар"
SENTENCE = "Настройте воронку продаж и карточку сделки под свой процесс, а не наоборот. "


def long_text(opening: str, paragraph: str, length: int) -> str:
    """`opening`, then numbered paragraphs of whole sentences, `length` characters in all."""
    text, number = opening, 0
    while len(text) < length:
        number += 1
        text += f"\n\n{paragraph} {number}. " + SENTENCE * 9
    return text[:length].rsplit(" ", 1)[0] + "."


# 4090 characters as written (`leadbot check` takes them); over 4096 once the name is in.
DELIVERY_TEXT = long_text(f"{{first_name}}, {DELIVERY} 📘", "Шаг", 4090)
NEWS_TEXT = long_text(f"{{first_name}}, {NEWS}", "Тема", 4090)


def rendered(text: str) -> str:
    return text.replace("{first_name}", NAME)


def scenario_with_long_texts(tmp_path: Path) -> Path:
    """The shipped scenario, except: the guide's text is long, a long broadcast to those who
    took the guide is defined, and there are no quiet hours (the broadcast goes at once)."""
    folder = tmp_path / "scenario"
    shutil.copytree(SHIPPED_SCENARIO, folder)

    def edit(name: str, change: Callable[[dict[str, Any]], None]) -> None:
        path = folder / name
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000))

    def offers(data: dict[str, Any]) -> None:
        data["offers"]["guide"]["deliver"]["text"] = DELIVERY_TEXT

    def main(data: dict[str, Any]) -> None:
        data["settings"].pop("quiet_hours")
        data["broadcasts"] = {
            "long_news": {
                "segment": {"offer": "guide"},
                "text": NEWS_TEXT,
                "buttons": [{"text": WEBINAR, "event": "webinar_registered"}],
            }
        }

    edit("offers.yaml", offers)
    edit("main.yaml", main)
    assert len(rendered(DELIVERY_TEXT)) > 4096
    assert len(rendered(NEWS_TEXT)) > 4096
    return folder


def words(texts: list[str]) -> list[str]:
    return " ".join(texts).split()


def broadcast_row(bot: RunningBot) -> list[tuple[Any, ...]]:
    return bot.rows(
        "select status, attempts, parts_sent, last_error from outbox "
        "where kind = 'broadcast' and status not in ('pending', 'sending')"
    )


# ------------------------------------------------------------------------------ Telegram


async def test_telegram_gets_a_text_grown_past_the_limit_whole_in_several_messages(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    tg = telegram_emulator
    scenario = scenario_with_long_texts(tmp_path)
    bot = start_bot(tg, tmp_path, SCENARIO_DIR=str(scenario))
    try:
        with bot.log_on_failure():
            await tg.wait_for_calls("deleteWebhook", 1, timeout=30)
            chat = tg.new_chat_id()
            await tg.send_command(chat, "/start o_guide", first_name=NAME)
            await tg.wait_for(chat, "согласие")
            await tg.press_button(chat, "Даю согласие", first_name=NAME)
            await tg.wait_for(chat, "можно иногда присылать")
            await tg.press_button(chat, "Да, присылайте", first_name=NAME)
            await tg.wait_for(chat, "Напишите e-mail")
            await tg.send_text(chat, "alexandra@company.ru", first_name=NAME)
            await tg.wait_for(chat, lambda ms: any(m.document for m in ms), timeout=30)

            await run_broadcast(bot, scenario, "long_news")

            def news_arrived(ms: list[BotMessage]) -> bool:
                return any(m.labels() == [WEBINAR] for m in ms)

            sent = await tg.wait_for(chat, news_arrived, timeout=30)
            [(status, attempts, parts, error)] = await eventually(
                lambda: broadcast_row(bot), "the broadcast to be recorded"
            )
    finally:
        assert await asyncio.to_thread(bot.stop) == 0, bot.log.read_text()[-6000:]

    # The guide's text in two messages, cut between paragraphs; the file comes last, the
    # rest of the text as its caption and the button under it.
    guide = [m for m in sent if (m.text or "").startswith((f"{NAME}, {DELIVERY}", "Шаг "))]
    assert len(guide) == 2
    assert words([m.text or "" for m in guide]) == words([rendered(DELIVERY_TEXT)])
    assert (guide[1].text or "").startswith("Шаг ")  # the file's caption
    assert [m.document is not None for m in guide] == [False, True]
    assert [m.labels() for m in guide] == [[], ["В меню"]]
    # The broadcast from the outbox: the same, with its button on the last part.
    news = [m for m in sent if (m.text or "").startswith((f"{NAME}, {NEWS}", "Тема "))]
    assert len(news) == 2
    assert words([m.text or "" for m in news]) == words([rendered(NEWS_TEXT)])
    assert [m.labels() for m in news] == [[], [WEBINAR]]
    # Sent at the first attempt (a wait for Telegram's rate limit is no attempt).
    assert (status, attempts, parts) == ("sent", 1, 2)
    assert "too long" not in (error or "")
    # Telegram refused nothing: no 400 "message is too long", no second try.
    refused = [c for c in await tg.calls() if c.get("error_code") == 400]
    assert refused == []


# ------------------------------------------------------------------------------ VK


@contextlib.asynccontextmanager
async def running_vk_bot(vk: VkApiFake, tmp_path: Path) -> AsyncIterator[tuple[RunningBot, Path]]:
    scenario = scenario_with_long_texts(tmp_path)
    bot = start_vk_bot(vk, tmp_path, SCENARIO_DIR=str(scenario))
    try:
        with bot.log_on_failure():
            await vk.wait_for_calls("groups.getLongPollServer", 1, timeout=30)
            yield bot, scenario
    finally:
        # In a thread: the fake serves from this event loop while the bot stops.
        code = await asyncio.to_thread(bot.stop)
        assert code == 0, bot.log.read_text()[-6000:]


async def press(vk: VkApiFake, user: int, label: str, then: str) -> None:
    """Press a button on the bot's last message and wait for an answer containing `then`."""
    before = len(vk.sent(user))
    pressed = vk.press(user, label)
    assert pressed.event_id is not None
    await vk.wait_for_event_answer(pressed.event_id)
    await vk.wait_for(user, lambda ms: any(then in m.text for m in ms[before:]))


async def take_the_guide(vk: VkApiFake, user: int) -> list[SentMessage]:
    """The guide offer up to its delivery; what the bot sent after the e-mail."""
    vk.add_user(user, NAME, "Смирнова")
    vk.push_message(user, "Начать", payload=START)
    await vk.wait_for(user, 1)
    await press(vk, user, GUIDE, "согласие")
    await press(vk, user, "Даю согласие", "можно иногда присылать")
    await press(vk, user, "Да, присылайте", "Напишите e-mail")
    before = len(vk.sent(user))
    vk.push_message(user, "alexandra@company.ru")
    sent = await vk.wait_for(user, lambda ms: any(m.attachments for m in ms[before:]))
    return sent[before:]


async def test_vk_gets_a_text_grown_past_the_limit_whole_each_part_keyed_apart(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    vk = vk_api
    async with running_vk_bot(vk, tmp_path) as (bot, scenario):
        user = vk.new_user_id()
        guide = await take_the_guide(vk, user)
        before = len(vk.sent(user))
        await run_broadcast(bot, scenario, "long_news")
        sent = await vk.wait_for(
            user, lambda ms: any(m.labels() == [WEBINAR] for m in ms), timeout=30
        )
        news = sent[before:]
        [(status, attempts, parts, error)] = await eventually(
            lambda: broadcast_row(bot), "the broadcast to be recorded"
        )

    # VK shows a whole message with a document: the last part carries it and the button.
    assert len(guide) == 2
    assert words([m.text for m in guide]) == words([rendered(DELIVERY_TEXT)])
    assert [len(m.attachments) for m in guide] == [0, 1]
    assert [m.labels() for m in guide] == [[], ["В меню"]]
    assert len(news) == 2
    assert words([m.text for m in news]) == words([rendered(NEWS_TEXT)])
    assert [m.labels() for m in news] == [[], [WEBINAR]]
    assert (status, attempts, parts) == ("sent", 1, 2)
    assert "too long" not in (error or "")
    # Each part has a random_id of its own: VK would drop a repeated one as a duplicate,
    # and drops a part sent again after a crash.
    random_ids = [m.random_id for m in guide + news]
    assert 0 not in random_ids
    assert len(set(random_ids)) == len(random_ids)
    assert [c for c in vk.calls("messages.send") if c.error_code == 914] == []


async def test_a_message_vk_refuses_as_too_long_fails_at_once_with_the_reason(
    vk_api: VkApiFake, tmp_path: Path
) -> None:
    """VK's 914 ("Message is too long") would come again: the broadcast's row fails at its
    first attempt with VK's reason instead of being tried eight times."""
    vk = vk_api
    async with running_vk_bot(vk, tmp_path) as (bot, scenario):
        user = vk.new_user_id()
        await take_the_guide(vk, user)
        vk.fail("messages.send", 914, peer_id=user, times=None)
        await run_broadcast(bot, scenario, "long_news")
        [(status, attempts, parts, error)] = await eventually(
            lambda: broadcast_row(bot), "the broadcast to be recorded"
        )
        refused = [c for c in vk.calls("messages.send") if c.error_code == 914]

    assert (status, attempts, parts) == ("failed", 1, 0)
    assert error == "vk refused message 1: VK error 914: Message is too long"
    assert len(refused) == 1
