"""Chains that run again (`repeat: true`): a run per trigger, `max_runs`, `min_gap`, a restart
by the chain's own `stop_on`, and step keys scoped to the run."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.scenario.loader import ScenarioError
from storage.database import Database
from tests.delivery.harness import START, Bench, RecordingTransport, load, scenario_folder

UPSELL = """
sequences:
  upsell:
    start_on: {event: purchase}
    repeat: true
    max_runs: 3
    min_gap: 7d
    steps:
      - {id: thanks, after: 1h, text: "Спасибо за покупку!"}
      - {id: more, after: 2d, text: "С этим берут ещё вот что."}
"""
RUN = ["Спасибо за покупку!", "С этим берут ещё вот что."]


async def bench_with(db: Database, clock: FakeClock, tmp_path: Path, extra: str) -> Bench:
    bench = Bench(db, load(scenario_folder(tmp_path, extra)), clock)
    await bench.take_guide()
    return bench


async def buy_at(bench: Bench, moment: datetime) -> list[str]:
    await bench.run_until(moment)
    return await bench.react("1001", [("purchase", {"amount": 1000})])


async def test_each_purchase_runs_the_chain_again_within_its_gap_and_run_limit(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await bench_with(db, clock, tmp_path, UPSELL)
    day = timedelta(days=1)
    assert await buy_at(bench, START) == ["upsell"]
    assert await buy_at(bench, START + 3 * day) == []  # run 1 is over, but not 7 days yet
    assert await buy_at(bench, START + 7 * day) == ["upsell"]
    assert await buy_at(bench, START + 7 * day + timedelta(hours=2)) == []  # run 2 goes on
    assert await buy_at(bench, START + 14 * day) == ["upsell"]
    assert await buy_at(bench, START + 30 * day) == []  # max_runs: 3
    await bench.run_until(START + 40 * day)

    assert [t for t in bench.transport.texts() if t in RUN] == RUN * 3
    sent = [s for s in bench.transport.sent if s.text in RUN]
    # each run counts from its own start: the thanks an hour after each purchase
    assert [s.at for s in sent[::2]] == [
        START + timedelta(hours=1),
        START + 7 * day + timedelta(hours=1),
        START + 14 * day + timedelta(hours=1),
    ]
    keys = [s.key for s in sent]
    assert len(set(keys)) == 6  # a step once per run: six different keys
    assert await bench.run_row("upsell") == ("finished", 3)


RESTART = """
sequences:
  upsell:
    start_on: {event: purchase}
    stop_on: [purchase]
    repeat: true
    steps:
      - {id: thanks, after: 1h, text: "Спасибо за покупку!"}
      - {id: more, after: 2d, text: "С этим берут ещё вот что."}
"""


async def test_a_chain_its_own_trigger_stops_starts_over_from_the_first_step(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await bench_with(db, clock, tmp_path, RESTART)
    assert await buy_at(bench, START) == ["upsell"]
    await bench.run_until(START + timedelta(hours=2))  # the thanks is out, `more` queued
    assert await buy_at(bench, START + timedelta(days=1)) == ["upsell"]
    assert [(r.step, r.status) for r in await bench.rows() if r.step in ("thanks", "more")] == [
        ("thanks", "sent"),
        ("more", "cancelled"),  # the first run's, stopped by the second purchase
        ("thanks", "pending"),
    ]
    await bench.run_until(START + timedelta(days=5))
    assert [t for t in bench.transport.texts() if t in RUN] == [RUN[0], RUN[0], RUN[1]]


async def test_a_step_of_the_last_run_on_the_wire_at_a_restart_adds_nothing_to_the_new_run(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """A purchase lands while the first run's thanks is being sent: the send completes (it
    went out), but the step after it must not be queued into the run the purchase started,
    which has its own thanks and `more` to come."""
    bench = await bench_with(db, clock, tmp_path, RESTART)
    assert await buy_at(bench, START) == ["upsell"]

    class PurchaseMidSend(RecordingTransport):
        async def send(self, external_id, message, **kwargs):  # type: ignore[no-untyped-def]
            await super().send(external_id, message, **kwargs)
            if message.text == RUN[0] and len(self.texts()) == 1:
                assert await bench.react("1001", [("purchase", {})]) == ["upsell"]

    transport = PurchaseMidSend(clock)
    worker = bench.new_worker("w2", transport)
    await bench.tick_at(START + timedelta(hours=1), worker)
    assert transport.texts() == [RUN[0]]
    rows = [(r.step, r.status) for r in await bench.rows() if r.step in ("thanks", "more")]
    assert rows == [("thanks", "sent"), ("thanks", "pending")]  # no `more` of the old run
    bench.transport = transport
    while (due := await worker.next_due()) is not None and due <= START + timedelta(days=5):
        await bench.tick_at(max(due, clock.now()), worker)
    assert [t for t in transport.texts() if t in RUN] == [RUN[0], RUN[0], RUN[1]]


async def test_a_chain_that_does_not_repeat_still_runs_once(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    once = UPSELL.replace("    repeat: true\n    max_runs: 3\n    min_gap: 7d\n", "")
    bench = await bench_with(db, clock, tmp_path, once)
    assert await buy_at(bench, START) == ["upsell"]
    assert await buy_at(bench, START + timedelta(days=30)) == []


def test_max_runs_without_repeat_is_refused_in_russian(tmp_path: Path) -> None:
    broken = UPSELL.replace("    repeat: true\n", "")
    with pytest.raises(ScenarioError, match="добавьте repeat: true"):
        load(scenario_folder(tmp_path, broken))
