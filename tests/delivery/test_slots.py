"""Booking a slot in the chat: the free times, the last place taken by one of 50 prospects at
once (on both databases), moving and cancelling, the reminders before the booked time, and
what the managers see (the lead card, /today)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.handoff import ManagerDesk
from bot.lead_card import render_card
from bot.messages import Kind
from bot.scenario.loader import ScenarioError
from storage.database import Database
from storage.models import Booking
from tests.delivery.harness import START, Bench, load, scenario_folder, utc

SLOTS = """
slots:
  consult:
    title: Консультация
    duration: 60m
    ahead: 7d
    notice: 2h
    hours:
      anna: {mon-fri: "10:00-13:00"}
      oleg: {mon-fri: "10:00-12:00"}
questions:
  consult_time: {type: slot, calendar: consult, text: "Выберите время консультации:"}
offers:
  hour:
    title: Час консультации
    ask: [consult_time]
    deliver: {text: "Ждём вас на консультации!"}
sequences:
  consult_reminders:
    start_on: {slot: consult}
    steps:
      - {id: day_before, before: 1d, service: true, text: "Завтра консультация."}
      - {id: hour_before, before: 1h, service: true, text: "Через час консультация."}
"""
# START is Monday 23 November 2026, 12:00 in Moscow; with 2 hours' notice nothing is left
# today. Tuesday: 10:00 and 11:00 (Анна and Олег), 12:00 (Анна); then Wednesday the same.
FIRST_PAGE = [
    "вт 24 ноя, 10:00",
    "вт 24 ноя, 11:00",
    "вт 24 ноя, 12:00",
    "ср 25 ноя, 10:00",
    "ср 25 ноя, 11:00",
    "ср 25 ноя, 12:00",
]


async def slot_bench(db: Database, clock: FakeClock, tmp_path: Path) -> Bench:
    return Bench(db, load(scenario_folder(tmp_path, SLOTS)), clock)


async def booked(db: Database) -> list[tuple[str, object, str]]:
    async with db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(Booking.resource, Booking.starts_at, Booking.status)
            .where(Booking.place.is_not(None))
            .order_by(Booking.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_the_free_times_are_offered_and_a_press_books_one(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    assert anna.labels()[:6] == FIRST_PAGE
    assert "Другое время ▸" in anna.labels()
    assert "Время — МСК." in anna.texts()
    await anna.press("Другое время ▸")
    assert anna.labels()[:3] == ["чт 26 ноя, 10:00", "чт 26 ноя, 11:00", "чт 26 ноя, 12:00"]
    await anna.press("чт 26 ноя, 11:00")
    assert "Записали вас: чт, 26 ноября, 11:00 МСК." in anna.texts()
    assert "Ждём вас на консультации!" in anna.texts()
    assert await booked(db) == [("anna", utc(11, 26, 8), "booked")]
    events = await bench.events("1001", "slot_booked")
    assert [(e["calendar"], e["start"]) for e in events] == [
        ("consult", "2026-11-26T08:00:00+00:00")
    ]
    # The lead card and /lead show it.
    lead_id = await bench.lead_id()
    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        card, _ = await render_card(uow, bench.scenarios.current.scenario, lead, None)
    assert "📅 Запись: Консультация — чт, 26 ноября, 11:00 МСК (anna)" in card


async def test_a_time_is_shown_in_the_leads_own_zone(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    olga = await bench.take_offer("hour", timezone="Asia/Yekaterinburg")
    assert olga.labels()[0] == "вт 24 ноя, 12:00"  # 10:00 in Moscow
    assert "Время — МСК+2." in olga.texts()


async def test_of_50_prospects_pressing_the_same_time_exactly_the_capacity_book_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """Tuesday 10:00 has two places (Анна's and Олег's). 50 prospects press it at once: two
    get it, 48 hear it is taken and see the other times; no place is held twice."""
    bench = await slot_bench(db, clock, tmp_path)
    prospects = [
        await bench.take_offer("hour", str(3000 + n), first_name=f"Гость{n}") for n in range(50)
    ]
    await asyncio.gather(*(p.press(FIRST_PAGE[0]) for p in prospects))
    rows = await booked(db)
    assert sorted(r[0] for r in rows) == ["anna", "oleg"]
    assert {r[1] for r in rows} == {utc(11, 24, 7)}
    got = [p for p in prospects if "Записали вас" in p.texts()]
    refused = [p for p in prospects if "только что заняли" in p.texts()]
    assert (len(got), len(refused)) == (2, 48)
    assert all(FIRST_PAGE[0] not in p.labels() for p in refused)  # now full: not offered


async def test_moving_frees_the_old_place_and_the_reminders_follow_the_new_time(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("ср 25 ноя, 10:00")
    assert await bench.pending() == [("day_before", utc(11, 24, 7))]
    await anna.send(Kind.BOOKING)
    assert "Ваша запись: Консультация — ср, 25 ноября, 10:00 МСК." in anna.texts()
    await anna.press("Перенести")
    assert "Выберите время консультации:" in anna.texts()
    await anna.press("вт 24 ноя, 11:00")
    assert "Перенесли: теперь вы записаны на вт, 24 ноября, 11:00 МСК." in anna.texts()
    assert await booked(db) == [("anna", utc(11, 24, 8), "booked")]
    # Booked less than a day ahead: the day-before reminder is passed by.
    assert await bench.pending() == [("hour_before", utc(11, 24, 7))]
    await bench.run_until(utc(11, 25))
    assert bench.transport.texts() == ["Через час консультация."]
    assert bench.transport.times() == [utc(11, 24, 7)]


async def test_cancelling_frees_the_place_and_stops_the_reminders(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("ср 25 ноя, 12:00")
    await anna.send(Kind.BOOKING)
    await anna.press("Отменить запись")
    assert "Запись на ср, 25 ноября, 12:00 МСК отменена." in anna.texts()
    assert await booked(db) == []
    assert [e["start"] for e in await bench.events("1001", "slot_cancelled")] == [
        "2026-11-25T09:00:00+00:00"
    ]
    # The place is free again for someone else.
    oleg = await bench.take_offer("hour", "2002", first_name="Олег")
    assert "ср 25 ноя, 12:00" in oleg.labels()
    await bench.run_until(utc(11, 27))
    assert bench.transport.texts() == []  # no reminder of a cancelled booking
    await anna.send(Kind.BOOKING)
    assert "У вас нет записей." in anna.texts()


async def test_a_stale_or_forged_booking_button_changes_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("вт 24 ноя, 10:00")
    [mine] = await booked(db)
    async with db.unit_of_work() as uow:
        booking_id = await uow.session.scalar(select(func.max(Booking.id)))
    oleg = await bench.take_offer("hour", "2002", first_name="Олег")
    await bench.press("2002", f"bk:c:{booking_id}")  # not his
    await bench.press("2002", "bk:c:99999999999999999999")
    await bench.press("2002", "s:consult_time:abc")
    assert await booked(db) == [mine]
    assert oleg.labels()  # still asked for a time


async def test_managers_list_the_days_bookings_with_today(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("вт 24 ноя, 11:00")
    oleg = await bench.take_offer("hour", "2002", first_name="Олег")
    await oleg.press("вт 24 ноя, 10:00")
    desk = ManagerDesk(db, bench.scenarios, clock, {})
    assert await desk.today() == "📅 Записи на 23 ноября (пн): нет."
    bench.move_to(START + timedelta(days=1))
    lead_anna, lead_oleg = await bench.lead_id("1001"), await bench.lead_id("2002")
    assert await desk.today() == "\n".join(
        [
            "📅 Записи на 24 ноября (вт):",
            f"• 10:00–11:00 Консультация · oleg — лид #{lead_oleg} Олег",
            f"• 11:00–12:00 Консультация · anna — лид #{lead_anna} Анна",
        ]
    )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("calendar: consult,", "calendar: consul,"), "неизвестный календарь 'consul'"),
        (("start_on: {slot: consult}", "start_on: {slot: demo}"), "неизвестный календарь 'demo'"),
        (
            ("start_on: {slot: consult}", "start_on: {event: purchase}"),
            "before: отсчитывается от времени записи",
        ),
        (
            (
                "      - {id: day_before,",
                "      - {id: ask, ask: consult_time}\n      - {id: day_before,",
            ),
            "вопрос type: slot задаётся в оффере",
        ),
        (("type: slot, calendar: consult,", "type: slot,"), "вопросу type: slot нужен календарь"),
        (('mon-fri: "10:00-13:00"', 'mn-fri: "10:00-13:00"'), "непонятный день 'mn'"),
    ],
)
def test_a_broken_calendar_or_slot_question_is_refused_in_russian(
    tmp_path: Path, change: tuple[str, str], said: str
) -> None:
    assert change[0] in SLOTS
    with pytest.raises(ScenarioError, match=said):
        load(scenario_folder(tmp_path, SLOTS.replace(*change)))


async def test_a_day_before_is_the_same_wall_time_across_a_daylight_saving_change(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """A Berlin calendar; the booking is Sunday 28 March 2027 at 10:00 (CEST, 08:00 UTC),
    the day clocks go forward. "A day before" is Saturday at 10:00 CET (09:00 UTC), not 24
    hours before (09:00 CET); "an hour before" is 09:00 CEST (07:00 UTC)."""
    folder = scenario_folder(tmp_path, SLOTS.replace("mon-fri", "mon-sun"))
    funnel = folder / "funnel.yaml"
    funnel.write_text(
        funnel.read_text(encoding="utf-8").replace("Europe/Moscow", "Europe/Berlin"),
        encoding="utf-8",
    )
    bench = Bench(db, load(folder), clock)
    bench.move_to(datetime(2027, 3, 25, 12, tzinfo=UTC))
    anna = await bench.take_offer("hour", timezone="Europe/Berlin")
    await anna.press("Другое время ▸")
    await anna.press("вс 28 мар, 10:00")
    assert "Записали вас: вс, 28 марта, 10:00 МСК−1." in anna.texts()
    await bench.run_until(datetime(2027, 3, 29, tzinfo=UTC))
    assert bench.transport.times() == [
        datetime(2027, 3, 27, 9, tzinfo=UTC),
        datetime(2027, 3, 28, 7, tzinfo=UTC),
    ]
