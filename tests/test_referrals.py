"""The referral programme as people meet it: /invite, a friend arriving by the link with its
gift, a "friend" who turns out to be somebody known, and the referrer's thank-you code."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.messages import Kind
from bot.outside import LeadRef, OutsideEvents
from bot.referrals import REWARD, ReferralLinks
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from storage.models import Lead, OutboxRow
from tests.delivery.harness import RecordingTransport, fake_clock_worker, scenario_folder
from tests.prospect import Prospect, events_of, snapshot

BOT = "leadbot_test_bot"
REF = "[A-HJKMNP-Z2-9]{8}"  # a referral code: 8 characters of the promo alphabet
CODE = "[A-HJKMNP-Z2-9]{5}-[A-HJKMNP-Z2-9]{5}"
PROGRAMME = """
promos:
  friend_gift: {kind: personal, prefix: FRIEND, discount: "10%", valid: 14d}
  thanks: {kind: personal, prefix: THANKS, discount: "500 ₽", valid: 30d}
referral: {invitee_promo: friend_gift, reward_promo: thanks, max_rewards: 2}
"""
ANNA_PHONE = "79991234567"
CONSENT = "Нужно согласие на обработку данных: https://example.com/privacy"
MENU = "Привет, {}! Выберите:"


def invite_text(link: str, friends: int, qualified: int) -> str:
    text = (
        "Приглашайте коллег по своей ссылке — им подарок при первом обращении, "
        f"а вам бонус за каждого, кто к нам обратится:\n{link}"
    )
    if friends:  # nobody came yet: no "0 and 0" line
        text += f"\n\nПо вашей ссылке пришли: {friends}. Бонусов заработано: {qualified}."
    return text


class Programme:
    """The engine with the bot's username known, and a delivery worker sending through a
    recording transport, on one database and fake clock."""

    def __init__(
        self,
        db: Database,
        clock: FakeClock,
        folder: Path,
        links: ReferralLinks | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        scenarios = ActiveScenario(load_scenario(folder))
        links = ReferralLinks(telegram_bot=BOT) if links is None else links
        self.funnel = Funnel(db, scenarios, clock, referral_links=links)
        self.transport = RecordingTransport(clock)
        self.worker = fake_clock_worker(self.funnel, {"telegram": self.transport})

    def person(self, external_id: str, first_name: str, channel: str = "telegram") -> Prospect:
        return Prospect(self.funnel, external_id, channel=channel, first_name=first_name)

    async def referrer(self, external_id: str = "1001", first_name: str = "Анна") -> str:
        """A lead who opened the bot, asked for its link and agreed; its referral code."""
        anna = self.person(external_id, first_name)
        await anna.start()
        await anna.send(Kind.INVITE)
        await anna.press("Даю согласие")
        match = re.search(rf"https://t\.me/{BOT}\?start=ref_({REF})", anna.texts())
        assert match is not None, anna.texts()
        return match[1]

    async def friend(self, code: str, external_id: str, first_name: str = "Олег") -> Prospect:
        friend = self.person(external_id, first_name)
        await friend.start(f"ref_{code}")
        return friend

    async def qualify(self, prospect: Prospect, phone: str) -> None:
        """Take the audit to the end; its tag `wants_audit` makes a lead qualify."""
        await prospect.start("o_audit")
        for label in ("Даю согласие", "Да, присылайте"):
            if label in prospect.labels():
                await prospect.press(label)
        await prospect.say(prospect.first_name)
        await prospect.share(phone)
        await prospect.press("больше 50")
        assert prospect.texts() == f"Спасибо, {prospect.first_name}! Менеджер позвонит."
        assert (await snapshot(self.db, prospect.external_id)).funnel_stage == "qualified"

    async def take_guide(self, prospect: Prospect, email: str) -> None:
        await prospect.start("o_guide")
        for label in ("Даю согласие", "Да, присылайте"):
            if label in prospect.labels():
                await prospect.press(label)
        await prospect.say(email)
        assert prospect.texts() == f"Ваш гайд, {prospect.first_name}."

    async def invite(self, external_id: str = "1001") -> str:
        """What /invite answers now."""
        person = self.person(external_id, "Анна")
        await person.send(Kind.INVITE)
        return person.texts()

    # ---- reading the database ----

    async def lead_id(self, external_id: str) -> int:
        return (await snapshot(self.db, external_id)).lead_id

    async def events(self, external_id: str, name: str) -> list[dict[str, Any]]:
        return await events_of(self.db, await self.lead_id(external_id), name)

    async def codes(self, external_id: str, promo: str) -> list[str]:
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            return [c.code for c in await uow.promos.for_lead(lead_id) if c.promo == promo]

    async def rewards(self, external_id: str) -> list[tuple[str, str | None]]:
        """The reward rows queued for the lead: (status, the thank-you once granted)."""
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            query = (
                select(OutboxRow)
                .where(OutboxRow.lead_id == lead_id, OutboxRow.kind == REWARD)
                .order_by(OutboxRow.id)
            )
            rows = (await uow.session.execute(query)).scalars()
            return [(r.status, r.payload.get("text")) for r in rows]


def thanks(code: str) -> str:
    return (
        "🎉 Ваш друг по приглашению обратился к нам — спасибо! "
        f"Ваш подарок: 500 ₽. Код {code} (до 23.12.2026)."
    )


@pytest.fixture
def programme(sqlite_db: Database, clock: FakeClock, tmp_path: Path) -> Programme:
    return Programme(sqlite_db, clock, scenario_folder(tmp_path, PROGRAMME))


@pytest.fixture
def programme_on_each_db(db: Database, clock: FakeClock, tmp_path: Path) -> Programme:
    return Programme(db, clock, scenario_folder(tmp_path, PROGRAMME))


# ---- /invite ----


async def test_invite_asks_consent_first_and_shows_the_link_after_it(
    programme: Programme,
) -> None:
    anna = programme.person("1001", "Анна")
    await anna.start()

    await anna.send(Kind.INVITE)
    assert anna.texts() == CONSENT
    assert anna.labels() == ["Даю согласие", "Не сейчас"]
    await anna.say("а где ссылка?")  # typing instead of choosing: asked again
    assert anna.texts() == f"Выберите, пожалуйста, один из вариантов кнопкой ниже.\n{CONSENT}"
    await anna.press("Не сейчас")
    assert "t.me" not in anna.texts()
    assert anna.texts().startswith("Понимаем. Без согласия мы не можем сохранить")
    async with programme.db.unit_of_work() as uow:  # no code is made for who declined
        assert (await uow.session.execute(select(Lead.referral_code))).scalar_one() is None

    await anna.send(Kind.INVITE)
    assert anna.texts() == CONSENT
    await anna.press("Даю согласие")
    link = re.fullmatch(rf"(?s).*\n(https://t\.me/{BOT}\?start=ref_{REF})", anna.texts())
    assert link is not None, anna.texts()
    assert anna.texts() == invite_text(link[1], 0, 0)
    assert anna.labels() == ["В меню"]
    assert (await snapshot(programme.db, "1001")).consents == {"personal_data"}

    # Asked again: no consent question, the same link.
    assert await programme.invite() == invite_text(link[1], 0, 0)


async def test_invite_counts_friends_who_came_and_who_qualified(programme: Programme) -> None:
    code = await programme.referrer()
    link = f"https://t.me/{BOT}?start=ref_{code}"
    await programme.friend(code, "2002", "Олег")
    assert await programme.invite() == invite_text(link, 1, 0)

    irina = await programme.friend(code, "2003", "Ирина")
    assert await programme.invite() == invite_text(link, 2, 0)
    await programme.qualify(irina, "79990000003")
    assert await programme.invite() == invite_text(link, 2, 1)


@pytest.mark.parametrize(
    ("channel", "links", "expected"),
    [
        ("telegram", ReferralLinks(telegram_bot=BOT), rf"https://t\.me/{BOT}\?start=ref_{REF}"),
        (
            "vk",
            ReferralLinks(telegram_bot=BOT, vk_group="leadbot_club"),
            rf"https://vk\.me/leadbot_club\?ref=ref_{REF}",
        ),
        # In VK with no community known, the Telegram link is the one that works.
        ("vk", ReferralLinks(telegram_bot=BOT), rf"https://t\.me/{BOT}\?start=ref_{REF}"),
        # No username learnt yet (the console): the command to type.
        ("telegram", ReferralLinks(), rf"/start ref_{REF}"),
    ],
    ids=["telegram", "vk", "vk-without-community", "no-link-known"],
)
async def test_the_link_is_for_the_chats_messenger(
    sqlite_db: Database,
    clock: FakeClock,
    tmp_path: Path,
    channel: str,
    links: ReferralLinks,
    expected: str,
) -> None:
    programme = Programme(sqlite_db, clock, scenario_folder(tmp_path, PROGRAMME), links)
    anna = programme.person("1001", "Анна", channel)
    await anna.send(Kind.INVITE)
    await anna.press("Даю согласие")

    link = anna.texts().split("\n")[1]
    assert re.fullmatch(expected, link), anna.texts()
    # Whatever the link, it carries the payload a friend's first /start brings.
    oleg = await programme.friend(link.rpartition("ref_")[2], "2002")
    assert oleg.texts().startswith("Вас пригласил друг")


async def test_without_the_programme_invite_says_so_and_links_do_nothing(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    programme = Programme(sqlite_db, clock, scenario_folder(tmp_path))
    anna = programme.person("1001", "Анна")
    await anna.send(Kind.INVITE)
    assert anna.texts() == "Сейчас реферальная программа не действует."
    assert anna.labels() == ["В меню"]

    oleg = await programme.friend("ABCDEFGH", "2002")
    assert oleg.texts() == MENU.format("Олег")
    assert await programme.events("2002", "referral_joined") == []


# ---- the friend's arrival ----


async def test_a_new_lead_by_the_link_is_welcomed_with_its_gift(programme: Programme) -> None:
    code = await programme.referrer()
    oleg = await programme.friend(code, "2002", "Олег")

    welcome, menu = oleg.last
    match = re.fullmatch(
        rf"Вас пригласил друг, и для вас есть подарок: 10%\. Код (FRIEND-{CODE}) "
        r"\(до 07\.12\.2026\)\.",
        welcome.text,
    )
    assert match is not None, welcome.text
    assert menu.text == MENU.format("Олег")
    assert await programme.codes("2002", "friend_gift") == [match[1]]
    assert await programme.events("2002", "referral_joined") == [
        {"referrer": await programme.lead_id("1001")}
    ]
    await oleg.send(Kind.PROMO)
    assert match[1] in oleg.texts()


async def test_a_lead_who_wrote_before_is_never_attributed(programme: Programme) -> None:
    code = await programme.referrer()
    oleg = programme.person("2002", "Олег")
    await oleg.say("Здравствуйте")  # the first message, without a link

    await oleg.start(f"ref_{code}")

    assert oleg.texts() == MENU.format("Олег")
    assert await programme.events("2002", "referral_joined") == []
    assert await programme.codes("2002", "friend_gift") == []
    assert await programme.invite() == invite_text(f"https://t.me/{BOT}?start=ref_{code}", 0, 0)


async def test_a_lead_who_pressed_start_before_is_never_attributed(
    programme: Programme,
) -> None:
    code = await programme.referrer()
    oleg = programme.person("2002", "Олег")
    await oleg.start("src_vkads")
    await programme.qualify(oleg, "79990000002")  # even a friend who would count

    await oleg.start(f"ref_{code}")

    assert oleg.texts() == MENU.format("Олег")
    assert await programme.events("2002", "referral_joined") == []
    assert await programme.events("1001", "referral_rewarded") == []
    assert (await snapshot(programme.db, "1001")).funnel_stage != "advocate"


async def test_an_unknown_code_does_nothing(programme: Programme) -> None:
    await programme.referrer()
    oleg = await programme.friend("ZZZZ2222", "2002")

    assert oleg.texts() == MENU.format("Олег")
    assert await programme.events("2002", "referral_joined") == []
    assert await programme.codes("2002", "friend_gift") == []


async def test_the_referrers_own_link_does_nothing(programme: Programme) -> None:
    code = await programme.referrer()
    anna = programme.person("1001", "Анна")

    await anna.start(f"ref_{code}")

    assert anna.texts() == MENU.format("Анна")
    assert await programme.events("1001", "referral_joined") == []
    assert await programme.codes("1001", "friend_gift") == []
    assert "По вашей ссылке пришли" not in await programme.invite()


# ---- void referrals ----


async def test_a_second_account_with_the_referrers_phone_is_never_rewarded(
    programme_on_each_db: Programme,
) -> None:
    programme = programme_on_each_db
    code = await programme.referrer()
    await programme.person("1001", "Анна").share(ANNA_PHONE)  # kept: consent was given
    assert ("phone", "+79991234567", True) in (await snapshot(programme.db, "1001")).contacts

    # Anna's second Telegram account comes by her own link and leaves her phone.
    second = await programme.friend(code, "2002", "Анна")
    await programme.qualify(second, ANNA_PHONE)
    outside = OutsideEvents(programme.funnel)
    await outside.record(LeadRef(lead_id=await programme.lead_id("2002")), "purchase")
    await programme.worker.drain()

    assert await programme.events("2002", "referral_void") == [
        {"reason": "self-referral: the referrer's phone"}
    ]
    anna = await snapshot(programme.db, "1001")
    assert anna.funnel_stage == "contact"
    assert "referral_rewarded" not in anna.events
    assert await programme.codes("1001", "thanks") == []
    assert await programme.rewards("1001") == []
    assert programme.transport.texts("1001") == []
    assert "По вашей ссылке пришли" not in await programme.invite()


async def test_a_friend_whose_email_was_known_before_is_void(programme: Programme) -> None:
    code = await programme.referrer()
    olga = programme.person("3003", "Ольга")
    await programme.take_guide(olga, "olga@example.com")

    # The same person from another account, as a "friend", in other letters' case.
    friend = await programme.friend(code, "2002", "Ольга")
    await programme.take_guide(friend, "Olga@Example.com")
    await programme.qualify(friend, "79990000002")
    await programme.worker.drain()

    olga_id = await programme.lead_id("3003")
    assert await programme.events("2002", "referral_void") == [
        {"reason": f"known before: the email of lead #{olga_id}"}
    ]
    assert await programme.events("1001", "referral_rewarded") == []
    assert await programme.codes("1001", "thanks") == []
    assert programme.transport.texts("1001") == []
    assert "По вашей ссылке пришли" not in await programme.invite()


async def test_the_referrer_leaving_the_friends_phone_later_voids_the_referral(
    programme: Programme,
) -> None:
    """The check is made again before the reward, so the order of the two does not matter."""
    code = await programme.referrer()
    second = await programme.friend(code, "2002", "Анна")
    await programme.take_guide(second, "anna.second@example.com")
    await second.share(ANNA_PHONE)  # the second account's phone, new to us so far
    assert await programme.events("2002", "referral_void") == []

    await programme.person("1001", "Анна").share(ANNA_PHONE)
    await programme.qualify(second, ANNA_PHONE)

    assert await programme.events("2002", "referral_void") == [
        {"reason": "self-referral: the referrer's phone"}
    ]
    assert await programme.events("1001", "referral_rewarded") == []
    assert await programme.rewards("1001") == []


# ---- the reward ----


async def test_a_qualified_friend_brings_one_reward_delivered_to_the_referrer(
    programme_on_each_db: Programme,
) -> None:
    programme = programme_on_each_db
    code = await programme.referrer()
    oleg = await programme.friend(code, "2002", "Олег")
    await programme.qualify(oleg, "79990000002")
    # Queued in the friend's turn; granted by the worker under the referrer's own lock.
    assert await programme.rewards("1001") == [("pending", None)]
    assert await programme.codes("1001", "thanks") == []

    await programme.worker.drain()
    (reward,) = await programme.codes("1001", "thanks")
    assert re.fullmatch(f"THANKS-{CODE}", reward)
    anna = await snapshot(programme.db, "1001")
    assert anna.stage == anna.funnel_stage == "advocate"
    assert await programme.events("1001", "referral_rewarded") == [
        {"friend": await programme.lead_id("2002"), "promo": "thanks", "code": reward}
    ]
    assert programme.transport.texts("1001") == [thanks(reward)]
    assert await programme.rewards("1001") == [("sent", thanks(reward))]

    # Whatever the friend does next, including what would qualify it again, counts once.
    await oleg.send(Kind.PROMO)
    await oleg.say("сколько стоит?")
    await oleg.start("o_audit")  # the audit again: everything is known, so it is delivered
    assert "Спасибо, Олег! Менеджер позвонит." in oleg.texts()
    outside = OutsideEvents(programme.funnel)
    oleg_ref = LeadRef(lead_id=await programme.lead_id("2002"))
    await outside.record(oleg_ref, "qualified")
    await outside.record(oleg_ref, "purchase")
    assert (await snapshot(programme.db, "2002")).funnel_stage == "customer"

    await programme.worker.drain()
    assert await programme.codes("1001", "thanks") == [reward]
    assert len(await programme.events("1001", "referral_rewarded")) == 1
    assert len(await programme.rewards("1001")) == 1
    assert programme.transport.texts("1001") == [thanks(reward)]  # sent once

    # The referrer finds the code in /promo, and the count in /invite.
    anna_chat = programme.person("1001", "Анна")
    await anna_chat.send(Kind.PROMO)
    assert anna_chat.texts() == f"Ваши промокоды:\n🎟 {reward} — 500 ₽, действует до 23.12.2026"
    assert "По вашей ссылке пришли: 1. Бонусов заработано: 1." in await programme.invite()


async def test_a_friend_qualifying_while_its_purchase_is_reported_is_rewarded_once(
    programme_on_each_db: Programme,
) -> None:
    """The friend's last answer and the CRM's purchase arrive at once: either would reward,
    the friend's lock makes the second see the first's reward."""
    programme = programme_on_each_db
    code = await programme.referrer()
    oleg = await programme.friend(code, "2002", "Олег")
    await oleg.start("o_audit")
    await oleg.press("Даю согласие")
    await oleg.press("Да, присылайте")
    await oleg.say("Олег")
    await oleg.share("79990000002")
    oleg_ref = LeadRef(lead_id=await programme.lead_id("2002"))

    await asyncio.gather(
        oleg.press("больше 50"), OutsideEvents(programme.funnel).record(oleg_ref, "purchase")
    )
    await programme.worker.drain()

    assert "Менеджер позвонит" in oleg.texts()
    assert (await snapshot(programme.db, "2002")).funnel_stage == "customer"
    (reward,) = await programme.codes("1001", "thanks")
    assert len(await programme.events("1001", "referral_rewarded")) == 1
    assert programme.transport.texts("1001") == [thanks(reward)]


async def test_rewards_stop_at_max_rewards_but_the_referrer_stays_an_advocate(
    programme_on_each_db: Programme,
) -> None:
    programme = programme_on_each_db
    code = await programme.referrer()
    for number, name in zip((2, 3, 4), ("Олег", "Ирина", "Пётр"), strict=True):
        friend = await programme.friend(code, f"200{number}", name)
        await programme.qualify(friend, f"7999000000{number}")
    await programme.worker.drain()

    rewarded = await programme.events("1001", "referral_rewarded")
    friends = [await programme.lead_id(f"200{n}") for n in (2, 3, 4)]
    assert [e["friend"] for e in rewarded] == friends
    codes = await programme.codes("1001", "thanks")
    assert len(set(codes)) == 2  # a fresh code per friend, while the live one is unused
    assert [e.get("code") for e in rewarded] == [*codes, None]
    assert programme.transport.texts("1001") == [thanks(c) for c in codes]
    assert (await snapshot(programme.db, "1001")).funnel_stage == "advocate"
    assert "По вашей ссылке пришли: 3. Бонусов заработано: 3." in await programme.invite()


async def test_reward_when_another_stage(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    extra = PROGRAMME.replace("max_rewards: 2", "max_rewards: 2, reward_when: contact")
    programme = Programme(sqlite_db, clock, scenario_folder(tmp_path, extra))
    code = await programme.referrer()
    oleg = await programme.friend(code, "2002", "Олег")
    await oleg.press("Гайд по настройке")
    await oleg.press("Даю согласие")
    await oleg.press("Нет, спасибо")
    assert await programme.codes("1001", "thanks") == []  # engaged is not enough

    await oleg.say("oleg@example.com")  # a contact: the stage this programme rewards
    await programme.worker.drain()

    (reward,) = await programme.codes("1001", "thanks")
    assert programme.transport.texts("1001") == [thanks(reward)]


@pytest.mark.parametrize("blocked", ["before the friend qualified", "before the worker ran"])
async def test_a_referrer_who_blocked_the_bot_gets_no_thank_you(
    programme: Programme, blocked: str
) -> None:
    code = await programme.referrer()
    oleg = await programme.friend(code, "2002", "Олег")
    if blocked == "before the friend qualified":
        await programme.funnel.mark_blocked("telegram", "1001")
    await programme.qualify(oleg, "79990000002")
    if blocked == "before the worker ran":
        await programme.funnel.mark_blocked("telegram", "1001")

    programme.clock.advance(timedelta(minutes=1))
    await programme.worker.drain()

    assert programme.transport.attempts == []
    ((status, _),) = await programme.rewards("1001")
    assert status == "cancelled"
    assert len(await programme.codes("1001", "thanks")) == 1  # in /promo when they return
