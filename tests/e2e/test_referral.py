"""The referral programme end to end: `leadbot run` as a real process against the Telegram
emulator and the shipped scenario. A lead gives consent through /invite and gets its link
(t.me/<the bot's getMe username>?start=ref_<code>); a brand-new friend comes by that link, gets
the welcome code and takes the audit offer, which qualifies; the referrer's thank-you with the
reward code arrives through the delivery worker, /invite counts the friend and /promo lists the
code. Somebody who wrote to the bot before and then opens the link is not attributed."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.e2e.bot_process import RunningBot
from tests.e2e.telegram import BotMessage, TelegramClient

AUDIT = "Час добра: бесплатный аудит процессов"
CONSENT = "согласие на обработку персональных данных"
# Codes: the promo alphabet has no look-alikes (0/O, 1/I/L).
CHARS = "[A-HJKMNP-Z2-9]"
DATE = r"\d{2}\.\d{2}\.\d{4}"
WELCOME = re.compile(
    rf"^Вас пригласил друг, и для вас есть подарок: скидка 5% на внедрение\. "
    rf"Код (FRIEND-{CHARS}{{5}}-{CHARS}{{5}}) \(до {DATE}\)\.$"
)
THANKS = re.compile(
    r"^🎉 Ваш друг по приглашению обратился к нам — спасибо! Ваш подарок: час работы "
    rf"специалиста\. Код (THANKS-{CHARS}{{5}}-{CHARS}{{5}}) \(до {DATE}\)\.$"
)
INVITE = "Приглашайте коллег по своей ссылке"
# The delivery worker sends the thank-you on one of its ticks; generous for a slow machine.
DELIVERY_TIMEOUT = 30.0


def matching(pattern: re.Pattern[str], messages: list[BotMessage]) -> list[re.Match[str]]:
    return [found for m in messages if (found := pattern.search(m.text or "")) is not None]


def new_since(before: int, needle: str) -> Callable[[list[BotMessage]], bool]:
    """A `wait_for` condition: a message containing `needle` among those after the first
    `before` (the chat's earlier messages say the same thing)."""
    return lambda ms: any(needle in (m.text or "") for m in ms[before:])


async def command_reply(tg: TelegramClient, chat: int, command: str, needle: str) -> BotMessage:
    """Send a command and return the bot's new message that contains `needle`."""
    before = len(await tg.bot_messages(chat))
    await tg.send_command(chat, command)
    messages = await tg.wait_for(chat, new_since(before, needle))
    [reply] = [m for m in messages[before:] if needle in (m.text or "")]
    return reply


async def link_pattern(tg: TelegramClient) -> re.Pattern[str]:
    """The referral link of the bot the emulator says it is (getMe), capturing the code."""
    me = await tg.bot_api("getMe")
    username = me["result"]["username"]
    assert username
    return re.compile(rf"https://t\.me/{re.escape(username)}\?start=ref_({CHARS}{{8}})(?!\w)")


async def invite_link(tg: TelegramClient, chat: int) -> tuple[str, re.Pattern[str]]:
    """A new lead's first /invite: consent first, then the link; the code and the pattern."""
    await tg.send_command(chat, "/start src_referrer", first_name="Анна")
    await tg.wait_for(chat, 1)
    await tg.send_command(chat, "/invite", first_name="Анна")
    [*_, ask] = await tg.wait_for(chat, CONSENT)
    assert ask.labels() == ["Даю согласие", "Не сейчас"]
    await tg.press_button(chat, "Даю согласие", first_name="Анна")
    messages = await tg.wait_for(chat, INVITE)
    [invite] = [m for m in messages if INVITE in (m.text or "")]
    link = await link_pattern(tg)
    [found] = matching(link, [invite])
    assert "По вашей ссылке пришли" not in (invite.text or "")  # nobody yet: no counts
    return found.group(1), link


async def test_a_friend_by_the_link_qualifies_and_the_referrer_gets_its_gift(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    with bot.log_on_failure():
        tg = telegram_emulator
        # A: consent through /invite, then the link; the same link at the next /invite.
        anna = tg.new_chat_id()
        code, link = await invite_link(tg, anna)
        again = await command_reply(tg, anna, "/invite", INVITE)
        assert [f.group(1) for f in matching(link, [again])] == [code]

        # B: a brand-new user whose first message is A's link.
        boris = tg.new_chat_id()
        assert boris != anna
        await tg.send_command(boris, f"/start ref_{code}", first_name="Борис")
        messages = await tg.wait_for(boris, lambda ms: bool(matching(WELCOME, ms)))
        [welcome] = matching(WELCOME, messages)
        friend_code = welcome.group(1)
        await tg.wait_for(boris, "Выберите, с чего начнём")
        [(anna_id,)] = bot.rows(
            "select lead_id from identities where channel = 'telegram' and external_id = ?",
            str(anna),
        )
        [(boris_id,)] = bot.rows(
            "select lead_id from identities where channel = 'telegram' and external_id = ?",
            str(boris),
        )
        assert bot.rows("select friend_id, referrer_id from referrals") == [(boris_id, anna_id)]
        assert bot.rows("select lead_id, promo from promo_codes where code = ?", friend_code) == [
            (boris_id, "friend_welcome")
        ]
        # Arrived but not qualified yet: counted, not rewarded.
        counted = await command_reply(tg, anna, "/invite", INVITE)
        assert "По вашей ссылке пришли: 1, из них оставили заявку: 0." in (counted.text or "")

        # B takes the audit (consent, name, phone, three choices): its `handoff:` qualifies it.
        await tg.press_button(boris, AUDIT, first_name="Борис")
        await tg.wait_for(boris, CONSENT)
        await tg.press_button(boris, "Даю согласие", first_name="Борис")
        await tg.wait_for(boris, "можно иногда присылать")
        await tg.press_button(boris, "Нет, спасибо", first_name="Борис")
        await tg.wait_for(boris, "Как к вам обращаться?")
        await tg.send_text(boris, "Борис", first_name="Борис")
        await tg.wait_for(boris, "номер телефона")
        await tg.share_contact(boris, "+7 916 777-31-42", first_name="Борис")
        await tg.wait_for(boris, "Сколько сотрудников")
        await tg.press_button(boris, "10–50", first_name="Борис")
        await tg.wait_for(boris, "Какая у вас роль")
        await tg.press_button(boris, "Принимаю решение", first_name="Борис")
        await tg.wait_for(boris, "В чём сейчас ведёте клиентов")
        await tg.press_button(boris, "Битрикс24", first_name="Борис")
        await tg.wait_for(boris, "Выберите удобное время")
        await tg.press_button(boris, "Пропустить", first_name="Борис")
        await tg.wait_for(boris, "Вы записаны на «Час добра»")

        # A's thank-you with the reward code comes through the delivery worker.
        messages = await tg.wait_for(
            anna, lambda ms: bool(matching(THANKS, ms)), timeout=DELIVERY_TIMEOUT
        )
        [thanks] = matching(THANKS, messages)
        reward_code = thanks.group(1)
        assert bot.rows("select reward_code from referrals where friend_id = ?", boris_id) == [
            (reward_code,)
        ]
        assert not matching(THANKS, await tg.bot_messages(boris))  # to the referrer only

        counted = await command_reply(tg, anna, "/invite", INVITE)
        assert "По вашей ссылке пришли: 1, из них оставили заявку: 1." in (counted.text or "")
        assert [f.group(1) for f in matching(link, [counted])] == [code]
        promo = await command_reply(tg, anna, "/promo", "Ваши промокоды:")
        assert f"🎟 {reward_code} — час работы специалиста, действует до " in (promo.text or "")
        assert friend_code not in (promo.text or "")  # B's welcome code is B's
        friend_promo = await command_reply(tg, boris, "/promo", "Ваши промокоды:")
        assert f"🎟 {friend_code} — скидка 5% на внедрение, действует до " in (
            friend_promo.text or ""
        )


async def test_somebody_who_wrote_before_is_not_attributed_by_the_link(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    with bot.log_on_failure():
        tg = telegram_emulator
        anna = tg.new_chat_id()
        code, _ = await invite_link(tg, anna)

        # C has used the bot before, then opens A's link.
        clara = tg.new_chat_id()
        await tg.send_command(clara, "/start", first_name="Клара")
        await tg.wait_for(clara, "Выберите, с чего начнём")
        before = len(await tg.bot_messages(clara))
        await tg.send_command(clara, f"/start ref_{code}", first_name="Клара")
        messages = await tg.wait_for(clara, new_since(before, "Выберите, с чего начнём"))
        assert not matching(WELCOME, messages)
        assert not any("FRIEND-" in (m.text or "") for m in messages)
        assert bot.rows("select count(*) from referrals") == [(0,)]
        assert bot.rows("select count(*) from promo_codes where promo = 'friend_welcome'") == [
            (0,)
        ]
        await command_reply(tg, clara, "/promo", "нет действующих промокодов")

        counted = await command_reply(tg, anna, "/invite", INVITE)
        assert "По вашей ссылке пришли" not in (counted.text or "")
