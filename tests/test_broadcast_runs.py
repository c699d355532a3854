"""A broadcast run's record, progress and cancel on SQLite and PostgreSQL, and a cancel while a
worker is sending the run: no row that ends cancelled ever went on the wire."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import select, update

from bot import broadcast_texts, broadcasts
from bot.clock import SystemClock
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.messages import Outgoing
from bot.pacing import ChannelLimits, Limit, MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage import broadcast_runs
from storage.database import Database
from storage.models import BroadcastRun, OutboxRow
from tests.broadcast_leads import Person, seed
from tests.conftest import FIXTURE_SCENARIO

LEADS = 200
RATE = 100.0  # msg/s: two seconds for the run, cancelled in the middle
LIMITS = {
    "telegram": ChannelLimits(
        overall=Limit(rate=RATE, burst=1),
        per_chat=Limit(rate=1.0, burst=1),
        per_group=Limit(rate=1.0, burst=1),
    )
}


def scenario(folder: Path) -> ActiveScenario:
    """The test funnel without quiet hours: everything queued is due at once."""
    shutil.copytree(FIXTURE_SCENARIO, folder)
    path = folder / "funnel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["settings"].pop("quiet_hours")
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return ActiveScenario(load_scenario(folder))


async def rows(db: Database, run_id: str) -> dict[int, tuple[str, str]]:
    """lead -> (status, idempotency key) of the run's rows."""
    async with db.reading() as session:
        query = select(OutboxRow.lead_id, OutboxRow.status, OutboxRow.idempotency_key).where(
            OutboxRow.payload[broadcast_runs.RUN_KEY].as_string() == run_id
        )
        return {lead: (status, key) for lead, status, key in await session.execute(query)}


async def progress(db: Database, run_id: str) -> broadcast_runs.Progress:
    async with db.reading() as session:
        run = await broadcast_runs.get_run(session, run_id)
        assert run is not None
        return await broadcast_runs.progress(session, run, reasons=True)


async def cancel(db: Database, run_id: str) -> int:
    async with db.unit_of_work() as uow:
        run = await broadcast_runs.get_run(uow.session, run_id)
        assert run is not None
        cancelled = await broadcast_runs.cancel_run(uow.session, run, now=datetime.now(UTC))
        await uow.commit()
    return cancelled


async def test_runs_are_numbered_per_broadcast(db: Database) -> None:
    now = datetime.now(UTC)
    first = await broadcasts.start_run(db, "webinar", now=now)
    second = await broadcasts.start_run(db, "webinar", now=now, segment="{tag: a}")
    other = await broadcasts.start_run(db, "webinar_2", now=now)
    assert (first, second, other) == ("webinar-1", "webinar-2", "webinar_2-1")
    await broadcasts.forget_run(db, second)
    async with db.reading() as session:
        assert sorted(await broadcast_runs.run_ids(session)) == ["webinar-1", "webinar_2-1"]


async def test_progress_and_cancel_count_only_the_runs_own_rows(
    db: Database, tmp_path: Path
) -> None:
    s = scenario(tmp_path / "scenario").current.scenario
    ids = await seed(db, *(Person(f"p{n}") for n in range(5)))
    leads = list(ids.values())
    now = datetime.now(UTC)
    first = await broadcasts.start_run(db, "webinar", now=now)
    assert await broadcasts.enqueue(db, s, "webinar", leads[:3], now=now, run=first) == 3
    # Another broadcast queued meanwhile: its rows share the run's range of ids, not its count.
    assert await broadcasts.enqueue(db, s, "sale", leads, now=now, text="Скидка") == 5
    second = await broadcasts.start_run(db, "webinar", now=now)
    assert await broadcasts.enqueue(db, s, "webinar", leads, now=now, run=second) == 2
    async with db.unit_of_work() as uow:  # one row of the first run went out
        await uow.session.execute(
            update(OutboxRow)
            .where(OutboxRow.idempotency_key == broadcasts.key_of("webinar", leads[0]))
            .values(status="sent", sent_at=now)
        )
        await uow.commit()

    assert (await progress(db, first)).counts == {"sent": 1, "pending": 2}
    assert await cancel(db, first) == 2
    after = await progress(db, first)
    assert after.counts == {"sent": 1, "cancelled": 2}
    assert after.reasons == {("cancelled", broadcast_runs.CANCELLED_BY_COMMAND): 2}
    assert (await progress(db, second)).counts == {"pending": 2}  # the other run goes on
    assert await cancel(db, first) == 0  # nothing left to cancel

    # Who got it keeps it; whom the cancel took back may be queued again.
    again = await broadcasts.already_queued(db, "webinar", leads)
    assert again == {leads[0], *leads[3:]}
    third = await broadcasts.start_run(db, "webinar", now=now)
    assert await broadcasts.enqueue(db, s, "webinar", leads, now=now, run=third) == 2
    assert (await progress(db, third)).counts == {"pending": 2}
    assert sorted(lead for lead, (status, _) in (await rows(db, third)).items()) == leads[1:3]


@dataclass
class Wire:
    """Telegram as the worker sees it: every attempt, in order. From the sixth on, answers
    wait for `resume`: the platform is slow while the run is cancelled."""

    attempts: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    resume: asyncio.Event = field(default_factory=asyncio.Event)

    channel = "telegram"

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        self.attempts.append(external_id)
        if len(self.attempts) > 5:
            self.started.set()
            await self.resume.wait()


async def test_a_worker_sending_the_run_sends_nothing_it_cancelled(
    db: Database, tmp_path: Path
) -> None:
    scenarios = scenario(tmp_path / "scenario")
    people = [Person(str(7000 + n), channel="telegram") for n in range(LEADS)]
    ids = await seed(db, *people)
    clock = SystemClock()
    run_id = await broadcasts.start_run(db, "news", now=clock.now())
    s = scenarios.current.scenario
    queued = await broadcasts.enqueue(
        db, s, "news", list(ids.values()), now=clock.now(), text="Новости", run=run_id
    )
    assert queued == LEADS
    wire = Wire()
    worker = DeliveryWorker(
        db,
        scenarios,
        clock,
        {"telegram": wire},
        MemoryPacer(LIMITS),
        Funnel(db, scenarios, clock),
        worker_id="w",
        batch=LEADS // 2,  # half the run claimed, being paced out; half still queued
    )
    try:
        sending = asyncio.create_task(worker.tick())
        await asyncio.wait_for(wire.started.wait(), 30)
        cancelled = await cancel(db, run_id)
        wire.resume.set()
        assert await asyncio.wait_for(sending, 60) == LEADS // 2
        assert await worker.tick() == 0  # nothing of the run is left to claim
    finally:
        await worker.pacer.aclose()

    final = await rows(db, run_id)
    by_lead = {lead_id: external for external, lead_id in ids.items()}
    on_the_wire = set(wire.attempts)
    sent = {by_lead[lead] for lead, (status, _) in final.items() if status == "sent"}
    stopped = {by_lead[lead] for lead, (status, _) in final.items() if status == "cancelled"}
    assert sent | stopped == set(ids)  # every row ended one way or the other
    assert stopped.isdisjoint(on_the_wire)  # a cancelled row never went out
    assert sent == on_the_wire  # what went out is recorded as sent, each once
    assert len(wire.attempts) == len(on_the_wire)
    # The cancel came mid-batch: claimed rows still waiting for their slot were stopped too,
    # not only those never claimed.
    assert len(stopped) > LEADS // 2
    assert cancelled >= len(stopped)
    counts = (await progress(db, run_id)).counts
    assert counts == {"sent": len(sent), "cancelled": len(stopped)}
    # Only rows never claimed give their key up: what a worker held may have gone out.
    freed = {lead for lead, (_, key) in final.items() if ":cancelled:" in key}
    assert len(freed) == LEADS // 2


def test_the_progress_bar_shows_sent_stopped_and_waiting() -> None:
    progress = broadcast_runs.Progress({"sent": 5, "failed": 1, "cancelled": 4, "pending": 10})
    assert broadcast_texts.bar(progress, 20) == "[█████▒▒▒▒▒░░░░░░░░░░]"
    assert broadcast_texts.bar(broadcast_runs.Progress(), 0) == "[" + "░" * 20 + "]"
    assert [broadcast_texts.leads(n) for n in (1, 2, 5, 11, 21, 22, 112)] == [
        "1 лид",
        "2 лида",
        "5 лидов",
        "11 лидов",
        "21 лид",
        "22 лида",
        "112 лидов",
    ]


def test_a_status_says_when_the_next_go_and_when_no_bot_seems_to_send() -> None:
    now = datetime(2031, 12, 1, 9, 0, tzinfo=UTC)
    run = BroadcastRun(id="webinar-1", created_at=now - timedelta(days=1), at="2031-12-01 11:00")
    waiting = broadcast_runs.Progress({"pending": 3}, next_due=now + timedelta(hours=2))
    assert broadcast_texts.run_lines(run, waiting, now) == [
        "webinar-1  поставлена 2031-11-30 09:00 UTC, на 2031-12-01 11:00 по времени лида",
        "  [░░░░░░░░░░░░░░░░░░░░]   0%  "
        "отправлено 0 · ждут 3 · не доставлено 0 · отменено 0  из 3",
        "  следующие уйдут не раньше 2031-12-01 11:00 UTC",
    ]
    late = broadcast_runs.Progress({"sent": 1, "pending": 3}, next_due=now - timedelta(hours=1))
    assert broadcast_texts.run_lines(run, late, now)[2] == (
        "  срок отправки наступил в 2031-12-01 08:00 UTC: работает ли бот?"
    )


def test_a_window_sums_up_many_zones_and_says_how_long_the_sending_takes() -> None:
    now = datetime(2031, 12, 1, 12, 0, tzinfo=UTC)
    zones = [f"Etc/GMT-{n}" for n in range(1, 10)]
    window = broadcasts.Forecast(
        zones=[broadcasts.ZoneWindow(zone, 1000, now, False) for zone in zones],
        dues=dict.fromkeys(range(9000), now),
        timezones={},
        channels={"telegram": 9000},
    )
    settings = load_scenario(FIXTURE_SCENARIO).scenario.settings
    lines = broadcast_texts.window_lines(
        window, settings, datetime(2031, 12, 1, 10, 0), now, {"telegram": 30.0}
    )
    assert lines == [
        "Когда: 2031-12-01 10:00 по местному времени каждого лида (это время уже прошло: "
        "сразу); тихие часы 21:00–10:00.",
        *(f"  {zone} — 1000 лидов: сразу" for zone in zones[:6]),
        "  ещё 3 пояса — 3000 лидов",
        "Сама отправка займёт не меньше 5 мин: telegram пропускает 30 сообщений в секунду.",
    ]
