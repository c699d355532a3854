"""Send-time checks and failures: consent, blocked bots, retry-after, errors, lease takeover."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.consent import MARKETING
from bot.delivery import LEASE, MAX_ATTEMPTS
from bot.handoff import RELAY
from bot.messages import Outgoing
from bot.transport import Blocked, RetryLater, TemporaryFailure
from storage.claims import claim_due
from storage.database import Database
from tests.delivery.harness import Bench, RecordingTransport, load, scenario_folder, utc
from tests.prospect import snapshot

CHAINS = """
sequences:
  warmup:
    steps:
      - {id: check_in, after: 1h, text: "{name}, получилось открыть гайд?"}
      - {id: pricing, after: 1d, at: "11:00", text: "Сколько стоит внедрение под ключ"}
  after_sale:
    start_on: {stage: customer}
    steps:
      - {id: thanks, after: 1d, text: "Спасибо, что выбрали нас!"}
"""
CHECK_IN = "Анна, получилось открыть гайд?"
DUE = utc(11, 23, 10)  # check_in: an hour after the guide


async def guide_taken(db: Database, clock: FakeClock, tmp_path: Path) -> Bench:
    bench = Bench(db, load(scenario_folder(tmp_path, CHAINS, guide_starts="warmup")), clock)
    await bench.take_guide()
    assert await bench.pending() == [("check_in", DUE)]
    return bench


async def test_withdrawn_advertising_consent_is_checked_at_send_time(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    # withdrawn by some other way than /stop, which would also have stopped the chain
    lead_id = await bench.lead_id()
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.leads.withdraw_consent(lead_id, MARKETING, now=clock.now())
        await uow.commit()
    await bench.tick_at(DUE)
    assert bench.transport.attempts == []
    assert [(r.step, r.status, r.last_error) for r in await bench.rows()] == [
        ("check_in", "cancelled", "no advertising consent")
    ]
    await bench.run_until(utc(12, 31))
    assert bench.transport.attempts == []


async def test_a_lead_who_blocked_the_bot_is_marked_and_never_sent_to_again(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    await bench.react("1001", stages={"customer"})  # a second chain, a second queued row
    bench.transport.fail_next(Blocked("Forbidden: bot was blocked by the user"))
    await bench.tick_at(DUE)

    state = await snapshot(sqlite_db, "1001")
    assert (state.stage, state.funnel_stage) == ("blocked", "warming")
    assert state.events.count("blocked") == 1
    assert [(r.step, r.status, r.last_error) for r in await bench.rows()] == [
        ("check_in", "cancelled", "blocked"),
        ("thanks", "cancelled", "blocked"),
    ]
    await bench.run_until(utc(12, 31))
    assert len(bench.transport.attempts) == 1
    assert bench.transport.sent == []


async def test_retry_after_is_waited_out_exactly_and_is_no_failed_attempt(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    bench.transport.fail_next(RetryLater(3, "Too Many Requests: retry after 3"))
    await bench.tick_at(DUE)
    [row] = await bench.rows()
    assert (row.status, row.due_at, row.attempts) == ("pending", DUE + timedelta(seconds=3), 0)
    assert row.last_error == "retry after 3s: Too Many Requests: retry after 3"

    assert await bench.tick_at(DUE + timedelta(seconds=2)) == 0
    await bench.tick_at(DUE + timedelta(seconds=3))
    assert bench.transport.texts() == [CHECK_IN]
    assert bench.transport.times() == [DUE + timedelta(seconds=3)]
    assert [(r.step, r.status, r.attempts) for r in await bench.rows()] == [
        ("check_in", "sent", 1),
        ("pricing", "pending", 0),
    ]


async def test_retry_after_many_times_never_fails_the_row(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    bench.transport.fail_next(RetryLater(3, "Too Many Requests"), times=MAX_ATTEMPTS + 2)
    await bench.run_until(DUE + timedelta(minutes=5))
    assert len(bench.transport.attempts) == MAX_ATTEMPTS + 3
    assert bench.transport.texts() == [CHECK_IN]
    assert bench.transport.times() == [DUE + timedelta(seconds=3 * (MAX_ATTEMPTS + 2))]


async def test_a_retry_after_keeps_the_chats_messages_in_order(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    lead_id, now = await bench.lead_id(), clock.now()
    answers = [f"Ответ {n}: да, работаем." for n in range(1, 5)]
    async with sqlite_db.unit_of_work() as uow:  # a manager answers four times in a row
        for n, text in enumerate(answers):
            await uow.outbox.enqueue(
                idempotency_key=f"relay:telegram:{n}",
                channel="telegram",
                kind=RELAY,
                due_at=now,
                now=now,
                lead_id=lead_id,
                payload={"text": text, "manager": "Ольга"},
            )
        await uow.commit()
    bench.transport.fail_next(RetryLater(3, "Too Many Requests: retry after 3"))

    await bench.run_until(now + timedelta(minutes=1))

    # The first answer waited out its retry-after; the others waited for it, not past it.
    assert bench.transport.texts() == answers
    assert bench.transport.times()[0] >= now + timedelta(seconds=3)


async def test_an_error_is_retried_with_backoff_then_sent(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    bench.transport.fail_next(ConnectionResetError("connection reset by peer"), times=2)
    await bench.tick_at(DUE)
    [row] = await bench.rows()
    assert (row.status, row.due_at, row.attempts) == ("pending", DUE + timedelta(seconds=5), 1)
    assert row.last_error == "ConnectionResetError('connection reset by peer')"
    await bench.tick_at(DUE + timedelta(seconds=5))
    [row] = await bench.rows()
    assert (row.status, row.due_at, row.attempts) == ("pending", DUE + timedelta(seconds=15), 2)
    await bench.tick_at(DUE + timedelta(seconds=15))
    assert bench.transport.texts() == [CHECK_IN]
    assert [(r.step, r.status) for r in await bench.rows()] == [
        ("check_in", "sent"),
        ("pricing", "pending"),
    ]


@pytest.mark.parametrize(
    ("error", "recorded"),
    [
        (TemporaryFailure("502 Bad Gateway"), "temporary failure: 502 Bad Gateway"),
        (RuntimeError("boom"), "RuntimeError('boom')"),
    ],
    ids=["temporary", "unknown"],
)
async def test_a_row_that_keeps_failing_is_marked_failed_after_max_attempts(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path, error: Exception, recorded: str
) -> None:
    bench = await guide_taken(sqlite_db, clock, tmp_path)
    bench.transport.fail_next(error, times=100)
    await bench.run_until(utc(12, 31))
    assert len(bench.transport.attempts) == MAX_ATTEMPTS == 8
    times = [attempt.at for attempt in bench.transport.attempts]
    waits = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert waits == [timedelta(seconds=s) for s in (5, 10, 20, 40, 80, 160, 320)]
    [row] = await bench.rows()
    assert (row.status, row.attempts, row.last_error) == ("failed", 8, recorded)
    assert bench.transport.sent == []


# ---- lease takeover (SQLite and PostgreSQL) ----


class HangingTransport(RecordingTransport):
    """Hangs in the middle of a send until released: a worker stuck on the wire."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        self.entered.set()
        await self.release.wait()
        await super().send(
            external_id,
            message,
            idempotency_key=idempotency_key,
            last_message_at=last_message_at,
        )


async def test_a_crashed_workers_row_is_taken_over_after_its_lease(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = await guide_taken(db, clock, tmp_path)
    bench.move_to(DUE)
    async with db.unit_of_work() as uow:  # w1 claims the row, then dies before sending
        [claimed] = await claim_due(uow.session, now=DUE, worker="w1", lease=LEASE, limit=10)
        await uow.commit()
    w2 = bench.new_worker("w2")
    assert await bench.tick_at(DUE + LEASE, w2) == 0  # the lease still holds
    assert await bench.tick_at(DUE + LEASE + timedelta(seconds=1), w2) == 1
    assert bench.transport.texts() == [CHECK_IN]
    [row, following] = await bench.rows()
    assert (row.status, row.leased_by, row.attempts) == ("sent", "w2", 2)
    assert following.step == "pricing"
    assert (claimed.leased_by, claimed.attempts) == ("w1", 1)


async def test_a_live_worker_keeps_its_row_past_the_lease_by_renewing_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """w1's send hangs for three leases; its heartbeat renews the lease meanwhile, so w2
    never takes the row over and the prospect gets the message once."""
    bench = await guide_taken(db, clock, tmp_path)
    stuck = HangingTransport(clock)
    w1, w2 = bench.new_worker("w1", stuck), bench.new_worker("w2")
    bench.move_to(DUE)
    sending = asyncio.create_task(w1.tick())
    await stuck.entered.wait()
    for _ in range(9):  # the heartbeat beats on while the send hangs
        bench.move_to(clock.now() + LEASE / 3)
        assert await w1.pump() == 0
        assert await bench.tick_at(clock.now() + timedelta(seconds=1), w2) == 0
    [row, *_] = await bench.rows()
    assert (row.status, row.leased_by) == ("sending", "w1")
    stuck.release.set()
    assert await sending == 1
    assert stuck.texts() == [CHECK_IN]
    assert bench.transport.texts() == []
    [row, *_] = await bench.rows()
    assert (row.status, row.leased_by, row.attempts) == ("sent", "w1", 1)


async def test_a_late_record_of_a_worker_that_lost_its_lease_is_ignored(
    db: Database, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bench = await guide_taken(db, clock, tmp_path)
    stuck = HangingTransport(clock)
    w1, w2 = bench.new_worker("w1", stuck), bench.new_worker("w2")
    bench.move_to(DUE)
    sending = asyncio.create_task(w1.tick())
    await stuck.entered.wait()
    assert await bench.tick_at(DUE + LEASE, w2) == 0
    assert await bench.tick_at(DUE + LEASE + timedelta(seconds=1), w2) == 1
    assert bench.transport.texts() == [CHECK_IN]

    stuck.release.set()  # w1's send finally returns; its lease is long gone
    with caplog.at_level(logging.WARNING, logger="bot.delivery"):
        assert await sending == 1
    assert "taken over while being sent" in caplog.text
    # Both sends carried the row's key, so a platform that dedups by it delivers once.
    assert [s.key for s in stuck.sent] == [s.key for s in bench.transport.sent]
    [row, following] = await bench.rows()
    assert (row.status, row.leased_by) == ("sent", "w2")
    assert (following.step, following.status) == ("pricing", "pending")
    assert len(await bench.events("1001", "step_sent")) == 1
