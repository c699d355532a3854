"""Redeeming promo codes (bot/redemption.py): finding a code however it is typed, one use
taken exactly once even by two processes at once, the answers for expired, used-up and
unknown codes, the brute-force lockout, purchases, shared campaign codes, retried requests,
and `POST /api/promo/redeem` over real HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.outside import LeadRef, Refused
from bot.redemption import Outcome, Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.settings import SettingsError, load_settings, parse_redeem_tokens
from handlers.web.api import EVENTS_PATH, REDEEM_PATH, Caller
from storage.database import Database
from storage.models import PromoCode, PromoRedemption
from tests.conftest import ROOT
from tests.delivery.harness import scenario_folder
from tests.prospect import events_of, snapshot
from tests.test_events_api import API_TOKEN, Api, serving
from tests.test_promos import issue, new_lead

PROMOS = """
promos:
  first_purchase: {kind: personal, prefix: START, discount: "10%", valid: 14d, uses: 1}
  triple: {kind: personal, prefix: TRI, discount: "5%", uses: 3}
  webinar: {kind: shared, code: WEBINAR2026, discount: "15%", until: 2026-12-31}
  duo: {kind: shared, code: DUO-PAIR, discount: "20%", uses: 2}
"""
PURCHASE_POINTS = 30


def promo_scenario(tmp_path: Path) -> Path:
    """The test funnel with the promos above, and points for a purchase."""
    folder = scenario_folder(tmp_path, PROMOS)
    funnel_yaml = folder / "funnel.yaml"
    text = funnel_yaml.read_text(encoding="utf-8")
    assert text.count("    case_read: 10\n") == 1
    funnel_yaml.write_text(
        text.replace(
            "    case_read: 10\n", f"    case_read: 10\n    purchase: {PURCHASE_POINTS}\n"
        ),
        encoding="utf-8",
    )
    return folder


def promo_funnel(db: Database, clock: FakeClock, folder: Path) -> Funnel:
    return Funnel(db, ActiveScenario(load_scenario(folder)), clock)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return promo_scenario(tmp_path)


@pytest.fixture
def funnel(db: Database, clock: FakeClock, folder: Path) -> Funnel:
    """The promo funnel on each database (SQLite and PostgreSQL)."""
    return promo_funnel(db, clock, folder)


@pytest.fixture
def redemptions(funnel: Funnel) -> Redemptions:
    return Redemptions(funnel)


async def give(funnel: Funnel, lead_id: int, promo: str) -> str:
    """Issue the lead's code of this promo now; the code."""
    s = funnel.scenarios.current.scenario
    return (await issue(funnel.db, s, lead_id, promo, funnel.clock.now())).code


async def uses_left(db: Database, code: str) -> int | None:
    """The code's uses left, as stored."""
    async with db.unit_of_work() as uow:
        query = select(PromoCode.uses_left).where(PromoCode.code == code)
        return (await uow.session.execute(query)).scalar_one()


async def redemption_count(db: Database) -> int:
    async with db.unit_of_work() as uow:
        query = select(func.count()).select_from(PromoRedemption)
        return int((await uow.session.execute(query)).scalar_one())


def status_of(outcome: Outcome) -> tuple[str, str]:
    return outcome.status, outcome.code


# ---- finding the code ----


async def test_a_code_is_found_in_any_case_with_or_without_dashes_and_spaces(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "triple")  # TRI-ABCDE-FGHJK, three uses
    body = code.removeprefix("TRI-")
    spellings = [code.lower(), code.replace("-", ""), f" tri {body[:5].lower()} {body[6:]} "]

    outcomes = [await redemptions.redeem(s, source="till", by="till") for s in spellings]

    assert [status_of(o) for o in outcomes] == [("redeemed", code)] * 3
    assert [o.uses_left for o in outcomes] == [2, 1, 0]
    assert {(o.promo, o.discount, o.lead_id) for o in outcomes} == {("triple", "5%", anna)}
    assert await uses_left(funnel.db, code) == 0
    assert status_of(await redemptions.redeem(code, source="till", by="till")) == (
        "used_up",
        code,
    )
    # The campaign code too, however it is typed.
    webinar = await redemptions.redeem(
        "webinar-2026", source="till", by="till", lead=LeadRef(lead_id=anna)
    )
    assert (webinar.status, webinar.code, webinar.discount) == ("redeemed", "WEBINAR2026", "15%")


# ---- exactly once ----


async def redeem_from_two_processes(
    db: Database, folder: Path, now: datetime, code: str, each: int
) -> list[str]:
    """Two worker processes (tests/redeem_worker.py), each with a Database of its own on the
    same database, redeem the code `each` times at once; every status they got."""
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.redeem_worker",
            db.url,
            str(folder),
            now.isoformat(),
            code,
            name,
            str(each),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for name in ("left", "right")
    ]
    for worker in workers:  # both connected before either fires
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 60)
        if line != b"ready\n":
            _, err = await worker.communicate()
            pytest.fail(f"worker did not start: {line!r}\n{err.decode()}")
    finished = await asyncio.wait_for(
        asyncio.gather(*(worker.communicate(b"go\n") for worker in workers)), 120
    )
    statuses: list[str] = []
    for worker, (out, err) in zip(workers, finished, strict=True):
        assert worker.returncode == 0, err.decode()
        statuses += json.loads(out)
    return statuses


@pytest.mark.parametrize(
    "promo",
    [
        "first_purchase",  # a lead's own code: the owner's lock is taken as well
        "duo",  # a campaign code with one use left, redeemed for nobody in particular
    ],
)
async def test_a_one_use_code_redeemed_50_times_at_once_by_two_processes_succeeds_once(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock, folder: Path, promo: str
) -> None:
    anna = await new_lead(funnel.db, clock)
    if promo == "duo":
        code = "DUO-PAIR"
        assert (await redemptions.redeem(code, source="till", by="till")).uses_left == 1
    else:
        code = await give(funnel, anna, promo)

    statuses = await redeem_from_two_processes(funnel.db, folder, clock.now(), code, each=25)

    assert Counter(statuses) == {"redeemed": 1, "used_up": 49}
    assert await uses_left(funnel.db, code) == 0
    assert await redemption_count(funnel.db) == (1 if promo == "first_purchase" else 2)
    owners = await events_of(funnel.db, anna, "promo_redeemed")
    assert len(owners) == (1 if promo == "first_purchase" else 0)


async def test_a_shared_code_with_two_uses_redeemed_at_once_by_ten_leads_succeeds_twice(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    leads = [await new_lead(funnel.db, clock, str(1000 + n)) for n in range(10)]

    outcomes = await asyncio.gather(
        *(
            redemptions.redeem("DUO-PAIR", source=f"till-{n}", by="till", lead=LeadRef(lead))
            for n, lead in enumerate(leads)
        )
    )

    assert Counter(o.status for o in outcomes) == {"redeemed": 2, "used_up": 8}
    assert {o.uses_left for o in outcomes if o.ok} == {0, 1}
    assert await uses_left(funnel.db, "DUO-PAIR") == 0
    assert await redemption_count(funnel.db) == 2


# ---- expired, used up, unknown ----


async def test_expired_used_up_and_unknown_codes_get_answers_of_their_own(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock, "1001")
    oleg = await new_lead(funnel.db, clock, "1002")
    annas = await give(funnel, anna, "first_purchase")  # valid 14 days: until 07.12.2026
    clock.advance(timedelta(days=7))
    olegs = await give(funnel, oleg, "first_purchase")  # until 14.12.2026
    redeemed_at = clock.now()
    assert (await redemptions.redeem(olegs, source="till", by="till")).ok

    clock.advance(timedelta(days=7))  # Anna's code expires exactly now
    expired = await redemptions.redeem(annas, source="till", by="till")
    used_up = await redemptions.redeem(olegs, source="till", by="till")
    unknown = await redemptions.redeem("START-22222-22222", source="till", by="till")

    assert (expired.status, expired.code, expired.last_day) == ("expired", annas, "07.12.2026")
    assert (used_up.status, used_up.code, used_up.used_at) == ("used_up", olegs, redeemed_at)
    assert (unknown.status, unknown.code) == ("unknown", "START-22222-22222")
    assert await uses_left(funnel.db, annas) == 1  # an expired code is not used
    assert await events_of(funnel.db, anna, "promo_redeemed") == []

    clock.advance(timedelta(days=30))  # into 2027: the campaign is over
    webinar = await redemptions.redeem(
        "WEBINAR2026", source="till", by="till", lead=LeadRef(lead_id=anna)
    )
    assert (webinar.status, webinar.last_day) == ("expired", "31.12.2026")


async def test_a_code_one_second_before_it_expires_still_works(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "first_purchase")
    clock.advance(timedelta(days=14) - timedelta(seconds=1))
    assert (await redemptions.redeem(code, source="till", by="till")).ok


# ---- brute force ----


async def test_five_failures_lock_the_source_out_until_the_window_passes(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "triple")
    for n in range(5):  # one a minute
        guess = await redemptions.redeem(f"TRI-2222{n}-22222", source="guesser", by="guesser")
        assert guess.status == "unknown"
        clock.advance(timedelta(minutes=1))
    # At 09:05, the first failure was at 09:00: locked until 09:15.
    locked = await redemptions.redeem(code, source="guesser", by="guesser")
    assert (locked.status, locked.retry_after) == ("locked", 10 * 60)
    assert await uses_left(funnel.db, code) == 3  # even a valid code is refused, and not used
    assert await events_of(funnel.db, anna, "promo_redeemed") == []

    # Somebody else is not affected.
    other = await redemptions.redeem(code, source="another-till", by="another-till")
    assert (other.status, other.uses_left) == ("redeemed", 2)

    # Locked attempts do not extend the lockout; one second before its end it still holds.
    clock.advance(timedelta(seconds=locked.retry_after - 1))
    again = await redemptions.redeem(code, source="guesser", by="guesser")
    assert (again.status, again.retry_after) == ("locked", 1)
    clock.advance(timedelta(seconds=1))
    free = await redemptions.redeem(code, source="guesser", by="guesser")
    assert (free.status, free.uses_left) == ("redeemed", 1)


async def test_simultaneous_guesses_from_one_source_are_all_counted(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    guesses = [f"TRI-2222{n % 10}-2222{n // 10}" for n in range(30)]

    outcomes = await asyncio.gather(
        *(redemptions.redeem(g, source="bot-farm", by="api") for g in guesses)
    )

    # Each attempt of a source waits for the one before: five are tried, the rest refused.
    assert Counter(o.status for o in outcomes) == {"unknown": 5, "locked": 25}


async def test_used_up_and_expired_codes_count_as_failures_too(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "first_purchase")
    assert (await redemptions.redeem(code, source="till", by="till")).ok
    statuses = [
        (await redemptions.redeem(code, source="till", by="till")).status for _ in range(6)
    ]
    assert statuses == ["used_up"] * 5 + ["locked"]


# ---- what a redemption records ----


async def test_a_redemption_with_an_amount_is_a_purchase_and_makes_a_customer(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock, "1001")
    code = await give(funnel, anna, "first_purchase")
    before = await snapshot(funnel.db, "1001")

    outcome = await redemptions.redeem(
        code.lower(), source="telegram:501", by="telegram:501 Иван", amount=Decimal("15000.50")
    )

    assert (outcome.status, outcome.lead_id, outcome.amount) == (
        "redeemed",
        anna,
        Decimal("15000.50"),
    )
    after = await snapshot(funnel.db, "1001")
    assert (after.stage, after.stages[-1]) == ("customer", "customer")
    assert after.score == before.score + PURCHASE_POINTS
    assert await events_of(funnel.db, anna, "promo_redeemed") == [
        {"promo": "first_purchase", "code": code, "by": "telegram:501 Иван", "amount": 15000.5}
    ]
    assert await events_of(funnel.db, anna, "purchase") == [
        {"amount": 15000.5, "promo": "first_purchase", "via": "promo"}
    ]


async def test_a_redemption_without_an_amount_is_no_purchase(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock, "1001")
    code = await give(funnel, anna, "first_purchase")
    before = await snapshot(funnel.db, "1001")

    assert (await redemptions.redeem(code, source="till", by="till")).ok

    after = await snapshot(funnel.db, "1001")
    assert (after.stage, after.score) == (before.stage, before.score)
    assert after.events[-1] == "promo_redeemed"
    assert "purchase" not in after.events


async def test_a_code_redeemed_by_nobody_known_records_no_event(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock, "1001")
    outcome = await redemptions.redeem("DUO-PAIR", source="till", by="till", amount=Decimal(500))
    assert (outcome.status, outcome.lead_id, outcome.uses_left) == ("redeemed", None, 1)
    assert (await snapshot(funnel.db, "1001")).events == []
    with pytest.raises(Refused, match=r"^no such lead$"):
        await redemptions.redeem("DUO-PAIR", source="till", by="till", lead=LeadRef(anna + 1))
    assert await uses_left(funnel.db, "DUO-PAIR") == 1  # the refused request used nothing


# ---- shared campaign codes ----


async def test_a_shared_code_is_counted_per_lead(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock, "1001")
    oleg = await new_lead(funnel.db, clock, "1002")

    async def webinar(lead_id: int) -> Outcome:
        return await redemptions.redeem(
            "WEBINAR2026", source="till", by="till", lead=LeadRef(lead_id=lead_id)
        )

    first = await webinar(anna)
    again = await webinar(anna)
    olegs = await webinar(oleg)

    assert (first.status, first.lead_id, first.uses_left) == ("redeemed", anna, None)
    assert (again.status, again.code) == ("used_up", "WEBINAR2026")
    assert (olegs.status, olegs.lead_id, olegs.uses_left) == ("redeemed", oleg, None)
    assert await uses_left(funnel.db, "WEBINAR2026") is None  # no limit for everybody
    assert len(await events_of(funnel.db, anna, "promo_redeemed")) == 1


async def test_a_shared_code_with_uses_2_serves_two_leads_in_all(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    leads = [await new_lead(funnel.db, clock, str(1000 + n)) for n in range(3)]
    outcomes = [
        await redemptions.redeem("duo pair", source="till", by="till", lead=LeadRef(lead))
        for lead in leads
    ]
    assert [(o.status, o.uses_left) for o in outcomes] == [
        ("redeemed", 1),
        ("redeemed", 0),
        ("used_up", None),
    ]
    assert await uses_left(funnel.db, "DUO-PAIR") == 0
    assert await events_of(funnel.db, leads[2], "promo_redeemed") == []


# ---- retried requests ----


async def test_a_retry_with_the_same_key_is_answered_again_and_takes_no_second_use(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "triple")

    first = await redemptions.redeem(code, source="api:shop", by="api", key="order-17")
    retry = await redemptions.redeem(code, source="api:shop", by="api", key="order-17")
    other = await redemptions.redeem(code, source="api:shop", by="api", key="order-18")

    assert (first.status, first.uses_left, first.duplicate) == ("redeemed", 2, False)
    assert (retry.status, retry.code, retry.lead_id, retry.duplicate) == (
        "redeemed",
        code,
        anna,
        True,
    )
    assert retry.uses_left == 2
    assert (other.status, other.uses_left, other.duplicate) == ("redeemed", 1, False)
    assert await uses_left(funnel.db, code) == 1
    assert await redemption_count(funnel.db) == 2
    assert len(await events_of(funnel.db, anna, "promo_redeemed")) == 2


async def test_the_same_request_twice_at_once_takes_one_use_and_both_are_answered(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "triple")

    # Two sources, so the per-source queue does not order them: they race on the key.
    both = await asyncio.gather(
        redemptions.redeem(code, source="api:a", by="api", key="order-5"),
        redemptions.redeem(code, source="api:b", by="api", key="order-5"),
    )

    assert sorted((o.status, o.duplicate) for o in both) == [
        ("redeemed", False),
        ("redeemed", True),
    ]
    assert await uses_left(funnel.db, code) == 2
    assert await redemption_count(funnel.db) == 1


# ---- POST /api/promo/redeem ----


@pytest.fixture
def sqlite_funnel(sqlite_db: Database, clock: FakeClock, folder: Path) -> Funnel:
    return promo_funnel(sqlite_db, clock, folder)


@pytest.fixture
async def api(sqlite_funnel: Funnel) -> AsyncIterator[Api]:
    async with serving(sqlite_funnel, Redemptions(sqlite_funnel), path=REDEEM_PATH) as client:
        yield client


async def test_the_api_answers_each_outcome_with_its_status_code(
    api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    funnel = sqlite_funnel
    anna = await new_lead(funnel.db, clock, "1001")
    oleg = await new_lead(funnel.db, clock, "1002")
    annas = await give(funnel, anna, "first_purchase")
    olegs = await give(funnel, oleg, "first_purchase")

    status, answer, _ = await api.post({"code": olegs.lower(), "source": "till-1"})
    assert (status, answer) == (
        200,
        {
            "status": "redeemed",
            "code": olegs,
            "promo": "first_purchase",
            "discount": "10%",
            "lead_id": oleg,
            "uses_left": 0,
            "duplicate": False,
        },
    )
    status, answer, _ = await api.post({"code": olegs, "source": "till-1"})
    assert (status, answer) == (
        409,
        {
            "status": "used_up",
            "code": olegs,
            "error": "the code has been used up",
            "used_at": "2026-11-23T09:00:00+00:00",
        },
    )
    status, answer, _ = await api.post({"code": "START-22222-22222", "source": "till-1"})
    assert (status, answer) == (
        404,
        {"status": "unknown", "code": "START-22222-22222", "error": "no such code"},
    )
    clock.advance(timedelta(days=14))
    status, answer, _ = await api.post({"code": annas, "source": "till-1"})
    assert (status, answer) == (
        410,
        {
            "status": "expired",
            "code": annas,
            "error": "the code expired: its last day was 07.12.2026",
        },
    )


FRONT_DESK = "front-desk-token-0123456789"
WEB_FORM = "web-form-token-0123456789ab"
TILLS = {FRONT_DESK: Caller("front-desk"), WEB_FORM: Caller("web-form", public=True)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def tills_api(sqlite_funnel: Funnel) -> AsyncIterator[Api]:
    """The redemption API with API_TOKEN and two tills of their own (REDEEM_TOKENS)."""
    redemptions = Redemptions(sqlite_funnel)
    async with serving(sqlite_funnel, redemptions, path=REDEEM_PATH, tills=TILLS) as client:
        yield client


async def test_a_guesser_is_locked_out_whatever_source_it_writes_while_a_till_redeems(
    tills_api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    api = tills_api
    anna = await new_lead(sqlite_funnel.db, clock)
    code = await give(sqlite_funnel, anna, "triple")
    # The guesser holds API_TOKEN and writes a new `source` every time: it used to be the
    # lockout's key, so rotating it was never locked.
    statuses = [
        (await api.post({"code": f"NOPE-{n}", "source": f"form:203.0.113.{n}"}))[0]
        for n in range(200)
    ]
    assert statuses == [404] * 5 + [429] * 195

    status, answer, headers = await api.post({"code": code, "source": "somebody-new"})
    assert status == 429
    assert headers["Retry-After"] == "900"
    assert answer == {
        "status": "locked",
        "code": code,
        "error": "too many failed attempts from this caller; try again later",
        "retry_after": 900,
    }
    assert await uses_left(sqlite_funnel.db, code) == 3

    # The front desk has a token of its own: the guesser does not lock it out.
    status, answer, _ = await api.post({"code": code}, headers=bearer(FRONT_DESK))
    assert (status, answer["uses_left"]) == (200, 2)
    clock.advance(timedelta(seconds=900))
    status, answer, _ = await api.post({"code": code})
    assert (status, answer["uses_left"]) == (200, 1)


async def test_a_till_guessing_locks_out_that_till_alone(
    tills_api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    anna = await new_lead(sqlite_funnel.db, clock)
    code = await give(sqlite_funnel, anna, "triple")
    for n in range(5):
        status, _, _ = await tills_api.post({"code": f"NOPE-{n}"}, headers=bearer(FRONT_DESK))
        assert status == 404
    status, _, _ = await tills_api.post({"code": code}, headers=bearer(FRONT_DESK))
    assert status == 429

    status, answer, _ = await tills_api.post({"code": code})  # API_TOKEN
    assert (status, answer["uses_left"]) == (200, 2)
    status, answer, _ = await tills_api.post({"code": code}, headers=bearer(WEB_FORM))
    assert (status, answer["uses_left"]) == (200, 1)
    # Redeemed by whom the token names.
    async with sqlite_funnel.db.unit_of_work() as uow:
        by = (await uow.session.scalars(select(PromoRedemption.by))).all()
    assert sorted(by) == ["api", "web-form"]


async def test_a_public_form_hears_the_same_refusal_for_unknown_used_up_and_expired(
    tills_api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    funnel = sqlite_funnel
    anna = await new_lead(funnel.db, clock, "1001")
    oleg = await new_lead(funnel.db, clock, "1002")
    annas = await give(funnel, anna, "first_purchase")
    olegs = await give(funnel, oleg, "first_purchase")
    form = bearer(WEB_FORM)
    status, answer, _ = await tills_api.post({"code": olegs}, headers=form)
    assert (status, answer["status"]) == (200, "redeemed")

    till = bearer(FRONT_DESK)

    async def ask(code: str) -> tuple[tuple[int, dict[str, Any]], str]:
        """What the form hears, with the code blanked, and what the till hears."""
        status, body, _ = await tills_api.post({"code": code}, headers=form)
        told = (await tills_api.post({"code": code}, headers=till))[1]["status"]
        return (status, {**body, "code": "?"}), told

    used_up = await ask(olegs)
    unknown = await ask("START-22222-22222")
    clock.advance(timedelta(days=14))  # Anna's code has expired
    expired = await ask(annas)

    # Nothing tells a guesser that a code exists: one status, one body bar the code itself.
    refused = (404, {"status": "refused", "code": "?", "error": "the code is not accepted"})
    assert [used_up[0], unknown[0], expired[0]] == [refused] * 3
    # The till (not public) is told why.
    assert [used_up[1], unknown[1], expired[1]] == ["used_up", "unknown", "expired"]


async def test_a_till_token_redeems_but_cannot_post_events(
    tills_api: Api, sqlite_funnel: Funnel
) -> None:
    tills_api.path = EVENTS_PATH
    body = {"event": "paid", "lead_id": 1}
    status, answer, _ = await tills_api.post(body, headers=bearer(FRONT_DESK))
    assert (status, answer) == (401, {"error": "a valid bearer token is required"})


def test_redeem_tokens_are_read_as_named_tills_and_a_bad_one_is_named() -> None:
    tills = parse_redeem_tokens(f" front-desk:{FRONT_DESK}, web-form:{WEB_FORM}:public ")
    assert tills == {FRONT_DESK: ("front-desk", False), WEB_FORM: ("web-form", True)}
    for bad in (
        "front-desk",
        "front-desk:short",
        f"Front Desk:{FRONT_DESK}",
        f"api:{WEB_FORM}",
        f"till:{WEB_FORM}:open",
    ):
        with pytest.raises(SettingsError, match="REDEEM_TOKENS"):
            load_settings(redeem_tokens=bad)


async def test_the_api_records_a_purchase_for_the_lead_named(
    api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    anna = await new_lead(sqlite_funnel.db, clock, "1001")
    body = {"code": "WEBINAR2026", "lead_id": anna, "amount": "4990.00", "id": "order-1"}

    status, answer, _ = await api.post(body)
    assert (status, answer["lead_id"], answer["uses_left"], answer["duplicate"]) == (
        200,
        anna,
        None,
        False,
    )
    status, answer, _ = await api.post(body)  # the shop retries: answered, not counted
    assert (status, answer["status"], answer["duplicate"]) == (200, "redeemed", True)

    state = await snapshot(sqlite_funnel.db, "1001")
    assert state.stage == "customer"
    assert state.events.count("purchase") == 1
    assert await events_of(sqlite_funnel.db, anna, "purchase") == [
        {"amount": 4990.0, "promo": "webinar", "via": "promo"}
    ]
    status, answer, _ = await api.post({**body, "id": "order-2"})  # once per client
    assert (status, answer["status"]) == (409, "used_up")


async def test_the_api_refuses_an_unknown_lead_and_uses_nothing(
    api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    await new_lead(sqlite_funnel.db, clock)
    status, answer, _ = await api.post({"code": "DUO-PAIR", "email": "nobody@example.com"})
    assert (status, answer) == (404, {"error": "no such lead"})
    status, answer, _ = await api.post({"code": "DUO-PAIR"})
    assert (status, answer["uses_left"]) == (200, 1)


async def test_the_api_without_a_token_answers_401_and_uses_nothing(
    api: Api, sqlite_funnel: Funnel, clock: FakeClock
) -> None:
    anna = await new_lead(sqlite_funnel.db, clock)
    code = await give(sqlite_funnel, anna, "first_purchase")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
        status, answer, sent = await api.post({"code": code}, headers=headers)
        assert (status, answer) == (401, {"error": "a valid bearer token is required"}), headers
        assert sent["WWW-Authenticate"] == "Bearer"
    assert await uses_left(sqlite_funnel.db, code) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"amount": 100}, "code: Field required"),
        ({"code": ""}, "code: String should have at least 1 character"),
        (
            {"code": "CODE", "lead_id": 1, "email": "anna@example.com"},
            "at most one of lead_id, phone, email, token",
        ),
        ({"code": "CODE", "amount": -1}, "amount: Input should be greater than or equal to 0"),
        ({"code": "CODE", "colour": "red"}, "colour: Extra inputs are not permitted"),
        (["CODE"], "valid dictionary"),
    ],
    ids=["no-code", "empty-code", "two-leads", "negative-amount", "unknown-field", "a-list"],
)
async def test_the_api_refuses_a_bad_body_with_the_reason_and_uses_nothing(
    api: Api, sqlite_funnel: Funnel, clock: FakeClock, body: Any, reason: str
) -> None:
    anna = await new_lead(sqlite_funnel.db, clock)
    code = await give(sqlite_funnel, anna, "first_purchase")
    if isinstance(body, dict) and body.get("code") == "CODE":
        body = {**body, "code": code}
    status, answer, _ = await api.post(body)
    assert status == 400
    assert reason in answer["error"]
    assert await uses_left(sqlite_funnel.db, code) == 1


async def test_the_api_refuses_a_body_that_is_not_json(api: Api) -> None:
    status, answer, _ = await api.post(data=b"code=START-22222-22222")
    assert (status, answer) == (400, {"error": "the body is not JSON"})


async def test_the_api_works_on_each_database(
    funnel: Funnel, redemptions: Redemptions, clock: FakeClock
) -> None:
    anna = await new_lead(funnel.db, clock)
    code = await give(funnel, anna, "first_purchase")
    async with serving(funnel, redemptions, path=REDEEM_PATH) as api:
        assert (await api.post({"code": code, "amount": 100}))[0] == 200
        assert (await api.post({"code": code}))[0] == 409
    assert await events_of(funnel.db, anna, "purchase") == [
        {"amount": 100.0, "promo": "first_purchase", "via": "promo"}
    ]
