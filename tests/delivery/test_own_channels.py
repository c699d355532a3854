"""A terminal chat on a database the bot shares (`leadbot chat --db`) claims only its own
rows: a Telegram lead's warm-up step stays pending for the bot that has Telegram, instead of
failing here for want of a transport."""

from __future__ import annotations

from bot.clock import FakeClock
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import FIXTURE_SCENARIO
from tests.delivery.harness import Bench, RecordingTransport, fake_clock_worker, utc


async def test_a_worker_of_its_own_channels_leaves_the_others_rows_pending(
    db: Database, clock: FakeClock
) -> None:
    bench = Bench(db, load_scenario(FIXTURE_SCENARIO), clock)
    await bench.take_guide()  # a Telegram lead: its first step is due in an hour
    console = RecordingTransport(clock, channel="console")
    chat = fake_clock_worker(bench.funnel, {"console": console}, only_own_channels=True)
    bench.move_to(utc(11, 23, 12))

    assert await chat.next_due() is None  # nothing of its own to wake for
    assert await chat.tick() == 0
    assert [(r.step, r.status) for r in await bench.rows()] == [("check_in", "pending")]
    assert console.attempts == []

    # A worker of every channel, as before, would take it and fail it: no Telegram here.
    everything = fake_clock_worker(bench.funnel, {"console": console}, worker_id="w2")
    assert await everything.tick() == 1
    assert [(r.step, r.status) for r in await bench.rows()] == [("check_in", "failed")]
