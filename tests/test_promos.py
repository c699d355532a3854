"""Issuing promo codes: the code format, a lead's live code, expiry, and codes in messages."""

from __future__ import annotations

import math
import random
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import promos
from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scenario.model import Promo, Scenario
from storage.database import Database
from storage.models import Lead, PromoCode
from tests.conftest import FIXTURE_SCENARIO
from tests.delivery.harness import Bench, load, scenario_folder, utc
from tests.prospect import Prospect

MSK = ZoneInfo("Europe/Moscow")
PROMOS = """
promos:
  first_purchase: {kind: personal, prefix: START, discount: "10%", valid: 14d, uses: 1}
  webinar: {kind: shared, code: WEBINAR2026, discount: "15%", until: 2026-12-31}
  yearly: {kind: personal, prefix: YEAR, discount: "5%", until: 2026-12-31}
  forever: {kind: personal, discount: "5%", uses: null}
"""
CODE = re.compile(r"^START-[A-HJKMNP-Z2-9]{5}-[A-HJKMNP-Z2-9]{5}$")


# ---- the code ----


def test_the_alphabet_has_no_look_alikes() -> None:
    assert len(set(promos.ALPHABET)) == len(promos.ALPHABET) == 31
    assert not set(promos.ALPHABET) & set("0O1IL")
    assert set(promos.ALPHABET) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def test_a_code_is_the_prefix_and_two_readable_groups() -> None:
    code = promos.new_code("START")
    assert CODE.match(code), code
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", promos.new_code(None))


def test_a_code_carries_at_least_40_bits() -> None:
    bits = promos.LENGTH * math.log2(len(promos.ALPHABET))
    assert bits == promos.BITS >= 48 > 40
    assert (promos.LENGTH - 1) * math.log2(len(promos.ALPHABET)) < promos.MIN_BITS  # not longer
    assert len(promos.new_code(None).replace("-", "")) == promos.LENGTH


def test_a_million_codes_are_all_different() -> None:
    # Seeded, so the test is repeatable; at ~49.5 bits the chance of any collision among a
    # million codes is ~0.0006, so a seed that passes hides no likely collision.
    rng = random.Random(20261123)
    codes = {promos.new_code("START", rng) for _ in range(1_000_000)}
    assert len(codes) == 1_000_000
    # and every character of the alphabet turns up, in every position
    sample = [code[6:].replace("-", "") for code in list(codes)[:2000]]
    for position in range(promos.LENGTH):
        assert {code[position] for code in sample} == set(promos.ALPHABET)


def test_expiry_by_valid_until_or_none() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    valid = Promo(kind="personal", discount="1", valid=timedelta(days=14))
    until = Promo(kind="personal", discount="1", until=date(2026, 12, 31))
    never = Promo(kind="personal", discount="1")
    assert promos.expiry(valid, now, MSK) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    # the end of the day in the scenario's zone: midnight after it, Moscow time
    assert promos.expiry(until, now, MSK) == datetime(2026, 12, 31, 21, 0, tzinfo=UTC)
    assert promos.expiry(never, now, MSK) is None


def test_expires_text_is_the_last_day_in_russian_format() -> None:
    def text(expires_at: datetime | None) -> str:
        return promos.expires_text(PromoCode(code="X", expires_at=expires_at), MSK)

    assert text(datetime(2026, 12, 31, 21, 0, tzinfo=UTC)) == "31.12.2026"  # midnight MSK
    assert text(datetime(2026, 12, 7, 9, 0, tzinfo=UTC)) == "07.12.2026"
    assert text(datetime(2026, 12, 7, 22, 0, tzinfo=UTC)) == "08.12.2026"  # 01:00 in Moscow
    assert text(None) == "без срока"


# ---- issuing ----


def with_promos(tmp_path: Path) -> Scenario:
    return load(scenario_folder(tmp_path, PROMOS)).scenario


async def new_lead(db: Database, clock: FakeClock, external_id: str = "1001") -> int:
    async with db.unit_of_work() as uow:
        lead, _ = await uow.leads.create(
            channel="telegram", external_id=external_id, now=clock.now()
        )
        await uow.commit()
        return lead.id


async def issue(db: Database, s: Scenario, lead_id: int, promo: str, now: datetime) -> PromoCode:
    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id, lock=True)
        assert lead is not None
        code = await promos.issue(uow, s, lead, promo, now)
        await uow.commit()
        return code


async def issued_events(db: Database, lead_id: int) -> list[dict[str, str]]:
    async with db.unit_of_work() as uow:
        return [
            e.payload
            for e in reversed(await uow.events.for_lead(lead_id))
            if e.name == "promo_issued"
        ]


async def test_issuing_twice_gives_the_same_live_code(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    s = with_promos(tmp_path)
    anna, oleg = await new_lead(db, clock, "1001"), await new_lead(db, clock, "1002")
    first = await issue(db, s, anna, "first_purchase", clock.now())
    clock.advance(timedelta(days=13))
    again = await issue(db, s, anna, "first_purchase", clock.now())
    other = await issue(db, s, oleg, "first_purchase", clock.now())

    assert CODE.match(first.code)
    assert again.code == first.code
    assert other.code != first.code
    assert first.lead_id == anna
    assert (first.expires_at, first.uses_left) == (utc(12, 7, 9), 1)
    assert await issued_events(db, anna) == [{"promo": "first_purchase", "code": first.code}]


async def test_an_expired_code_is_replaced_by_a_new_one(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    s = with_promos(tmp_path)
    lead_id = await new_lead(db, clock)
    first = await issue(db, s, lead_id, "first_purchase", clock.now())
    clock.advance(timedelta(days=14))  # exactly at expires_at: no longer live
    second = await issue(db, s, lead_id, "first_purchase", clock.now())

    assert second.code != first.code
    assert second.expires_at == clock.now() + timedelta(days=14)
    assert [e["code"] for e in await issued_events(db, lead_id)] == [first.code, second.code]


async def test_a_used_up_code_is_replaced(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    s = with_promos(tmp_path)
    lead_id = await new_lead(db, clock)
    first = await issue(db, s, lead_id, "first_purchase", clock.now())
    async with db.unit_of_work() as uow:  # what redemption (a later release) will do
        row = (await uow.session.execute(select(PromoCode))).scalar_one()
        row.uses_left = 0
        await uow.commit()
    assert (await issue(db, s, lead_id, "first_purchase", clock.now())).code != first.code


async def test_until_and_no_expiry(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    s = with_promos(tmp_path)
    lead_id = await new_lead(db, clock)
    yearly = await issue(db, s, lead_id, "yearly", clock.now())
    forever = await issue(db, s, lead_id, "forever", clock.now())

    assert yearly.code.startswith("YEAR-")
    assert yearly.expires_at == datetime(2026, 12, 31, 21, 0, tzinfo=UTC)
    assert promos.expires_text(yearly, MSK) == "31.12.2026"
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", forever.code)
    assert (forever.expires_at, forever.uses_left) == (None, None)
    clock.advance(timedelta(days=3650))
    assert (await issue(db, s, lead_id, "forever", clock.now())).code == forever.code


async def test_a_shared_promo_gives_the_campaign_code(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    s = with_promos(tmp_path)
    lead_id = await new_lead(db, clock)
    code = await issue(db, s, lead_id, "webinar", clock.now())

    assert code.code == "WEBINAR2026"
    assert promos.expires_text(code, MSK) == "31.12.2026"
    # Recorded once for /promo; the code itself is the scenario's, not stored per lead.
    assert await issued_events(db, lead_id) == [{"promo": "webinar", "code": "WEBINAR2026"}]
    await issue(db, s, lead_id, "webinar", clock.now())
    assert len(await issued_events(db, lead_id)) == 1
    async with db.unit_of_work() as uow:
        assert await uow.promos.for_lead(lead_id) == []


async def test_a_promo_past_its_until_gives_no_code(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    s = with_promos(tmp_path)
    lead_id = await new_lead(db, clock)
    for promo in ("webinar", "yearly"):
        with pytest.raises(promos.PromoEnded, match=f"^promo {promo} ended on 2026-12-31$"):
            await issue(db, s, lead_id, promo, utc(12, 31, 21))


async def test_a_taken_code_is_retried_with_a_new_one(
    db: Database, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = with_promos(tmp_path)
    anna, oleg = await new_lead(db, clock, "1001"), await new_lead(db, clock, "1002")
    taken = await issue(db, s, anna, "first_purchase", clock.now())
    fresh = iter([taken.code, taken.code, "START-22222-22222"])
    monkeypatch.setattr(promos, "new_code", lambda prefix: next(fresh))

    code = await issue(db, s, oleg, "first_purchase", clock.now())

    assert code.code == "START-22222-22222"
    async with db.unit_of_work() as uow:
        rows = (await uow.session.execute(select(PromoCode).order_by(PromoCode.id))).scalars()
        assert [(r.lead_id, r.code) for r in rows] == [(anna, taken.code), (oleg, code.code)]
    assert [e["code"] for e in await issued_events(db, oleg)] == [code.code]


async def test_values_cover_exactly_the_promos_mentioned_and_the_steps_promo(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    s = with_promos(tmp_path)
    lead_id = await new_lead(sqlite_db, clock)
    async with sqlite_db.unit_of_work() as uow:
        lead = await uow.session.get(Lead, lead_id)
        assert lead is not None
        values = await promos.promo_values(
            uow,
            s,
            lead,
            ["Код {promo.webinar} до {promo.webinar.expires}", None, "{promo.nowhere}"],
            clock.now(),
            also=["yearly", None],
        )
        await uow.commit()
    assert values.keys() == {
        "promo.webinar",
        "promo.webinar.expires",
        "promo.yearly",
        "promo.yearly.expires",
    }
    assert values["promo.webinar"] == "WEBINAR2026"
    async with sqlite_db.unit_of_work() as uow:
        assert [c.promo for c in await uow.promos.for_lead(lead_id)] == ["yearly"]


# ---- codes in messages ----

STEP_CHAIN = (
    PROMOS
    + """
sequences:
  promo_chain:
    steps:
      - id: offer
        after: 1h
        promo: first_purchase
        text: "{name}, ваш код {promo.first_purchase} до {promo.first_purchase.expires}"
      - id: silent
        after: 1h
        promo: yearly
        text: "Код уже у вас"
      - id: friends
        after: 1h
        text: "Позовите друзей: {referral_link}"
      - id: webinar
        after: 1h
        text: "Вебинар: {promo.webinar}"
referral: {}
"""
)


async def test_a_step_with_a_promo_is_sent_with_a_real_code(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(
        sqlite_db, load(scenario_folder(tmp_path, STEP_CHAIN, guide_starts="promo_chain")), clock
    )
    await bench.take_guide()
    await bench.run_until(utc(11, 24))

    texts = bench.transport.texts()
    match = re.fullmatch(r"Анна, ваш код (START-\S+) до 07\.12\.2026", texts[0])
    assert match is not None, texts
    assert CODE.match(match[1])
    assert texts[1] == "Код уже у вас"
    # No bot username is known to this bench: the link is the command to type.
    assert re.fullmatch(r"Позовите друзей: /start ref_[A-HJKMNP-Z2-9]{8}", texts[2]), texts
    assert texts[3] == "Вебинар: WEBINAR2026"
    assert [(r.step, r.status, r.last_error) for r in await bench.rows()] == [
        ("offer", "sent", None),
        ("silent", "sent", None),
        ("friends", "sent", None),
        ("webinar", "sent", None),
    ]
    issued = await bench.events("1001", "promo_issued")
    assert [e["promo"] for e in issued] == ["first_purchase", "yearly", "webinar"]
    assert issued[0]["code"] == match[1]


async def test_a_step_of_an_ended_promo_is_skipped_and_the_chain_goes_on(
    sqlite_db: Database, tmp_path: Path
) -> None:
    clock = FakeClock(utc(12, 31, 19))  # 22:00 in Moscow on the last day
    bench = Bench(
        sqlite_db, load(scenario_folder(tmp_path, STEP_CHAIN, guide_starts="promo_chain")), clock
    )
    await bench.take_guide()
    await bench.run_until(datetime(2027, 1, 5, tzinfo=UTC))

    rows = {r.step: (r.status, r.last_error) for r in await bench.rows()}
    assert rows["silent"] == ("skipped", "promo yearly ended on 2026-12-31")
    assert rows["webinar"] == ("skipped", "promo webinar ended on 2026-12-31")


def funnel_with_deliver(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "scenario"
    shutil.copytree(FIXTURE_SCENARIO, folder)
    funnel_yaml = folder / "funnel.yaml"
    old = '"Держите чек-лист: https://example.com/checklist"'
    source = funnel_yaml.read_text(encoding="utf-8")
    assert source.count(old) == 1
    funnel_yaml.write_text(source.replace(old, f'"{text}"'), encoding="utf-8")
    (folder / "promos.yaml").write_text(PROMOS, encoding="utf-8")
    return folder


async def test_an_offers_deliver_text_gets_the_code_at_once(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    folder = funnel_with_deliver(
        tmp_path, "Чек-лист и код {promo.first_purchase} до {promo.first_purchase.expires}"
    )
    funnel = Funnel(sqlite_db, ActiveScenario(load_scenario(folder)), clock)
    prospect = Prospect(funnel)

    await prospect.start("o_quick")
    match = re.search(r"Чек-лист и код (START-\S+) до 07\.12\.2026", prospect.texts())
    assert match is not None, prospect.texts()
    await prospect.start("o_quick")  # the same live code the second time
    assert match[1] in prospect.texts()

    async with sqlite_db.unit_of_work() as uow:
        rows = (await uow.session.execute(select(PromoCode))).scalars().all()
        assert [(r.promo, r.code) for r in rows] == [("first_purchase", match[1])]


async def test_a_reply_of_an_ended_promo_still_goes_saying_it_ended(
    sqlite_db: Database, tmp_path: Path
) -> None:
    folder = funnel_with_deliver(tmp_path, "Код вебинара {promo.webinar}")
    funnel = Funnel(sqlite_db, ActiveScenario(load_scenario(folder)), FakeClock(utc(12, 31, 21)))
    prospect = Prospect(funnel)

    await prospect.start("o_quick")
    assert "Чек-лист" in prospect.texts()  # the offer's title: it was opened
    assert "Код вебинара (акция уже завершилась)" in prospect.texts()  # the magnet still goes
    assert "{promo" not in prospect.texts()
    assert "сломалось" not in prospect.texts()
