"""Chains the clock starts: before a date every year (across year ends, daylight-saving changes
and 29 February), before a date an outside event carries, and after a silence, ended by
the lead's return. The scan (`start_due`) runs on the fake clock as the heartbeat runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.messages import Kind
from bot.scenario.loader import ScenarioError
from bot.time_triggers import start_due
from storage.database import Database
from storage.models import LeadDate
from tests.delivery.harness import START, Bench, load, scenario_folder

TIMED = """
events:
  contract_signed: Договор подписан
questions:
  birthday: {type: date, text: "Когда у вас день рождения? Пришлём подарок."}
sequences:
  birthday:
    start_on: {date: birthday, before: 3d, at: "10:00"}
    repeat: true
    steps:
      - {id: gift, text: "Скоро ваш день рождения! Вот подарок."}
  renewal:
    start_on: {event: contract_signed, date: renews, before: 30d}
    steps:
      - {id: remind, text: "Через месяц заканчивается договор."}
  winback:
    start_on: {inactive: 30d}
    stop_on: [returned]
    repeat: true
    steps:
      - {id: miss, text: "Давно не виделись!"}
      - {id: discount, after: 3d, text: "Возвращайтесь: скидка 10%."}
"""
GIFT = "Скоро ваш день рождения! Вот подарок."
HOUR = timedelta(hours=1)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def timed_bench(
    db: Database, clock: FakeClock, tmp_path: Path, timezone: str | None = None
) -> Bench:
    bench = Bench(db, load(scenario_folder(tmp_path, TIMED)), clock)
    await bench.take_guide(timezone=timezone)
    return bench


async def set_birthday(bench: Bench, month: int, day: int, year: int | None = None) -> None:
    lead_id = await bench.lead_id()
    async with bench.db.unit_of_work() as uow:
        await uow.leads.set_date(lead_id, "birthday", (month, day, year), now=bench.clock.now())
        await uow.commit()


async def scan_every(bench: Bench, start: datetime, end: datetime, step: timedelta) -> list:
    """Scan at each `step` from `start` to `end` (sending what is due between scans); the
    moments at which the scan started a chain."""
    fired = []
    moment = start
    while moment <= end:
        await bench.run_until(moment)
        if await start_due(bench.db, bench.scenarios, bench.clock):
            fired.append(moment)
        moment += step
    return fired


async def test_a_birthday_chain_starts_three_days_before_at_ten_every_year(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """1 January: 29 December at 10:00 in Moscow (07:00 UTC), in 2026 and again in 2027,
    across the year's end."""
    bench = await timed_bench(db, clock, tmp_path)
    await set_birthday(bench, 1, 1, 1990)
    fired = await scan_every(bench, at(2026, 12, 27), at(2027, 1, 3), HOUR)
    assert fired == [at(2026, 12, 29, 7)]
    assert bench.transport.texts().count(GIFT) == 1
    fired = await scan_every(bench, at(2027, 12, 28), at(2028, 1, 2), HOUR)
    assert fired == [at(2027, 12, 29, 7)]
    assert bench.transport.texts().count(GIFT) == 2
    assert await bench.run_row("birthday") == ("finished", 2)


async def test_the_trigger_follows_the_leads_own_zone_across_daylight_saving_changes(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """In Berlin, 3 days before 31 March 2027 is 28 March, the night clocks go forward at
    02:00: an `at` of 02:30 does not exist and becomes 03:00 CEST (01:00 UTC). On 31 October
    2027 the clocks go back at 03:00: 02:30 happens twice and counts once, at its first
    occurrence (00:30 UTC)."""
    folder = scenario_folder(tmp_path, TIMED.replace('at: "10:00"', 'at: "02:30"'))
    bench = Bench(db, load(folder), clock)
    await bench.take_guide(timezone="Europe/Berlin")
    await set_birthday(bench, 3, 31)
    step = timedelta(minutes=10)
    assert await scan_every(bench, at(2027, 3, 27, 23), at(2027, 3, 28, 4), step) == [
        at(2027, 3, 28, 1)
    ]
    await set_birthday(bench, 11, 3)
    assert await scan_every(bench, at(2027, 10, 30, 22), at(2027, 10, 31, 4), step) == [
        at(2027, 10, 31, 0, 30)
    ]


async def test_29_february_falls_on_28_february_in_a_common_year(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await timed_bench(db, clock, tmp_path)
    await set_birthday(bench, 2, 29, 1996)
    # 2027 is common: the birthday counts as 28 February, the chain starts 25 February.
    assert await scan_every(bench, at(2027, 2, 24), at(2027, 3, 2), HOUR) == [at(2027, 2, 25, 7)]
    # 2028 is a leap year: 29 February, the chain starts 26 February.
    assert await scan_every(bench, at(2028, 2, 24), at(2028, 3, 2), HOUR) == [at(2028, 2, 26, 7)]


async def test_a_bot_down_at_the_time_catches_up_within_a_day_and_not_later(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await timed_bench(db, clock, tmp_path)
    await set_birthday(bench, 1, 1)
    # First scan 20 hours after 29 December 07:00 UTC: still sent.
    assert await scan_every(bench, at(2026, 12, 30, 3), at(2026, 12, 31), HOUR) == [
        at(2026, 12, 30, 3)
    ]
    # A year later the bot is down for two days over the time: that year is passed by.
    assert await scan_every(bench, at(2027, 12, 31, 8), at(2028, 1, 3), HOUR) == []
    assert bench.transport.texts().count(GIFT) == 1


async def test_a_date_in_an_outside_events_details_starts_the_chain_before_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await timed_bench(db, clock, tmp_path)
    await bench.happen("1001", "contract_signed", renews="2027-03-01")
    assert "renewal" not in await bench.runs()  # the date is ahead: the event starts nothing
    # 30 days before 1 March 2027 is 30 January; `before` in whole days: at 10:00 Moscow.
    fired = await scan_every(bench, at(2027, 1, 29), at(2027, 1, 31), HOUR)
    assert fired == [at(2027, 1, 30, 7)]
    assert "Через месяц заканчивается договор." in bench.transport.texts()
    # Not a repeating chain: the next year brings nothing.
    assert await scan_every(bench, at(2028, 1, 29), at(2028, 1, 31), HOUR) == []


async def test_a_silent_lead_gets_the_winback_and_coming_back_stops_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await timed_bench(db, clock, tmp_path)
    await bench.take_guide("2002", first_name="Олег")
    day = timedelta(days=1)
    # Олег writes on day 20, so only Анна has been silent for 30 days on day 30.
    await bench.run_until(START + 20 * day)
    await bench.prospect("2002", "Олег").say("Здравствуйте")
    fired = await scan_every(bench, START + 29 * day, START + 31 * day, HOUR)
    assert fired == [START + 30 * day]
    assert "winback" not in await bench.runs("2002")
    await bench.run_until(START + 31 * day)
    assert "Давно не виделись!" in bench.transport.texts("1001")
    # Анна writes back: `returned`, the chain stops and its discount is not sent.
    await bench.prospect().say("Я тут")
    assert [e["days"] for e in await bench.events("1001", "returned")] == [31]
    assert await bench.run_row("winback") == ("stopped", 1)
    await bench.run_until(START + 40 * day)
    assert "Возвращайтесь: скидка 10%." not in bench.transport.texts("1001")
    # Silent again for 30 days: the chain repeats, once.
    back = START + 31 * day
    fired = await scan_every(bench, back + 29 * day, back + 34 * day, HOUR)
    assert fired == [back + 30 * day]
    assert await bench.run_row("winback") == ("finished", 2)
    assert bench.transport.texts("1001").count("Давно не виделись!") == 2


async def test_a_date_answer_is_understood_and_kept_for_the_chain(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    asking = TIMED.replace(
        "      - {id: gift,", "      - {id: ask, ask: birthday}\n      - {id: gift,"
    ).replace('start_on: {date: birthday, before: 3d, at: "10:00"}', "start_on: {event: ask_me}")
    asking = asking.replace("events:\n", "events:\n  ask_me: Спросить\n")
    bench = Bench(db, load(scenario_folder(tmp_path, asking)), clock)
    anna = await bench.take_guide()
    assert await bench.react("1001", [("ask_me", {})]) == ["birthday"]
    await bench.run_until(START + HOUR)
    await anna.say("в мае")
    assert "Не получилось понять дату" in anna.texts()
    await anna.say("12 мая 1990 г.")
    lead_id = await bench.lead_id()
    async with db.unit_of_work() as uow:
        answer = (await uow.leads.answers(lead_id))["birthday"].value
        stored = await uow.session.get(LeadDate, (lead_id, "birthday"))
        assert stored is not None
        kept = (stored.month, stored.day, stored.year)
    assert (answer, kept) == ("12 мая 1990", (5, 12, 1990))


def test_a_date_trigger_must_name_a_date_question(tmp_path: Path) -> None:
    broken = TIMED.replace("{date: birthday,", "{date: birth,")
    with pytest.raises(ScenarioError, match="в date: нужен вопрос с type: date"):
        load(scenario_folder(tmp_path, broken))


def test_before_in_hours_with_at_is_refused(tmp_path: Path) -> None:
    broken = TIMED.replace("before: 3d, at", "before: 36h, at")
    with pytest.raises(ScenarioError, match="в целых днях"):
        load(scenario_folder(tmp_path, broken))


async def test_after_delete_no_date_is_kept_and_no_birthday_chain_starts(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await timed_bench(db, clock, tmp_path)
    await set_birthday(bench, 1, 1, 1990)
    await bench.happen("1001", "contract_signed", renews="2027-03-01")
    anna = bench.prospect()
    await anna.send(Kind.DELETE)
    await anna.press("Да, удалить")
    async with db.unit_of_work() as uow:
        left = await uow.session.scalar(select(func.count()).select_from(LeadDate))
    assert left == 0
    assert await scan_every(bench, at(2026, 12, 28), at(2026, 12, 30), HOUR) == []


def test_a_silence_chain_that_outlasts_the_return_is_warned_about(tmp_path: Path) -> None:
    outlasting = TIMED.replace("    stop_on: [returned]\n", "")
    loaded = load(scenario_folder(tmp_path, outlasting))
    assert [str(w) for w in loaded.warnings if "returned" in str(w)] == [
        f"{tmp_path}/scenario/extra.yaml:17:26: sequences.winback.start_on.inactive: "
        "эта цепочка для замолчавших продолжится, "
        "даже когда человек снова напишет: добавьте stop_on: [returned]"
    ]
    fine = load(scenario_folder(tmp_path, TIMED, name="ok"))
    assert not [w for w in fine.warnings if "returned" in str(w)]


async def test_a_silence_counts_real_time_across_a_year_end_and_a_daylight_saving_change(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """30 days from 10 December is 9 January (a year's end between); 30 days from 10 March
    in Berlin (CET) is 9 April (CEST): the same UTC hour, an hour later on the wall."""
    bench = Bench(db, load(scenario_folder(tmp_path, TIMED)), clock)
    await bench.take_guide(timezone="Europe/Berlin")
    anna = bench.prospect()
    for seen in (at(2026, 12, 10, 9), at(2027, 3, 10, 9)):
        await bench.run_until(seen)
        await anna.say("Добрый день")
        fired = await scan_every(bench, seen + timedelta(days=29), seen + timedelta(days=31), HOUR)
        assert fired == [seen + timedelta(days=30)]
