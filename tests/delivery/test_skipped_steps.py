"""A step not sent adds no time: the next step counts from the last step of its own chain that
was sent, read from the database, so a worker that takes over after a crash counts the same."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.clock import FakeClock
from bot.delivery import LEASE
from storage.claims import claim_due
from storage.database import Database
from tests.delivery.harness import Bench, load, scenario_folder, utc

CHAINS = """
questions:
  role:
    type: choice
    text: "Какая у вас роль?"
    options:
      - {text: "Принимаю решение", tag: decision_maker}
      - {text: "Подбираю варианты", tag: champion}
      - {text: "Другое"}
offers:
  demo:
    title: "Демо"
    ask: [role]
    deliver: {text: "Записали на демо."}
    then: {start: committee}
  webinar:
    title: "Вебинар"
    deliver: {text: "Ждём на вебинаре."}
    then: {start: news}
sequences:
  committee:
    steps:
      - {id: intro, after: 1h, text: "Как прошло знакомство с CRM?"}
      - {id: boss, after: 2d, if: {tag: decision_maker}, text: "Расчёт для руководителя."}
      - {id: helper, after: 2d, if: {tag: champion}, text: "Презентация для руководителя."}
      - {id: outro, after: 2d, text: "Мы на связи."}
  news:
    steps:
      - {id: digest, after: 1d, text: "Новости недели."}
  by_start:
    after_from: start
    steps:
      - {id: one, after: 1h, if: {tag: decision_maker}, text: "Первое"}
      - {id: two, after: 1d, text: "Второе"}
"""


def folder(tmp_path: Path) -> Path:
    return scenario_folder(tmp_path, CHAINS)


async def test_alternatives_take_one_slot_and_other_chains_do_not_move_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(folder(tmp_path)), clock)
    await bench.take_offer("demo", answers=("Подбираю варианты",))  # 09:00
    await bench.run_until(utc(11, 24, 9))
    await bench.prospect().start("o_webinar")  # a step of another chain goes out meanwhile
    await bench.run_until(utc(12, 31))

    sent = list(zip(bench.transport.texts(), bench.transport.times(), strict=True))
    assert sent == [
        ("Как прошло знакомство с CRM?", utc(11, 23, 10)),
        ("Новости недели.", utc(11, 25, 9)),
        # "boss" is skipped at 25.11 10:00 and adds nothing: "helper" is due at once
        ("Презентация для руководителя.", utc(11, 25, 10)),
        ("Мы на связи.", utc(11, 27, 10)),  # 2 days after "helper", not after "boss" + 2d
    ]
    assert [(r.step, r.status) for r in await bench.rows() if r.step != "digest"] == [
        ("intro", "sent"),
        ("boss", "skipped"),
        ("helper", "sent"),
        ("outro", "sent"),
    ]


async def test_when_nothing_fits_the_next_step_counts_from_the_last_one_sent(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(folder(tmp_path)), clock)
    await bench.take_offer("demo", answers=("Другое",))  # both alternatives are skipped
    await bench.run_until(utc(12, 31))
    assert bench.transport.times() == [utc(11, 23, 10), utc(11, 25, 10)]
    assert bench.transport.texts()[-1] == "Мы на связи."


async def test_a_worker_taking_over_after_a_crash_counts_from_the_same_send(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(folder(tmp_path)), clock)
    await bench.take_offer("demo", answers=("Подбираю варианты",))
    await bench.run_until(utc(11, 23, 12))
    bench.move_to(utc(11, 25, 10))
    async with db.unit_of_work() as uow:  # a worker claims "boss" and dies before deciding
        [claimed] = await claim_due(
            uow.session, now=bench.clock.now(), worker="dead", lease=LEASE, limit=10
        )
        await uow.commit()
    assert claimed.payload["step"] == "boss"

    late = utc(11, 25, 10) + LEASE + timedelta(seconds=1)
    await bench.tick_at(late, bench.new_worker("w2"))  # takes over and skips it
    # From "intro"'s send, not from when the skip was decided: due at once
    assert await bench.pending() == [("helper", late)]
    await bench.run_until(utc(12, 31))
    assert bench.transport.times() == [utc(11, 23, 10), late, late + timedelta(days=2)]


async def test_after_from_start_is_not_changed_by_a_skip(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    folder_ = scenario_folder(
        tmp_path, CHAINS.replace("then: {start: news}", "then: {start: by_start}")
    )
    bench = Bench(sqlite_db, load(folder_), clock)
    await bench.take_offer("webinar")  # 09:00; no role: "one" is skipped at 10:00
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts()[-1:] == ["Второе"]
    assert bench.transport.times()[-1:] == [utc(11, 24, 9)]  # the start + 1d
