"""`/wait` in `leadbot chat`: the fixture's guide warm-up plays out in order, on time."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import FakeClock
from bot.console import ConsoleChat, ConsoleTransport
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.pacing import DEFAULT_LIMITS, MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import snapshot

NPS_BUTTONS = [f"     [{n + 1}] {n}" for n in range(11)]


async def test_wait_delivers_the_guide_warmup_when_each_step_falls_due(
    funnel: Funnel, sqlite_db: Database, clock: FakeClock
) -> None:
    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    transport = ConsoleTransport()
    worker = DeliveryWorker(
        sqlite_db,
        ActiveScenario(load_scenario(FIXTURE_SCENARIO)),
        clock,
        {"console": transport},
        MemoryPacer(DEFAULT_LIMITS, clock=lambda: clock.now().timestamp()),
        funnel,
        worker_id="chat",
        sleep=sleep,
    )
    chat = ConsoleChat(funnel, clock, worker=worker, transport=transport)
    await chat.process("/start o_guide")
    await chat.process("1")  # Даю согласие
    await chat.process("1")  # Да, присылайте
    delivered = await chat.process("guest@example.com")
    assert delivered is not None
    assert delivered[:3] == ["bot: Ваш гайд, Гость.", "     [file] guide.pdf", "     [1] В меню"]

    assert await chat.process("/wait 59m") == [
        "(clock moved 59m forward, now 2026-11-23 12:59 MSK)"
    ]
    assert await chat.process("/wait 1w") == [
        "(2026-11-23 13:00 MSK)",
        "bot: Гость, получилось открыть гайд?",
        "     [link] Читать кейс -> https://example.com/case",
        "(clock moved 1w forward, now 2026-11-30 12:59 MSK)",
    ]
    # the question comes 7 days after the first step, at 13:00 in Moscow (the fixture's zone)
    assert await chat.process("/wait 1h") == [
        "(2026-11-30 13:00 MSK)",
        "bot: Оцените нас",
        "bot: Оцените от 0 до 10",
        *NPS_BUTTONS,
        "(clock moved 1h forward, now 2026-11-30 13:59 MSK)",
    ]
    assert await chat.process("11") == ["bot: Спасибо за ответ!", "     [1] В меню"]
    state = await snapshot(sqlite_db, "console", channel="console")
    assert state.answers["nps"] == "10"
    assert state.sequences == {"guide_warmup": "finished"}
    assert await chat.process("/wait 1w") == ["(clock moved 1w forward, now 2026-12-07 13:59 MSK)"]
