"""The managers' group upgraded to a supergroup, end to end: `leadbot run` against the Telegram
emulator, started with the basic group's id in MANAGERS_TELEGRAM_CHAT_ID. Whether the bot hears
of the upgrade from Telegram's service messages or from the 400 its post gets, the managers'
chat follows: the card reaches the supergroup, a manager's claim and reply there work, and a
restart with the old id in the settings still posts in the supergroup."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.bot_process import RunningBot, eventually, start_bot
from tests.e2e.telegram import BotMessage, TelegramClient
from tests.e2e.test_managers_chat import OLGA, QUESTION, cards, take_the_audit

UPGRADED = "Bad Request: group chat was upgraded to a supergroup chat"


async def start(tg: TelegramClient, tmp_path: Path, group: int, *, starts: int) -> RunningBot:
    """The bot with `group` as its managers' chat, polling (its `starts`-th start here)."""
    running = start_bot(tg, tmp_path, MANAGERS_TELEGRAM_CHAT_ID=str(group))
    await tg.wait_for_calls("deleteWebhook", starts, timeout=30)
    return running


def stopped(running: RunningBot, tg: TelegramClient) -> str:
    """Stop the bot as a service manager would; its log."""
    code = running.stop()
    log = running.log.read_text()
    assert code == 0, log
    assert tg.token.split(":")[1] not in log
    return log


async def calls_to(tg: TelegramClient, chat: int, since: int = 0) -> list[dict[str, object]]:
    """The bot's calls naming `chat` (answered or refused), from call number `since` on."""
    return [c for c in (await tg.calls())[since:] if c["params"].get("chat_id") == chat]


async def test_a_post_refused_by_the_upgraded_group_goes_to_the_supergroup_and_stays_there(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    tg = telegram_emulator
    group = tg.new_basic_group_id()
    bot = await start(tg, tmp_path, group, starts=1)
    try:
        with bot.log_on_failure():
            await tg.send_group_text(group, "Всем привет", **OLGA)
            # The bot misses Telegram's service messages: it learns from the 400 of its post.
            supergroup = await tg.upgrade_group(
                group, user_id=OLGA["user_id"], first_name=OLGA["first_name"], tell_the_bot=False
            )
            chat = tg.new_chat_id()
            await take_the_audit(tg, chat)
            [(lead_id,)] = bot.rows(
                "select lead_id from identities where channel = 'telegram' and external_id = ?",
                str(chat),
            )

            messages = await tg.wait_for(
                supergroup, lambda ms: bool(cards(ms, lead_id)), timeout=15
            )
            [card] = cards(messages, lead_id)
            assert card.labels() == ["✋ Взял", "🚫 Не наш клиент"]
            # One post met the upgrade (refused, then sent to the supergroup); the rest went
            # straight there. Nothing is left in the old group, nothing failed or went twice.
            refused = await calls_to(tg, group)
            assert [(c["method"], c.get("error_code"), c.get("description")) for c in refused] == [
                ("sendMessage", 400, UPGRADED)
            ]
            posted = "select status from outbox where kind in ('managers_post', 'lead_card')"
            await eventually(
                lambda: bot.rows(posted) == [("sent",), ("sent",)],
                "both posts to be recorded as sent",
            )
            posts = [m.text for m in await tg.bot_messages(supergroup)]
            assert len(posts) == len(set(posts)) == 2  # "left contacts" and the card
            assert await tg.bot_messages(group) == []

            # Olga claims the lead in the supergroup: it is the managers' chat now.
            pressed = await tg.press_group_button(supergroup, card, "✋ Взял", **OLGA)
            assert (await tg.wait_for_callback_answer(pressed)).text == f"Лид #{lead_id} ваш."

            def claimed(ms: list[BotMessage]) -> bool:
                return any("🤝 Взял: Ольга Петрова" in (m.text or "") for m in cards(ms, lead_id))

            [edited] = cards(await tg.wait_for(supergroup, claimed), lead_id)
            assert edited.message_id == card.message_id
    finally:
        log = stopped(bot, tg)
    assert f"set MANAGERS_TELEGRAM_CHAT_ID={supergroup}" in log
    assert bot.rows("select channel, from_chat, to_chat from chat_migrations") == [
        ("telegram", str(group), str(supergroup))
    ]

    # Restarted with the old id still in the settings: the bot posts in the supergroup at once
    # (Olga holds the lead, so what it writes follows into the chat), and her reply there
    # reaches the prospect.
    since = len(await tg.calls())
    bot = await start(tg, tmp_path, group, starts=2)
    try:
        with bot.log_on_failure():
            await tg.send_text(chat, QUESTION, first_name="Мария")

            def question(ms: list[BotMessage]) -> list[BotMessage]:
                return [m for m in ms if QUESTION in (m.text or "")]

            [post] = question(
                await tg.wait_for(supergroup, lambda ms: bool(question(ms)), timeout=15)
            )
            assert await calls_to(tg, group, since) == []
            await eventually(
                lambda: bot.rows("select 1 from manager_messages where kind = 'question'"),
                "the question's post to be recorded",
            )
            before = len(await tg.bot_messages(chat))
            await tg.send_group_text(supergroup, "Да, работаем", reply_to=post, **OLGA)
            await tg.wait_for(chat, lambda ms: any(m.text == "Да, работаем" for m in ms[before:]))
    finally:
        log = stopped(bot, tg)
    assert f"set MANAGERS_TELEGRAM_CHAT_ID={supergroup}" in log  # the admin is told again


async def test_the_upgrade_messages_move_the_managers_chat_before_anything_is_posted(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    tg = telegram_emulator
    group = tg.new_basic_group_id()
    bot = await start(tg, tmp_path, group, starts=1)
    try:
        with bot.log_on_failure():
            await tg.send_group_command(group, "/stats", **OLGA)
            await tg.wait_for(group, "Воронка: сегодня")  # the text, after the picture
            answered = len(await tg.calls())

            supergroup = await tg.upgrade_group(
                group, user_id=OLGA["user_id"], first_name=OLGA["first_name"]
            )
            await eventually(
                lambda: bot.rows("select to_chat from chat_migrations"), "the move to be kept"
            )
            await tg.send_group_command(supergroup, "/stats", **OLGA)
            await tg.wait_for(supergroup, "Воронка")

            # Nothing was tried in the old group after the upgrade: no 400 to learn from.
            assert await calls_to(tg, group, answered) == []
    finally:
        log = stopped(bot, tg)
    assert bot.rows("select to_chat from chat_migrations") == [(str(supergroup),)]
    assert f"set MANAGERS_TELEGRAM_CHAT_ID={supergroup}" in log
