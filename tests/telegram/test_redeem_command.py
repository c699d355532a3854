"""`/redeem CODE [amount]` in the managers' chat, through the real dispatcher: the answers a
manager reads, the purchase recorded, the usage hint, the lockout, and no such command for a
prospect in a private chat."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from storage.database import Database
from tests.prospect import snapshot
from tests.telegram.conftest import MANAGERS_CHAT, Harness
from tests.telegram.mocked_bot import sent_texts
from tests.telegram.test_managers import group_text, manager
from tests.test_promos import issue, new_lead
from tests.test_redemption import events_of, promo_funnel, promo_scenario, uses_left

IVAN = manager(501, "Иван")
USAGE = "Напишите /redeem КОД или /redeem КОД СУММА, например /redeem START-7KQ4M-9XRTB 45000."


@pytest.fixture
def funnel(sqlite_db: Database, clock: FakeClock, tmp_path: Path) -> Funnel:
    """The test funnel with promos (the `telegram` harness is built on it)."""
    return promo_funnel(sqlite_db, clock, promo_scenario(tmp_path))


async def lead_with_code(h: Harness, promo: str = "first_purchase") -> tuple[int, str]:
    """Anna (Telegram user 1001) and her code of this promo."""
    funnel = h.funnel
    anna = await new_lead(funnel.db, funnel.clock, "1001")
    row = await issue(
        funnel.db, funnel.scenarios.current.scenario, anna, promo, funnel.clock.now()
    )
    return anna, row.code


async def answer(h: Harness, text: str, user: dict[str, Any] = IVAN) -> str:
    """What the bot answered in the managers' chat to `text` (exactly one message)."""
    before = len(sent_texts(h.session, MANAGERS_CHAT))
    await group_text(h, user, text)
    [reply] = sent_texts(h.session, MANAGERS_CHAT)[before:]
    return reply


async def test_a_manager_redeems_a_code_typed_in_lower_case(telegram: Harness) -> None:
    anna, code = await lead_with_code(telegram)

    reply = await answer(telegram, f"/redeem {code.lower()}")

    assert reply == f"✅ Код {code} погашен: 10%. Лид #{anna}."
    assert await uses_left(telegram.funnel.db, code) == 0
    assert await events_of(telegram.funnel.db, anna, "promo_redeemed") == [
        {"promo": "first_purchase", "code": code, "by": "telegram:501 Иван"}
    ]


async def test_an_amount_is_recorded_as_a_purchase(telegram: Harness) -> None:
    anna, code = await lead_with_code(telegram)

    reply = await answer(telegram, f"/redeem {code.replace('-', '')} 45 000")

    assert reply == (f"✅ Код {code} погашен: 10%. Лид #{anna}. Сумма 45000 записана как покупка.")
    state = await snapshot(telegram.funnel.db, "1001")
    assert state.stage == "customer"
    assert await events_of(telegram.funnel.db, anna, "purchase") == [
        {"amount": 45000.0, "promo": "first_purchase", "via": "promo"}
    ]


async def test_a_code_with_uses_left_says_how_many(telegram: Harness) -> None:
    anna, code = await lead_with_code(telegram, "triple")
    assert await answer(telegram, f"/redeem {code}") == (
        f"✅ Код {code} погашен: 5%. Лид #{anna}. Осталось использований: 2."
    )


async def test_used_up_expired_and_unknown_codes_are_told_apart(telegram: Harness) -> None:
    clock = telegram.funnel.clock
    assert isinstance(clock, FakeClock)
    _, code = await lead_with_code(telegram)  # valid until 07.12.2026
    await answer(telegram, f"/redeem {code}")
    used_up = await answer(telegram, f"/redeem {code}")
    unknown = await answer(telegram, "/redeem START-22222-22222")
    oleg = await new_lead(telegram.funnel.db, clock, "1002")
    olegs = await issue(
        telegram.funnel.db,
        telegram.funnel.scenarios.current.scenario,
        oleg,
        "first_purchase",
        clock.now(),
    )
    clock.advance(timedelta(days=14))
    expired = await answer(telegram, f"/redeem {olegs.code}")

    assert used_up == f"🚫 Код {code} уже использован (23.11.2026 09:00 UTC)."
    assert unknown == "❓ Код START-22222-22222 не найден. Проверьте, нет ли опечатки."
    assert expired == f"⌛ Код {olegs.code} истёк: действовал до 07.12.2026."
    assert await uses_left(telegram.funnel.db, olegs.code) == 1


@pytest.mark.parametrize(
    "text", ["/redeem", "/redeem   ", "/redeem CODE сорок тысяч", "/redeem CODE -5"]
)
async def test_a_missing_code_or_a_malformed_amount_gets_the_usage_hint(
    telegram: Harness, text: str
) -> None:
    _, code = await lead_with_code(telegram)
    assert await answer(telegram, text.replace("CODE", code)) == USAGE
    assert await uses_left(telegram.funnel.db, code) == 1
    # A typo in the amount is no failed guess: the code still goes through afterwards.
    assert (await answer(telegram, f"/redeem {code} 100")).startswith(f"✅ Код {code} погашен")


async def test_a_manager_guessing_codes_is_locked_out_and_another_is_not(
    telegram: Harness,
) -> None:
    _, code = await lead_with_code(telegram, "triple")
    guesses = [await answer(telegram, f"/redeem TRI-2222{n}-22222") for n in range(5)]
    assert all(g.startswith("❓ Код TRI-2222") for g in guesses)

    locked = await answer(telegram, f"/redeem {code}")
    assert locked == "⛔ Слишком много неверных кодов подряд. Попробуйте через 15 мин."
    assert await uses_left(telegram.funnel.db, code) == 3

    olga = await answer(telegram, f"/redeem {code}", user=manager(502, "Ольга"))
    assert olga.startswith(f"✅ Код {code} погашен")

    clock = telegram.funnel.clock
    assert isinstance(clock, FakeClock)
    clock.advance(timedelta(minutes=15))
    assert (await answer(telegram, f"/redeem {code}")).startswith(f"✅ Код {code} погашен")


async def test_redeem_in_a_private_chat_is_no_manager_command(telegram: Harness) -> None:
    anna, code = await lead_with_code(telegram)
    prospect = telegram.prospect(1001)

    sent = await prospect.text(f"/redeem {code}")

    texts = sent_texts(telegram.session, 1001)
    assert sent  # the prospect is answered as a prospect (the text is a question to us) ...
    assert USAGE not in texts  # ... not as a manager
    assert not any("погашен" in t or "Код" in t for t in texts)
    assert sent_texts(telegram.session, MANAGERS_CHAT) == []
    assert await uses_left(telegram.funnel.db, code) == 1
    assert await events_of(telegram.funnel.db, anna, "promo_redeemed") == []
    # The code still works for a manager.
    assert (await answer(telegram, f"/redeem {code}")).startswith(f"✅ Код {code} погашен")


async def test_a_code_typed_in_parts_is_found_and_a_number_after_it_is_the_amount(
    telegram: Harness,
) -> None:
    anna, code = await lead_with_code(telegram, "triple")  # TRI-XXXXX-XXXXX
    first, second = code.removeprefix("TRI-").split("-")

    # The last group may be all digits: it is read as part of the code, since that finds it.
    assert await answer(telegram, f"/redeem TRI-{first} {second}") == (
        f"✅ Код {code} погашен: 5%. Лид #{anna}. Осталось использований: 2."
    )
    assert await answer(telegram, f"/redeem tri {first} {second} 12 500") == (
        f"✅ Код {code} погашен: 5%. Лид #{anna}. Сумма 12500 записана как покупка. "
        "Осталось использований: 1."
    )
    assert [e["amount"] for e in await events_of(telegram.funnel.db, anna, "purchase")] == [
        12500.0
    ]
