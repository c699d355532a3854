"""Promo codes as a lead sees them: /promo with each code's last day, codes given on an
event, a stage or with a magnet, `per_lead`, and the "your code expires soon" reminder."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.messages import Kind
from bot.reactions import remind_expiring_codes
from bot.redemption import Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.delivery.harness import Bench, scenario_folder, utc
from tests.prospect import Prospect, snapshot

CODE = "[A-HJKMNP-Z2-9]{5}-[A-HJKMNP-Z2-9]{5}"
NONE = "Сейчас у вас нет действующих промокодов."
# A gift offer that asks for an e-mail (so both consents are asked) and gives a code with
# the magnet; a webinar offer that shows the campaign code and gives a code without expiry.
OFFERS = """
offers:
  gift:
    title: "Подарок"
    ask: [email]
    deliver: {text: "Ваш подарок — скидка, код уже в /promo"}
    then: {promo: first_purchase}
  webinar_invite:
    title: "Вебинар"
    deliver: {text: "Ваш код на вебинар: {promo.webinar}"}
    then: {promo: forever}
"""
LISTING = (
    OFFERS
    + """
promos:
  first_purchase: {kind: personal, prefix: START, discount: "10%", valid: 14d}
  webinar: {kind: shared, code: WEBINAR2026, discount: "15%", until: 2026-12-31}
  forever: {kind: personal, prefix: KEEP, discount: "5%", uses: null}
"""
)
TRIGGERED = """
promos:
  faq_bonus:
    kind: personal
    prefix: FAQ
    discount: "3%"
    valid: 1d
    per_lead: 2
    issue_on: {event: faq_answered}
  hello: {kind: personal, prefix: HELLO, discount: "7%", issue_on: {stage: contact}}
  audit_only:
    kind: personal
    prefix: AUDIT
    discount: "20%"
    issue_on: {event: offer_taken, where: {offer: audit}}
"""
REMINDER = (
    OFFERS
    + """
promos:
  first_purchase:
    {kind: personal, prefix: START, discount: "10%", valid: 14d, remind_before: 2d}
  webinar: {kind: shared, code: WEBINAR2026, discount: "15%", until: 2026-12-31}
  forever: {kind: personal, prefix: KEEP, discount: "5%", uses: null}
sequences:
  code_reminder:
    start_on: {event: promo_expiring, where: {promo: first_purchase}}
    steps:
      - id: expiring
        text: "{first_name}, код {promo.first_purchase} до {promo.first_purchase.expires}"
"""
)


def funnel_on(db: Database, clock: FakeClock, tmp_path: Path, extra: str) -> Funnel:
    return Funnel(db, ActiveScenario(load_scenario(scenario_folder(tmp_path, extra))), clock)


async def promo_list(prospect: Prospect) -> str:
    await prospect.send(Kind.PROMO)
    assert prospect.labels() == ["В меню"]
    return prospect.texts()


def listed(*lines: str) -> str:
    return "\n".join(["Ваши промокоды:", *(f"🎟 {line}" for line in lines)])


async def take_gift(prospect: Prospect, email: str = "anna@example.com") -> str:
    """Take the gift offer with both consents; the code it gave."""
    await prospect.start("o_gift")
    await prospect.press("Даю согласие")
    await prospect.press("Да, присылайте")
    await prospect.say(email)
    assert prospect.texts() == "Ваш подарок — скидка, код уже в /promo"
    found = re.search(rf"START-{CODE}", await promo_list(prospect))
    assert found is not None, prospect.texts()
    return found[0]


# ---- /promo ----


async def test_promo_without_codes_says_there_are_none(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    anna = Prospect(funnel_on(sqlite_db, clock, tmp_path, LISTING))
    await anna.start()
    assert await promo_list(anna) == NONE
    await anna.press("В меню")
    assert anna.texts() == "Привет, Анна! Выберите:"


async def test_promo_lists_live_codes_until_each_expires(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    anna = Prospect(funnel_on(sqlite_db, clock, tmp_path, LISTING))
    start = await take_gift(anna)
    await anna.start("o_webinar_invite")
    assert "Ваш код на вебинар: WEBINAR2026" in anna.texts()
    keep = re.search(rf"KEEP-{CODE}", await promo_list(anna))
    assert keep is not None, anna.texts()

    assert anna.texts() == listed(
        f"{start} — 10%, действует до 07.12.2026",
        f"{keep[0]} — 5%, действует без срока",
        "WEBINAR2026 — 15%, действует до 31.12.2026",
    )

    clock.advance(datetime(2026, 12, 7, 8, 59, tzinfo=UTC) - clock.now())  # 11:59 in Moscow
    assert start in await promo_list(anna)
    clock.advance(timedelta(minutes=1))  # 14 days after it was given: gone
    assert await promo_list(anna) == listed(
        f"{keep[0]} — 5%, действует без срока",
        "WEBINAR2026 — 15%, действует до 31.12.2026",
    )
    clock.advance(datetime(2027, 1, 1, tzinfo=UTC) - clock.now())  # the campaign is over
    assert await promo_list(anna) == listed(f"{keep[0]} — 5%, действует без срока")


async def test_a_used_code_leaves_the_list(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    funnel = funnel_on(sqlite_db, clock, tmp_path, LISTING)
    anna = Prospect(funnel)
    code = await take_gift(anna)

    outcome = await Redemptions(funnel).redeem(code.lower(), source="till", by="Иван")

    assert outcome.ok
    assert await promo_list(anna) == NONE


async def test_codes_are_each_leads_own(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    funnel = funnel_on(sqlite_db, clock, tmp_path, LISTING)
    anna, oleg = Prospect(funnel, "1001"), Prospect(funnel, "1002", first_name="Олег")
    annas = await take_gift(anna, "anna@example.com")
    olegs = await take_gift(oleg, "oleg@example.com")

    assert annas != olegs
    assert olegs not in await promo_list(anna)
    assert annas not in await promo_list(oleg)
    # The campaign code is listed only for who was shown it.
    await anna.start("o_webinar_invite")
    assert "WEBINAR2026" in await promo_list(anna)
    assert "WEBINAR2026" not in await promo_list(oleg)


# ---- when codes are given ----


async def test_then_promo_gives_the_code_with_the_magnet_once(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    anna = Prospect(funnel_on(sqlite_db, clock, tmp_path, LISTING))
    await anna.start()
    assert await promo_list(anna) == NONE

    await anna.start("o_webinar_invite")
    first = await promo_list(anna)
    await anna.start("o_webinar_invite")  # the magnet again: the live code, not a second one

    assert await promo_list(anna) == first
    assert len(re.findall(rf"KEEP-{CODE}", first)) == 1


async def test_issue_on_an_event_a_stage_and_an_event_with_details(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    anna = Prospect(funnel_on(sqlite_db, clock, tmp_path, TRIGGERED))
    await anna.start()
    assert await promo_list(anna) == NONE

    await anna.say("сколько стоит?")  # the FAQ answers: faq_answered
    assert anna.texts() == "Внедрение от 30 000 ₽."
    faq = re.fullmatch(
        rf"Ваши промокоды:\n🎟 (FAQ-{CODE}) — 3%, действует до 24\.11\.2026",
        await promo_list(anna),
    )
    assert faq is not None, anna.texts()

    await anna.start("o_guide")  # offer_taken, but not of the audit
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    assert "HELLO" not in await promo_list(anna)
    assert "AUDIT" not in anna.texts()
    await anna.start("o_guide")
    await anna.say("anna@example.com")  # the stage `contact` is reached
    assert (await snapshot(anna.funnel.db, "1001")).funnel_stage == "warming"
    hello = re.search(rf"HELLO-{CODE} — 7%, действует без срока", await promo_list(anna))
    assert hello is not None, anna.texts()

    await anna.start("o_audit")
    assert re.search(rf"AUDIT-{CODE} — 20%", await promo_list(anna)), anna.texts()
    # Each code once: the stage is not reached again, the FAQ code is still live.
    await anna.send(Kind.MENU)  # out of the audit's questions, so the FAQ answers
    await anna.say("цена")
    assert anna.texts() == "Внедрение от 30 000 ₽."
    await anna.start("o_guide")
    codes = re.findall(rf"[A-Z]+-{CODE}", await promo_list(anna))
    assert [c.split("-")[0] for c in codes] == ["FAQ", "HELLO", "AUDIT"]
    assert codes[0] == faq[1]


async def test_per_lead_caps_the_codes_a_lead_gets_over_time(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    anna = Prospect(funnel_on(sqlite_db, clock, tmp_path, TRIGGERED))
    seen = []
    for _ in range(3):
        await anna.say("цена")
        assert anna.texts() == "Внедрение от 30 000 ₽."  # the answer never suffers
        seen += re.findall(rf"FAQ-{CODE}", await promo_list(anna))
        clock.advance(timedelta(days=1))  # the code expires

    assert len(seen) == len(set(seen)) == 2  # per_lead: 2, then no more
    assert await promo_list(anna) == NONE


# ---- "your code expires soon" ----


async def test_remind_before_records_promo_expiring_once_and_the_reminder_goes_out(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load_scenario(scenario_folder(tmp_path, REMINDER)), clock)
    anna = await bench.take_offer("gift", answers=("anna@example.com",))
    code = re.search(rf"START-{CODE}", await promo_list(anna))
    assert code is not None, anna.texts()
    oleg = bench.prospect("1002", "Олег")
    await oleg.start("o_webinar_invite")
    assert "WEBINAR2026" in oleg.texts()  # codes of promos without remind_before

    # Given 23.11 at 12:00 Moscow time, valid 14 days: the window opens 05.12 at 12:00.
    assert await bench.tick_at(utc(12, 5, 8, 59)) == 0
    assert await remind_expiring_codes(db, bench.scenarios, clock) == 0
    assert await bench.events("1001", "promo_expiring") == []

    bench.move_to(utc(12, 5, 9))
    assert await remind_expiring_codes(db, bench.scenarios, clock) == 1
    assert await remind_expiring_codes(db, bench.scenarios, clock) == 0  # once per code
    await bench.tick_at(utc(12, 5, 9, 1))
    bench.move_to(utc(12, 6, 9))
    assert await remind_expiring_codes(db, bench.scenarios, clock) == 0
    await bench.run_until(utc(12, 8))

    assert await bench.events("1001", "promo_expiring") == [
        {"promo": "first_purchase", "code": code[0], "expires": "07.12.2026"}
    ]
    assert bench.transport.texts() == [f"Анна, код {code[0]} до 07.12.2026"]
    assert bench.transport.sent[0].external_id == "1001"
    assert [(r.step, r.status) for r in await bench.rows("1001")] == [("expiring", "sent")]
    assert await bench.events("1002", "promo_expiring") == []


async def test_no_reminder_for_a_used_code(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load_scenario(scenario_folder(tmp_path, REMINDER)), clock)
    anna = await bench.take_offer("gift", answers=("anna@example.com",))
    code = re.search(rf"START-{CODE}", await promo_list(anna))
    assert code is not None
    assert (await Redemptions(bench.funnel).redeem(code[0], source="till", by="Иван")).ok

    bench.move_to(utc(12, 6, 9))
    assert await remind_expiring_codes(sqlite_db, bench.scenarios, clock) == 0
    await bench.run_until(utc(12, 8))

    assert bench.transport.texts() == []


@pytest.mark.parametrize("extra", [LISTING, ""], ids=["no-remind-before", "no-promos"])
async def test_the_job_does_nothing_without_remind_before(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path, extra: str
) -> None:
    bench = Bench(sqlite_db, load_scenario(scenario_folder(tmp_path, extra)), clock)
    if extra:
        await bench.take_offer("gift", answers=("anna@example.com",))
    bench.move_to(utc(12, 6, 9))
    assert await remind_expiring_codes(sqlite_db, bench.scenarios, clock) == 0
