"""`settings.ad_limit`: a lead gets at most `max` advertising messages (warm-up steps and
broadcasts) in any `per`. One more is not dropped: it stays pending, due the moment the
window frees, whichever worker claims it and however many claim at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from bot import broadcasts
from bot.clock import FakeClock
from bot.pacing.windows import SLACK
from storage.database import Database
from storage.models import OutboxRow
from tests.delivery.harness import Bench, fake_clock_worker, load, scenario_folder, utc

CHAIN = """
sequences:
  pace:
    steps:
      - {id: one, after: 1h, text: "Первое"}
      - {id: two, after: 1d, text: "Второе"}
      - {id: three, after: 1d, text: "Третье"}
      - {id: four, after: 1d, text: "Четвёртое"}
"""
QUIET = '  quiet_hours: "21:00-10:00"\n'
WEEK = timedelta(days=7)


def folder(tmp_path: Path, limit: str | None = "{max: 2, per: 1w}", name: str = "sc") -> Path:
    """The test funnel whose guide starts `pace`, with `settings.ad_limit: <limit>`."""
    path = scenario_folder(tmp_path, CHAIN, guide_starts="pace", name=name)
    if limit is not None:
        funnel = path / "funnel.yaml"
        text = funnel.read_text(encoding="utf-8")
        assert text.count(QUIET) == 1
        funnel.write_text(text.replace(QUIET, f"{QUIET}  ad_limit: {limit}\n"), encoding="utf-8")
    return path


async def broadcast(bench: Bench, broadcast_id: str, text: str, *external_ids: str) -> None:
    lead_ids = [await bench.lead_id(external_id) for external_id in external_ids]
    scenario = bench.scenarios.current.scenario
    queued = await broadcasts.enqueue(
        bench.db, scenario, broadcast_id, lead_ids, now=bench.clock.now(), text=text
    )
    assert queued == len(lead_ids)


async def ad_rows(bench: Bench, external_id: str) -> list[tuple[str, str, datetime]]:
    """(step or broadcast, status, due) of the lead's rows, in the order they were queued."""
    query = (
        select(OutboxRow.payload, OutboxRow.status, OutboxRow.due_at)
        .where(OutboxRow.lead_id == await bench.lead_id(external_id))
        .order_by(OutboxRow.id)
    )
    async with bench.db.unit_of_work() as uow:
        rows = (await uow.session.execute(query)).all()
    return [(p.get("step") or p["broadcast"], status, due) for p, status, due in rows]


async def test_a_third_ad_in_the_week_waits_exactly_until_the_window_frees(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(folder(tmp_path)), clock)
    await bench.take_guide()
    await bench.run_until(utc(11, 25, 10))  # "three" falls due: the third in 7 days
    assert bench.transport.texts() == ["Первое", "Второе"]
    three = [r for r in await bench.rows() if r.step == "three"]
    assert [(r.status, r.due_at, r.attempts, r.last_error) for r in three] == [
        ("pending", utc(11, 30, 10), 0, "ad_limit: 2 in 7d reached")  # "one" + 7 days
    ]

    await bench.run_until(utc(11, 30, 9, 59, 59))
    assert len(bench.transport.sent) == 2
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts() == ["Первое", "Второе", "Третье", "Четвёртое"]
    # "four" counts from "three"; "two" is exactly 7 days old then, so it may go
    assert bench.transport.times() == [
        utc(11, 23, 10),
        utc(11, 24, 10),
        utc(11, 30, 10),
        utc(12, 1, 10),
    ]
    assert await bench.runs() == {"pace": "finished"}


async def test_steps_and_broadcasts_share_the_limit_even_in_one_batch(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(folder(tmp_path)), clock)
    await bench.take_guide()
    await bench.run_until(utc(11, 23, 12))
    bench.move_to(utc(11, 24, 10))
    await broadcast(bench, "sale", "Скидка до пятницы", "1001")  # due with "two"
    assert await bench.tick_at(utc(11, 24, 10)) == 2  # one place left for the two of them
    assert bench.transport.texts() == ["Первое", "Второе"]
    assert [r for r in await ad_rows(bench, "1001") if r[0] == "sale"] == [
        ("sale", "pending", utc(11, 30, 10))  # a week after "one"
    ]

    await bench.run_until(utc(12, 31))
    sent = list(zip(bench.transport.texts(), bench.transport.times(), strict=True))
    assert sent == [
        ("Первое", utc(11, 23, 10)),
        ("Второе", utc(11, 24, 10)),
        # "three" fell due on 25.11 and waited too; "sale" was queued first
        ("Скидка до пятницы", utc(11, 30, 10)),
        ("Третье", utc(12, 1, 10)),  # a week after "two"
        ("Четвёртое", utc(12, 7, 10)),  # due 2.12, a week after "sale"
    ]
    times = bench.transport.times()
    for first, third in zip(times, times[2:], strict=False):
        assert third - first >= WEEK


async def test_without_a_limit_nothing_waits(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(folder(tmp_path, limit=None)), clock)
    assert bench.scenarios.current.scenario.settings.ad_limit is None
    await bench.take_guide()
    await bench.run_until(utc(11, 24, 10))
    await broadcast(bench, "sale", "Скидка до пятницы", "1001")
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts() == [
        "Первое",
        "Второе",
        "Скидка до пятницы",
        "Третье",
        "Четвёртое",
    ]
    assert bench.transport.times() == [
        utc(11, 23, 10),
        utc(11, 24, 10),
        # the chat's pace: a message a second, and the slack for the network
        utc(11, 24, 10, 0, 1) + timedelta(seconds=SLACK),
        utc(11, 25, 10),
        utc(11, 26, 10),
    ]


async def test_two_workers_claiming_at_once_keep_the_limit(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """Each lead had one ad this week and has two more due at once; two workers of one row a
    batch claim them side by side. One goes, the other waits for the window."""
    bench = Bench(db, load(folder(tmp_path)), clock)
    leads = [str(1001 + n) for n in range(6)]
    for lead in leads:
        await bench.take_guide(lead)
    await bench.run_until(utc(11, 23, 12))  # "one" to each at 10:00
    for lead in leads:  # rows of a lead next to each other: both workers take one of each
        await broadcast(bench, "webinar", "Вебинар в четверг", lead)
        await broadcast(bench, "sale", "Скидка до пятницы", lead)
    workers = [
        fake_clock_worker(bench.funnel, {"telegram": bench.transport}, worker_id=w, batch=1)
        for w in ("w1", "w2")
    ]
    await asyncio.gather(*(worker.drain() for worker in workers))

    per_lead = Counter(s.external_id for s in bench.transport.sent)
    assert per_lead == dict.fromkeys(leads, 2)  # "one" and one of the two broadcasts
    for lead in leads:
        rows = [r for r in await ad_rows(bench, lead) if r[0] in ("webinar", "sale")]
        assert sorted(status for _, status, _ in rows) == ["pending", "sent"], rows
        [waiting] = [due for _, status, due in rows if status == "pending"]
        assert waiting == utc(11, 30, 10)  # a week after "one"


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)


async def test_the_limit_costs_one_statement_a_batch(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """The same batch (twenty leads' first step) with and without a limit."""
    bench = Bench(db, load(folder(tmp_path)), clock)
    counts = []
    for hour, limit in ((9, "{max: 2, per: 1w}"), (11, None)):
        bench.scenarios.replace(load(folder(tmp_path, limit, name=f"sc{hour}")))
        bench.move_to(utc(11, 23, hour))
        for n in range(20):
            await bench.take_guide(f"{hour}{n:02}")
        with statements(db) as seen:
            assert await bench.tick_at(utc(11, 23, hour + 1)) == 20
        counts.append(len(seen))
    assert len(bench.transport.sent) == 40
    assert counts[0] - counts[1] == 1, counts
