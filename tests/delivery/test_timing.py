"""When warm-up steps go out: `after`, `after_from`, `at`, quiet hours and the lead's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from storage.database import Database
from tests.delivery.harness import MSK, Bench, load, scenario_folder, utc

CHAINS = """
sequences:
  warmup:
    stop_on: [qualified, purchase]
    steps:
      - id: check_in
        after: 1h
        text: "{name}, получилось открыть гайд?"
      - id: pricing
        after: 1d
        at: "11:00"
        text: "Сколько стоит внедрение под ключ"
      - id: case
        after: 2d
        text: "Кейс клиента: CRM за вечер"
  by_start:
    after_from: start
    steps:
      - {id: one, after: 1h, text: "Первое"}
      - {id: two, after: 3h, text: "Второе"}
      - {id: three, after: 2d, text: "Третье"}
offers:
  course:
    title: "Курс"
    deliver: {text: "Курс начнётся через час."}
    then: {start: by_start}
"""


async def test_steps_go_out_in_order_each_counted_from_the_previous_send(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, CHAINS, guide_starts="warmup")), clock)
    await bench.take_guide()
    assert await bench.pending() == [("check_in", utc(11, 23, 10))]

    assert await bench.tick_at(utc(11, 23, 9, 59, 59)) == 0
    assert bench.transport.sent == []

    await bench.tick_at(utc(11, 23, 10))
    assert bench.transport.texts("1001") == ["Анна, получилось открыть гайд?"]
    # "1d at 11:00": 11:00 in Moscow the next day, which is 08:00 UTC
    assert await bench.pending() == [("pricing", utc(11, 24, 8))]

    await bench.tick_at(utc(11, 24, 7, 59))
    assert len(bench.transport.sent) == 1
    await bench.tick_at(utc(11, 24, 8, 20))  # the worker was 20 minutes late
    sent = bench.transport.sent[-1]
    assert sent.text == "Сколько стоит внедрение под ключ"
    assert sent.at.astimezone(MSK).strftime("%d.%m %H:%M") == "24.11 11:20"
    # `after: 2d` counts from the moment the previous step really went out
    assert await bench.pending() == [("case", utc(11, 26, 8, 20))]

    await bench.tick_at(utc(11, 26, 8, 20))
    assert bench.transport.texts() == [
        "Анна, получилось открыть гайд?",
        "Сколько стоит внедрение под ключ",
        "Кейс клиента: CRM за вечер",
    ]
    assert bench.transport.times() == [utc(11, 23, 10), utc(11, 24, 8, 20), utc(11, 26, 8, 20)]
    assert [r.status for r in await bench.rows()] == ["sent", "sent", "sent"]
    assert [e["step"] for e in await bench.events("1001", "step_sent")] == [
        "check_in",
        "pricing",
        "case",
    ]
    await bench.run_until(utc(12, 31, 0))
    assert len(bench.transport.sent) == 3  # the chain is over
    assert await bench.runs() == {"warmup": "finished"}


async def test_after_from_start_counts_every_step_from_the_chain_start(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, CHAINS)), clock)
    await bench.take_offer("course")  # at 09:00 UTC
    assert await bench.pending() == [("one", utc(11, 23, 10))]

    await bench.tick_at(utc(11, 23, 10, 30))  # late by half an hour
    assert bench.transport.texts() == ["Первое"]
    assert await bench.pending() == [("two", utc(11, 23, 12))]  # start + 3h, not 10:30 + 3h
    await bench.tick_at(utc(11, 23, 12))
    assert await bench.pending() == [("three", utc(11, 25, 9))]  # start + 2d
    await bench.run_until(utc(11, 30, 0))
    assert bench.transport.texts() == ["Первое", "Второе", "Третье"]
    assert bench.transport.times() == [utc(11, 23, 10, 30), utc(11, 23, 12), utc(11, 25, 9)]


async def test_a_lead_in_new_york_gets_the_step_after_quiet_hours_of_new_york(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, CHAINS, guide_starts="warmup")), clock)
    await bench.take_guide("1001", timezone="America/New_York")  # 04:00 in New York
    await bench.take_guide("2002")  # 12:00 in Moscow, the scenario's zone
    # 05:00 in New York is inside 21:00-10:00 there: the step waits until 10:00 EST
    assert await bench.pending("1001") == [("check_in", utc(11, 23, 15))]
    assert await bench.pending("2002") == [("check_in", utc(11, 23, 10))]

    await bench.run_until(utc(11, 23, 14, 59, 59))
    assert bench.transport.texts("1001") == []
    assert bench.transport.texts("2002") == ["Анна, получилось открыть гайд?"]
    await bench.tick_at(utc(11, 23, 15))
    [sent] = [s for s in bench.transport.sent if s.external_id == "1001"]
    assert sent.at.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") == "10:00"
    # "1d at 11:00" is 11:00 in New York for this lead (16:00 UTC)
    assert await bench.pending("1001") == [("pricing", utc(11, 24, 16))]


async def test_a_step_that_fell_due_in_quiet_hours_waits_for_their_end(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, CHAINS, guide_starts="warmup")), clock)
    await bench.take_guide()
    # The worker was down: the next tick comes at 21:30 in Moscow, inside quiet hours.
    assert await bench.tick_at(utc(11, 23, 18, 30)) == 1
    assert bench.transport.attempts == []
    [row] = await bench.rows()
    assert (row.step, row.status, row.due_at) == ("check_in", "pending", utc(11, 24, 7))
    assert row.attempts == 0  # waiting out quiet hours is no failed attempt
    assert row.last_error == "quiet hours"

    await bench.tick_at(utc(11, 24, 6, 59, 59))
    assert bench.transport.sent == []
    await bench.tick_at(utc(11, 24, 7))
    assert bench.transport.texts() == ["Анна, получилось открыть гайд?"]
    assert bench.transport.sent[0].at.astimezone(MSK).strftime("%H:%M") == "10:00"


DAILY = """
sequences:
  daily:
    steps:
      - {id: d1, after: 1d, at: "11:00", text: "День 1"}
      - {id: d2, after: 1d, at: "11:00", text: "День 2"}
      - {id: d3, after: 1d, at: "11:00", text: "День 3"}
"""


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        pytest.param(
            "America/New_York",
            utc(3, 6, 17),  # 12:00 EST; clocks go forward on 8 March
            [utc(3, 7, 16), utc(3, 8, 15), utc(3, 9, 15)],
            id="new-york",
        ),
        pytest.param(
            "Europe/Berlin",
            utc(3, 27, 12),  # 13:00 CET; clocks go forward on 29 March
            [utc(3, 28, 10), utc(3, 29, 9), utc(3, 30, 9)],
            id="berlin",
        ),
    ],
)
async def test_one_day_at_eleven_stays_eleven_local_across_a_dst_change(
    sqlite_db: Database, tmp_path: Path, zone: str, start: datetime, expected: list[datetime]
) -> None:
    clock = FakeClock(start)
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, DAILY, guide_starts="daily")), clock)
    await bench.take_guide(timezone=zone)
    await bench.run_until(start + timedelta(days=5))
    assert bench.transport.texts() == ["День 1", "День 2", "День 3"]
    assert bench.transport.times() == expected
    local = [t.astimezone(ZoneInfo(zone)).strftime("%d %H:%M") for t in expected]
    assert [t[-5:] for t in local] == ["11:00", "11:00", "11:00"]
    assert bench.transport.times()[2] - bench.transport.times()[1] == timedelta(hours=24)
    assert bench.transport.times()[1] - bench.transport.times()[0] == timedelta(hours=23)
    assert all(t.tzinfo == UTC for t in bench.transport.times())
