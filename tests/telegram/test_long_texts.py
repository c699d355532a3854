"""A message Telegram refuses as too long is not sent again and again: its outbox row fails
at once with Telegram's reason, and the warm-up chain goes on. (Texts that grow too long are
split before they are sent: tests/e2e/test_long_texts.py.)"""

from __future__ import annotations

from datetime import timedelta

from aiogram.methods import SendMessage
from sqlalchemy import select

from bot.clock import FakeClock
from storage.database import Database
from storage.models import OutboxRow
from tests.telegram.conftest import Harness
from tests.telegram.mocked_bot import sent_texts

CHECK_IN = "Анна, получилось открыть гайд?"


async def steps(db: Database) -> list[tuple[str, str, int, str | None]]:
    query = select(OutboxRow).where(OutboxRow.kind == "step").order_by(OutboxRow.id)
    async with db.unit_of_work() as uow:
        rows = (await uow.session.execute(query)).scalars()
        return [(r.payload["step"], r.status, r.attempts, r.last_error) for r in rows]


async def test_a_step_telegram_refuses_as_too_long_fails_once_with_the_reason(
    telegram: Harness, sqlite_db: Database
) -> None:
    clock = telegram.funnel.clock
    assert isinstance(clock, FakeClock)
    anna = telegram.prospect()
    await anna.text("/start o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.text("anna@example.com")
    await telegram.deliver()  # the managers hear of the new lead

    clock.advance(timedelta(hours=1))  # the warm-up's first step is due
    telegram.session.fail_next(SendMessage, 400, "Bad Request: message is too long")
    await telegram.deliver()
    clock.advance(timedelta(hours=1))  # long past any retry's backoff
    await telegram.deliver()

    assert sent_texts(telegram.session, 1001).count(CHECK_IN) == 1  # tried once, not again
    assert await steps(sqlite_db) == [
        (
            "check_in",
            "failed",
            1,
            "telegram refused message 1: Bad Request: message is too long",
        ),
        ("nps", "pending", 0, None),  # the chain goes on
    ]
