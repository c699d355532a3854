"""Broadcasts: a segment, the outbox, each lead's window, once per lead."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from bot import broadcasts
from bot.clock import FakeClock
from bot.console import ConsoleTransport
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.pacing import MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.conditions import Rule
from bot.scenario.loader import load_scenario
from bot.scenario.settings import RfmSettings
from storage.database import Database
from tests.conftest import FIXTURE_SCENARIO, ROOT
from tests.prospect import Prospect, snapshot


async def subscribed(funnel: Funnel, external_id: str, *, marketing: bool) -> None:
    """A console prospect who took the guide, with or without advertising consent."""
    person = Prospect(funnel, external_id, channel="console")
    await person.start("src_vkads-o_guide")
    await person.press("Даю согласие")
    await person.press("Да, присылайте" if marketing else "Нет, спасибо")
    await person.say(f"{external_id}@example.com")


def segment(text: str) -> Rule:
    return TypeAdapter(Rule).validate_python(text)


async def test_a_broadcast_reaches_the_segment_with_consent_once_in_its_window(
    sqlite_db: Database, clock: FakeClock
) -> None:
    scenarios = ActiveScenario(load_scenario(FIXTURE_SCENARIO))
    funnel = Funnel(sqlite_db, scenarios, clock)
    await subscribed(funnel, "yes", marketing=True)
    await subscribed(funnel, "no", marketing=False)
    crowd = await broadcasts.audience(
        sqlite_db,
        segment({"source": "vkads", "offer": "guide"}),
        now=clock.now(),
        rfm_limits=RfmSettings(),
    )
    assert crowd.matched == 2
    assert len(crowd.reachable) == 1  # advertising only with consent
    evening = datetime(2026, 11, 23, 19, 30, tzinfo=UTC)  # 22:30 in Moscow: quiet hours
    queued = await broadcasts.enqueue(
        sqlite_db,
        scenarios.current.scenario,
        "webinar",
        crowd.reachable,
        now=evening,
        text="Вебинар завтра в 11:00",
    )
    again = await broadcasts.enqueue(
        sqlite_db,
        scenarios.current.scenario,
        "webinar",
        crowd.reachable,
        now=evening,
        text="Вебинар завтра в 11:00",
    )
    assert (queued, again) == (1, 0)

    transport = ConsoleTransport()
    worker = DeliveryWorker(
        sqlite_db,
        scenarios,
        clock,
        {"console": transport},
        MemoryPacer(),
        funnel,
        worker_id="w1",
    )
    clock.advance(evening - clock.now())
    await worker.drain()
    assert transport.outbox == []  # not at night
    assert await worker.next_due() == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 10:00 MSK
    clock.advance(datetime(2026, 11, 24, 7, 0, tzinfo=UTC) - clock.now())
    await worker.drain()
    # The guide's warm-up step waited for the morning too; the broadcast came once.
    assert [m.text for m in transport.outbox] == [
        "Анна, получилось открыть гайд?",
        "Вебинар завтра в 11:00",
    ]
    assert "broadcast_sent" in (await snapshot(sqlite_db, "yes", channel="console")).events


def test_a_dry_run_in_a_real_process_on_an_empty_database(tmp_path: Path) -> None:
    folder = tmp_path / "sc"
    shutil.copytree(FIXTURE_SCENARIO, folder)
    with (folder / "funnel.yaml").open("a", encoding="utf-8") as out:
        out.write(
            "broadcasts:\n  webinar:\n    segment: {tag: wants_audit}\n"
            '    text: "Приходите на вебинар"\n    at: "2026-12-01 11:00"\n'
        )
    url = f"sqlite+aiosqlite:///{tmp_path}/b.db"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    made = subprocess.run(  # the bot's database, with no leads yet
        [sys.executable, "-m", "bot.cli", "db", "upgrade", "--db", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "broadcast",
            "--step",
            "webinar",
            "--dry-run",
            "--scenario",
            str(folder),
            "--db",
            url,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Пробный запуск: рассылка webinar из сценария. В очередь ничего не ставится.",
        "Под сегмент подходят: 0 лидов. Получат: 0 лидов.",
        "",
        "Пример сообщения (в сегменте нет лидов, подстановки не заполнены):",
        "  │ Приходите на вебинар",
        "",
        "Отправлять некому.",
    ]
