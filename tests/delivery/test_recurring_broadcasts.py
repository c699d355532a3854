"""Broadcasts that repeat (`every:`): each occurrence once per lead, at its wall time in the
lead's own zone (across a daylight-saving change too), for the segment as it is at each
occurrence, under the advertising limit, and passed by when missed for days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.recurring import queue_due
from bot.scenario.loader import ScenarioError
from storage import broadcast_runs
from storage.database import Database
from storage.models import OutboxRow
from tests.delivery.harness import START, Bench, load, scenario_folder, utc

WEEKLY = """
broadcasts:
  digest:
    segment: {stage: warming}
    text: "Дайджест недели: три новых кейса."
    every: {weekday: чт, at: "11:00"}
"""
DIGEST = "Дайджест недели: три новых кейса."
HOUR = timedelta(hours=1)


async def scan(bench: Bench, start: datetime, end: datetime, *, twice: bool = False) -> None:
    """The heartbeat's job every hour from `start` to `end`, sending what falls due; with
    `twice`, two processes scan at each moment."""
    moment = start
    while moment <= end:
        await bench.run_until(moment)
        await queue_due(bench.db, bench.scenarios, bench.clock)
        if twice:
            await queue_due(bench.db, bench.scenarios, bench.clock)
        moment += HOUR
    await bench.run_until(end)


def digests(bench: Bench, external_id: str) -> list[datetime]:
    return [
        s.at for s in bench.transport.sent if s.external_id == external_id and s.text == DIGEST
    ]


async def test_each_occurrence_reaches_each_lead_once_at_eleven_in_their_own_zone(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, WEEKLY)), clock)
    await bench.take_guide("1001")  # Moscow, the scenario's zone
    await bench.take_guide("2002", first_name="Ольга", timezone="Asia/Vladivostok")
    await bench.take_guide("3003", first_name="Иван", timezone="Europe/Kaliningrad")
    await scan(bench, START, START + timedelta(days=15), twice=True)
    # Thursdays 26 November and 3 December, 11:00 local each.
    assert digests(bench, "1001") == [utc(11, 26, 8), utc(12, 3, 8)]
    assert digests(bench, "2002") == [utc(11, 26, 1), utc(12, 3, 1)]
    assert digests(bench, "3003") == [utc(11, 26, 9), utc(12, 3, 9)]
    async with db.reading() as session:
        runs, _ = await broadcast_runs.latest_runs(session, 10)
        recorded = sorted((r.id, r.queued) for r in runs)
    assert recorded == [
        ("digest@2026-11-26", 3),
        ("digest@2026-12-03", 3),
    ]


async def test_the_segment_is_read_anew_at_each_occurrence(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, WEEKLY)), clock)
    await bench.take_guide("1001")
    await scan(bench, START, utc(11, 28))
    await bench.take_guide("2002", first_name="Ольга")  # joins the segment on Saturday
    await scan(bench, utc(11, 28), utc(12, 4))
    assert digests(bench, "1001") == [utc(11, 26, 8), utc(12, 3, 8)]
    assert digests(bench, "2002") == [utc(12, 3, 8)]


async def test_a_weekly_time_follows_the_leads_clock_across_daylight_saving(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """Berlin moves to summer time on 28 March 2027: 11:00 there is 10:00 UTC on the 25th
    and 09:00 UTC on 1 April."""
    every = WEEKLY.replace(
        'every: {weekday: чт, at: "11:00"}', 'every: 1w\n    at: "2027-03-25 11:00"'
    )
    bench = Bench(db, load(scenario_folder(tmp_path, every)), clock)
    await bench.take_guide(timezone="Europe/Berlin")
    march = datetime(2027, 3, 23, tzinfo=UTC)
    await bench.run_until(march)
    await scan(bench, march, datetime(2027, 4, 2, tzinfo=UTC))
    assert digests(bench, "1001") == [
        datetime(2027, 3, 25, 10, tzinfo=UTC),
        datetime(2027, 4, 1, 9, tzinfo=UTC),
    ]


async def test_a_daily_broadcast_stays_under_the_advertising_limit(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    daily = WEEKLY.replace(
        'every: {weekday: чт, at: "11:00"}', 'every: 1d\n    at: "2026-11-24 11:00"'
    )
    folder = scenario_folder(tmp_path, daily)
    funnel = folder / "funnel.yaml"
    text = funnel.read_text(encoding="utf-8")
    funnel.write_text(
        text.replace(
            '  quiet_hours: "21:00-10:00"\n',
            '  quiet_hours: "21:00-10:00"\n  ad_limit: {max: 2, per: 1w}\n',
        ),
        encoding="utf-8",
    )
    bench = Bench(db, load(folder), clock)
    await bench.take_guide()
    await scan(bench, START, START + timedelta(days=21))
    # The warm-up's steps and the digests, as rows (a step with a question is one message
    # of two parts).
    async with db.reading() as session:
        query = select(OutboxRow.sent_at).where(
            OutboxRow.status == "sent", OutboxRow.kind.in_(("step", "broadcast"))
        )
        moments = sorted((await session.execute(query)).scalars())
    # Each day's digest waits for the window; a newer one replaces it, never two stale ones.
    sent = digests(bench, "1001")
    assert len(sent) >= 3
    async with db.reading() as session:
        query = select(OutboxRow.payload["occurrence"].as_string(), OutboxRow.last_error).where(
            OutboxRow.kind == "broadcast", OutboxRow.status == "cancelled"
        )
        dropped = (await session.execute(query)).all()
    assert dropped  # some were superseded, each by the occurrence after it
    assert all(why.startswith("superseded by digest@") for _, why in dropped)
    for first in moments:
        within = [at for at in moments if first <= at < first + timedelta(weeks=1)]
        assert len(within) <= 2, f"{len(within)} advertising messages in the week from {first}"


async def test_an_occurrence_missed_for_days_is_passed_by(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, WEEKLY)), clock)
    await bench.take_guide()
    await bench.run_until(utc(11, 25))
    # The bot is down from Wednesday to Sunday: Thursday's digest is not sent on Sunday.
    await scan(bench, utc(11, 29), utc(12, 4))
    assert digests(bench, "1001") == [utc(12, 3, 8)]


def test_a_period_in_hours_or_without_a_first_time_is_refused_in_russian(tmp_path: Path) -> None:
    hours = WEEKLY.replace(
        'every: {weekday: чт, at: "11:00"}', 'every: 12h\n    at: "2026-12-01 11:00"'
    )
    with pytest.raises(ScenarioError, match="every: — это целые дни"):
        load(scenario_folder(tmp_path, hours, name="hours"))
    no_at = WEEKLY.replace('every: {weekday: чт, at: "11:00"}', "every: 1w")
    with pytest.raises(ScenarioError, match="every: с периодом нужен at: первый раз"):
        load(scenario_folder(tmp_path, no_at, name="no_at"))
    day = WEEKLY.replace("weekday: чт", "weekday: четверг")
    with pytest.raises(ScenarioError, match="непонятный день недели 'четверг'"):
        load(scenario_folder(tmp_path, day, name="day"))
