"""Bookings driven the way a confused prospect (or two accounts of one person) drive them:
each test pins a defect found by probing the slot questions and /booking."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from bot.clock import FakeClock
from bot.messages import Kind
from storage.database import Database
from storage.models import Booking
from tests.delivery.harness import Bench, load, scenario_folder
from tests.delivery.test_slots import SLOTS, slot_bench
from tests.prospect import Prospect

WITH_PHONE = SLOTS.replace("ask: [consult_time]", "ask: [phone, consult_time]")


async def held(db: Database) -> list[tuple[int, str]]:
    """(lead, calendar) of every booking that holds a place."""
    async with db.unit_of_work() as uow:
        query = select(Booking.lead_id, Booking.calendar).where(Booking.place.is_not(None))
        return [tuple(row) for row in await uow.session.execute(query)]  # type: ignore[misc]


async def test_one_person_never_holds_two_places_in_one_calendar_after_a_merge(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, WITH_PHONE)), clock)
    for channel, external_id, time in (("vk", "501", "вт 24 ноя, 10:00"),
                                       ("telegram", "1001", "ср 25 ноя, 10:00")):  # fmt: skip
        person = Prospect(bench.funnel, external_id, channel=channel)
        await person.start("o_hour")
        await person.press("Даю согласие")
        await person.press("Да, присылайте")
        await person.say("+79161234567")  # typed: merges nothing yet
        await person.press(time)
    # Telegram vouches for the phone: the two leads become one.
    await person.send(Kind.CONTACT, phone="+79161234567", contact_is_own=True)
    places = await held(db)
    assert len(places) == len(set(places)), places


async def test_after_cancelling_the_offer_asks_for_a_time_again(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("вт 24 ноя, 10:00")
    await anna.send(Kind.BOOKING)
    await anna.press("Отменить запись")
    assert "Захотите записаться снова — откройте меню" in anna.texts()
    await anna.start("o_hour")
    assert "вт 24 ноя, 10:00" in anna.labels()  # not "Ждём вас" with no time booked


async def test_a_time_pressed_under_the_move_question_after_a_cancel_is_no_move(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("ср 25 ноя, 10:00")
    await anna.send(Kind.BOOKING)
    await anna.press("Перенести")
    times = anna.last
    await anna.send(Kind.BOOKING)
    await anna.press("Отменить запись")
    anna.last = times  # the move question is still on the screen
    await anna.press("вт 24 ноя, 11:00")
    assert "Перенесли" not in anna.texts()
    assert await held(db) == []


async def test_another_page_of_times_is_never_empty(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    for external_id, time in (("2002", "вт 24 ноя, 12:00"), ("2003", "ср 25 ноя, 12:00")):
        other = await bench.take_offer("hour", external_id, first_name="Гость")
        await other.press(time)
    anna = await bench.take_offer("hour")  # 12 free times: two pages of 6
    await anna.press("Другое время ▸")
    assert len([label for label in anna.labels() if "ноя" in label]) == 6
    assert "Другое время ▸" not in anna.labels()  # nothing after this page


async def test_moving_to_the_time_one_holds_changes_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("вт 24 ноя, 10:00")
    before = await held(db)
    await anna.send(Kind.BOOKING)
    await anna.press("Перенести")
    await anna.press("вт 24 ноя, 10:00")
    assert "Вы уже записаны на вт, 24 ноября, 10:00 МСК." in anna.texts()
    assert await held(db) == before
    assert await bench.events("1001", "slot_booked") == [
        {"calendar": "consult", "start": "2026-11-24T07:00:00+00:00", "booking": 1}
    ]


async def test_a_forged_time_outside_the_calendar_is_a_stale_button_not_a_taken_time(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    await bench.take_offer("hour")
    for start in (
        "2026-11-23T08:00",
        "2026-11-28T08:00",
        "2026-11-24T07:30",
    ):  # past, Sat, off-grid
        minutes = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp() // 60)
        said = await bench.press("1001", f"s:consult_time:{minutes}")
        assert "Эта кнопка уже устарела" in said[0].text
    assert await held(db) == []


async def test_delete_gives_the_place_back(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    bench = await slot_bench(db, clock, tmp_path)
    anna = await bench.take_offer("hour")
    await anna.press("вт 24 ноя, 10:00")
    assert len(await held(db)) == 1
    await anna.send(Kind.DELETE)
    await anna.press("Да, удалить")
    assert await held(db) == []
