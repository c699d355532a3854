"""A restart test: two delivery worker processes share one database (SQLite file, PostgreSQL
schema) and 1,000 due messages; the workers are killed with SIGKILL three times while
sending. No message is lost, and a crash repeats at most what was on the wire when it died
(house rule 5).

The platform is an HTTP receiver in this process and behaves like Telegram, which has no
idempotency key: every send that reaches it is delivered, a repeated one too (the key only
names the message here). It records every attempt, per key and per worker, so each repeat
shows. A repeat is allowed only in the crash window: a message that went out from a worker
killed before recording it, taken over by another worker once its lease ran out. A worker
records each send as soon as it is out (a group commit) and has at most `CONCURRENCY`
messages in flight (on the wire, or out and not yet recorded), so a kill repeats at most that
many of its messages; a worker whose records lag behind its sends (a batch at a time, or a
backlog of outcomes waiting for a slow commit) repeats more, and this test fails. Each kill is
aimed at the window: the platform holds its answer to a send, and the worker that made it (or
both workers) is killed while it waits.

A killed worker's rows wait for their lease to run out. The test does not sit through it: once
the process is dead, it moves the end of that process's leases (and only its) to now, as the
clock would have moved it, so the next claim takes them over (storage/claims.py, the same
query as after a real wait; tests/delivery/test_sending.py lets a lease run out on its own).
The live workers keep their whole lease, so a live worker's row taken over still fails the
test.

`LEADBOT_RESTART_MESSAGES` changes the number of messages (1,000 by default; bench/restart.py
runs 10,000).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import pytest
import yaml
from aiohttp import web
from sqlalchemy import func, insert, inspect, select, text, update

from bot import sequences
from bot.consent import MARKETING
from bot.delivery import BATCH, CONCURRENCY
from bot.scenario.loader import load_scenario
from bot.scenario.model import Scenario
from storage.claims import claim_due
from storage.database import Database
from storage.models import Consent, Event, Identity, Lead, OutboxRow, SequenceRun

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_SCENARIO = ROOT / "tests" / "fixtures" / "funnel"

MESSAGES = int(os.environ.get("LEADBOT_RESTART_MESSAGES", "1000"))
CHANNEL = "fake"
CHAIN, STEP, TEXT = "blast", "only", "Привет"
# Well over the time a live worker holds a row: claimed and prepared with its batch (the
# summary shows the longest claim), waiting behind at most the worker's capacity of claimed
# rows for one of CONCURRENCY places in flight, sent, and written by the next group commit,
# which waits for the write lock the other worker shares on SQLite. A lease that runs out
# meanwhile has a live worker's row taken over and sent again, which this test counts as a
# failure (a 3 s lease did that in the batch-at-a-time worker: 200 rows resent at the first
# contended tick). A killed worker's rows do not wait for it: the test ends their leases once
# the process is dead.
LEASE_SECONDS = 15.0
# The real heartbeat (bot/heartbeat.py), beating every 0.2 s instead of every second. A
# worker refills itself as its sends finish, so the beat matters only when it found nothing
# to claim: after a restart, and when a killed worker's leases have just ended.
HEARTBEAT_SECONDS = 0.2
# The fake channel's rate in the stop test: slow enough that most of a batch still waits for
# its pacing slot when the worker is told to stop.
STOP_TEST_RATE = 100.0
# Leads enrolled by the real code one by one; the rest are bulk copies of their rows.
REAL_CODE_LEADS = 100
# (share of messages delivered before the kill, whether both workers are killed or only the
# one caught sending)
KILLS: tuple[tuple[float, bool], ...] = ((0.05, False), (0.40, False), (0.70, True))
PHASE_TIMEOUT = 180.0  # seconds any one wait may take before the test gives up


def write_scenario(folder: Path) -> Path:
    """The test funnel with one one-step chain and no quiet hours (no time-of-day effects)."""
    shutil.copytree(FIXTURE_SCENARIO, folder)
    path = folder / "funnel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["settings"].pop("quiet_hours", None)
    for offer in data["offers"].values():  # their chains are gone
        offer.get("then", {}).pop("start", None)
    data["scoring"]["events"].pop("case_read", None)  # a button event of a removed chain
    data["sequences"] = {CHAIN: {"steps": [{"id": STEP, "after": "0m", "text": TEXT}]}}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def _columns(row: Any, *, without: set[str]) -> dict[str, Any]:
    return {
        attr.key: getattr(row, attr.key)
        for attr in inspect(row).mapper.column_attrs
        if attr.key not in without
    }


async def enrol_leads(db: Database, scenario: Scenario, count: int) -> dict[str, str]:
    """`count` leads with a "fake" account and advertising consent, each enrolled in the chain,
    so each has one step due now; returns the idempotency key of every step -> the account.

    The first leads go through the real code (lead, identity, consent, `sequences.start`).
    The rest are inserted in bulk as copies of the rows the real code wrote for the first
    lead, with only the lead's own values changed: enrolling 10,000 leads one by one through
    the ORM takes most of a minute on SQLite, the bulk copy a second or two."""
    now = datetime.now(UTC)
    real = min(count, REAL_CODE_LEADS)
    async with db.unit_of_work() as uow:
        for n in range(real):
            lead, _ = await uow.leads.create(channel=CHANNEL, external_id=str(n), now=now)
            await uow.leads.give_consent(
                lead.id, MARKETING, text_version="test", channel=CHANNEL, now=now
            )
            assert await sequences.start(uow, scenario, lead, CHAIN, now) is not None
        await uow.commit()

    async with db.unit_of_work() as uow:
        session = uow.session
        lead = (await session.execute(select(Lead).order_by(Lead.id).limit(1))).scalar_one()
        identity, consent, run, row = [
            (await session.execute(select(model).where(model.lead_id == lead.id))).scalar_one()
            for model in (Identity, Consent, SequenceRun, OutboxRow)
        ]
        assert row.idempotency_key == sequences.step_key(lead.id, CHAIN, STEP)
        assert row.payload["run"] == run.id
        lead_values = _columns(lead, without={"id"})
        identity_values = _columns(identity, without={"id", "lead_id", "external_id"})
        consent_values = _columns(consent, without={"id", "lead_id"})
        run_values = _columns(run, without={"id", "lead_id"})
        row_values = _columns(row, without={"id", "lead_id", "idempotency_key", "payload"})
        numbers = range(real, count)
        if numbers:
            lead_ids = (
                await session.scalars(
                    insert(Lead).returning(Lead.id, sort_by_parameter_order=True),
                    [lead_values for _ in numbers],
                )
            ).all()
            await session.execute(
                insert(Identity),
                [
                    {**identity_values, "lead_id": lead_id, "external_id": str(n)}
                    for lead_id, n in zip(lead_ids, numbers, strict=True)
                ],
            )
            await session.execute(
                insert(Consent), [{**consent_values, "lead_id": i} for i in lead_ids]
            )
            run_ids = (
                await session.scalars(
                    insert(SequenceRun).returning(SequenceRun.id, sort_by_parameter_order=True),
                    [{**run_values, "lead_id": i} for i in lead_ids],
                )
            ).all()
            await session.execute(
                insert(OutboxRow),
                [
                    {
                        **row_values,
                        "lead_id": lead_id,
                        "idempotency_key": sequences.step_key(lead_id, CHAIN, STEP),
                        "payload": {**row.payload, "run": run_id},
                    }
                    for lead_id, run_id in zip(lead_ids, run_ids, strict=True)
                ],
            )
        await uow.commit()

        accounts = await session.execute(
            select(OutboxRow.idempotency_key, Identity.external_id)
            .join(Identity, Identity.lead_id == OutboxRow.lead_id)
            .where(OutboxRow.status == "pending", OutboxRow.due_at <= now)
        )
        return dict(accounts.all())


@dataclass(frozen=True)
class Attempt:
    key: str
    to: str
    text: str
    worker: str


@dataclass
class Platform:
    """The messenger, like Telegram: delivers every send that reaches it, a repeated
    idempotency key too, and records each attempt in order, per key and per worker."""

    attempts: dict[str, list[Attempt]] = field(default_factory=lambda: defaultdict(list))
    per_worker: Counter[str] = field(default_factory=Counter)
    _hold: asyncio.Future[Attempt] | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/send", self._send)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}/send"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def delivered(self) -> int:
        """How many messages (keys) were delivered at least once."""
        return len(self.attempts)

    def hold_next(self) -> asyncio.Future[Attempt]:
        """Deliver the next send, whichever worker makes it, but keep it waiting for the
        answer (until `release`): that worker has it on the wire, unrecorded."""
        self._release.clear()
        self._hold = asyncio.get_running_loop().create_future()
        return self._hold

    def release(self) -> None:
        self._release.set()

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        attempt = Attempt(body["key"], body["to"], body["text"], body["worker"])
        self.attempts[attempt.key].append(attempt)  # delivered, whether repeated or not
        self.per_worker[attempt.worker] += 1
        if self._hold is not None and not self._hold.done():
            self._hold.set_result(attempt)
            await self._release.wait()
        return web.json_response({"ok": True})


@dataclass
class WorkerProcess:
    slot: str
    worker_id: str
    process: asyncio.subprocess.Process
    log: Path
    killed: bool = False  # with SIGKILL: its unrecorded sends may be repeated
    stopping: bool = False  # with SIGTERM
    log_end: int | None = None  # the log's length when the test stopped it

    def log_text(self) -> str:
        """The log up to the stop: what a stop cuts short is no test failure."""
        return self.log.read_bytes()[: self.log_end].decode("utf-8", errors="replace")


class Workers:
    """The worker processes (restart_worker.py) of one test, each incarnation with its own id
    and log, like a real restart gets a new pid."""

    def __init__(self, folder: Path, argv: list[str]) -> None:
        self.folder = folder
        self.argv = argv
        self.incarnations: list[WorkerProcess] = []
        self.current: dict[str, WorkerProcess] = {}
        self._files = ExitStack()

    async def start(self, slot: str) -> WorkerProcess:
        worker_id = f"{slot}{sum(1 for p in self.incarnations if p.slot == slot)}"
        log = self.folder / f"worker-{worker_id}.log"
        output: TextIO = self._files.enter_context(log.open("w", encoding="utf-8"))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.delivery.restart_worker",
            *self.argv,
            "--worker-id",
            worker_id,
            cwd=ROOT,
            stdout=output,
            stderr=output,
        )
        worker = WorkerProcess(slot, worker_id, process, log)
        self.incarnations.append(worker)
        self.current[slot] = worker
        return worker

    async def kill(self, slot: str, db: Database) -> int:
        """SIGKILL, then the dead process's leases run out (it can no longer record a send):
        the rows it held are free for the next claim, as they would be after LEASE_SECONDS;
        how many there were."""
        worker = self.current[slot]
        worker.process.send_signal(signal.SIGKILL)
        await worker.process.wait()
        worker.killed = True
        return await end_leases(db, worker.worker_id)

    def terminate(self, worker: WorkerProcess) -> None:
        worker.log_end = worker.log.stat().st_size
        worker.stopping = True
        worker.process.terminate()

    async def stop(self) -> None:
        """SIGTERM what still runs, SIGKILL what does not stop in time."""
        running = [w for w in self.incarnations if w.process.returncode is None]
        for worker in running:
            self.terminate(worker)
        for worker in running:
            try:
                await asyncio.wait_for(worker.process.wait(), timeout=30)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
        self._files.close()

    def failed(self) -> WorkerProcess | None:
        """A worker that ended though the test neither killed nor stopped it."""
        return next(
            (
                w
                for w in self.incarnations
                if w.process.returncode is not None and not (w.killed or w.stopping)
            ),
            None,
        )

    def count(self, pattern: str) -> int:
        return sum(len(re.findall(pattern, w.log_text())) for w in self.incarnations)

    def errors(self) -> list[str]:
        return [
            f"{w.worker_id}: {line}"
            for w in self.incarnations
            for line in w.log_text().splitlines()
            if " ERROR " in line or line.startswith("Traceback")
        ]

    def claims(self) -> list[tuple[float, int]]:
        """(seconds, rows) of each `pump` that claimed rows, from the workers' logs, sorted."""
        pattern = r"pump: claimed (\d+) rows in ([\d.]+)s"
        return sorted(
            (float(seconds), int(rows))
            for w in self.incarnations
            for rows, seconds in re.findall(pattern, w.log_text())
        )


async def wait_until(
    condition: Callable[[], Any], what: str, workers: Workers, *, every: float = 0.02
) -> None:
    """Poll `condition` (a function or coroutine function) until true; fail after the phase
    timeout, or at once when a worker ended unasked, showing the workers' logs."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        failed = workers.failed()
        if failed or time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {w.worker_id} (exit {w.process.returncode}):\n{w.log_text()[-3000:]}"
                for w in workers.incarnations
            )
            reason = f"worker {failed.worker_id} ended" if failed else "timed out"
            pytest.fail(f"{reason} waiting until {what}\n{tails}")
        await asyncio.sleep(every)


async def end_leases(db: Database, worker_id: str) -> int:
    """The lease of every row `worker_id` holds ends now; the number of rows."""
    table = OutboxRow.__table__
    async with db.unit_of_work() as uow:
        result = await uow.session.execute(
            update(table)
            .where(table.c.status == "sending", table.c.leased_by == worker_id)
            .values(lease_until=datetime.now(UTC))
        )
        await uow.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def outbox_statuses(db: Database) -> dict[str, int]:
    async with db.unit_of_work() as uow:
        query = select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
        return dict((await uow.session.execute(query)).all())


async def wait_for_empty_outbox(db: Database, workers: Workers) -> None:
    async def done() -> bool:
        statuses = await outbox_statuses(db)
        return not (statuses.get("pending") or statuses.get("sending"))

    # Every 0.25 s: a poll takes SQLite's write lock, which the workers need.
    await wait_until(done, "no outbox row is pending or being sent", workers, every=0.25)


def resent_keys(platform: Platform) -> dict[str, list[str]]:
    """Keys sent more than once -> the workers that sent them, in order."""
    return {
        key: [a.worker for a in attempts]
        for key, attempts in platform.attempts.items()
        if len(attempts) > 1
    }


def sent_again(platform: Platform) -> Counter[str]:
    """Per worker, how many of its sends were sent again later (by it or another worker):
    every attempt at a key but the last."""
    return Counter(a.worker for attempts in platform.attempts.values() for a in attempts[:-1])


@dataclass(frozen=True)
class Kill:
    held: Attempt  # the send on the wire when the kill came
    workers: tuple[str, ...]  # the incarnations killed
    held_rows: int  # the rows they held (claimed, not recorded) when they died


async def test_killed_workers_lose_nothing_and_repeat_only_what_was_on_the_wire(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    scenario_dir = write_scenario(tmp_path / "scenario")
    expected = await enrol_leads(db, load_scenario(scenario_dir).scenario, MESSAGES)
    assert len(expected) == MESSAGES
    enrolled = time.monotonic()

    platform = Platform()
    url = await platform.start()
    workers = Workers(
        tmp_path,
        [
            *("--database", database_url, "--scenario", str(scenario_dir), "--receiver", url),
            *("--lease", str(LEASE_SECONDS), "--interval", str(HEARTBEAT_SECONDS)),
        ],
    )
    kills: list[Kill] = []
    try:
        await workers.start("a")
        await workers.start("b")
        for share, both in KILLS:
            await wait_until(
                lambda share=share: platform.delivered >= share * MESSAGES,
                f"{share:.0%} of the messages are delivered",
                workers,
            )
            # Kill while a worker waits for the platform's answer to a send.
            held = platform.hold_next()
            await wait_until(held.done, "a worker sends", workers)
            caught = next(
                s for s, w in workers.current.items() if w.worker_id == held.result().worker
            )
            slots = sorted(workers.current) if both else [caught]
            victims = tuple(workers.current[s].worker_id for s in slots)
            held_rows = 0
            for slot in slots:
                held_rows += await workers.kill(slot, db)
            kills.append(Kill(held.result(), victims, held_rows))
            platform.release()
            for slot in slots:
                await workers.start(slot)
        await wait_until(
            lambda: platform.delivered >= MESSAGES, "every message is delivered", workers
        )
        await wait_for_empty_outbox(db, workers)
        drained = time.monotonic()
    finally:
        await workers.stop()
        await platform.stop()

    # The platform: nothing lost; every message to its recipient, with its text.
    assert set(platform.attempts) == set(expected), "keys missing or unknown"
    for key, attempts in platform.attempts.items():
        assert {(a.to, a.text) for a in attempts} == {(expected[key], TEXT)}, key

    # The database: every row sent, and each send recorded once.
    assert await outbox_statuses(db) == {"sent": MESSAGES}
    async with db.unit_of_work() as uow:
        step_sent = select(Event.lead_id, func.count()).where(Event.name == "step_sent")
        per_lead = Counter(
            dict((await uow.session.execute(step_sent.group_by(Event.lead_id))).all())
        )
        assert len(per_lead) == MESSAGES
        assert set(per_lead.values()) == {1}
        runs = select(SequenceRun.status, func.count()).group_by(SequenceRun.status)
        assert dict((await uow.session.execute(runs)).all()) == {"finished": MESSAGES}

    # Repeats: only the sends of a killed worker it had not recorded, and no more of them than
    # it may have in flight; a worker recording a batch at a time would repeat the whole batch.
    killed = {w.worker_id for w in workers.incarnations if w.killed}
    again = sent_again(platform)
    repeats = sum(again.values())
    per_kill = "; ".join(
        f"kill {n} ({' + '.join(f'{w} {again[w]}' for w in kill.workers)} again of "
        f"{kill.held_rows} rows held)"
        for n, kill in enumerate(kills, 1)
    )
    per_worker = {
        w: f"{platform.per_worker[w]} sent, {again[w]} again" for w in sorted(platform.per_worker)
    }
    taken_over = workers.count("was taken over while being sent")
    claims = workers.claims()
    print(
        f"\n{db.dialect}: {MESSAGES} messages; {len(KILLS)} kills of {len(killed)} worker "
        f"processes, {len(workers.incarnations)} started; enrolment {enrolled - began:.1f}s, "
        f"delivery {drained - enrolled:.1f}s; "
        f"{sum(platform.per_worker.values())} sends, {repeats} repeated "
        f"({len(resent_keys(platform))} keys; at most {CONCURRENCY} per killed worker): "
        f"{per_kill}; {taken_over} rows taken over from live workers; "
        f"{len(claims)} claims of {sum(rows for _, rows in claims)} rows, median "
        f"{claims[len(claims) // 2][0]:.2f}s, longest {claims[-1][0]:.2f}s; "
        f"per worker {per_worker}"
    )
    assert not workers.errors(), "\n".join(workers.errors())
    assert taken_over == 0, "a live worker held a row past its lease"
    outside_window = {w: n for w, n in again.items() if w not in killed}
    assert not outside_window, f"live workers' sends repeated: {outside_window}"
    over = {w: n for w, n in again.items() if n > CONCURRENCY}
    assert not over, f"more repeats than messages in flight ({CONCURRENCY}): {per_kill}"
    # Each kill hit a worker with a send on the wire, unrecorded: that send was repeated.
    for kill in kills:
        assert kill.held.worker in kill.workers
        assert kill.held_rows >= 1, kill  # the held send's row among them
        assert any(a is kill.held for a in platform.attempts[kill.held.key][:-1]), kill


# A claim bigger than asked has a worker hold more rows than it can send within their lease,
# and a live worker's rows taken over are sent twice (the batch-at-a-time worker's 1,000-message
# run saw one worker send 503 rows in one tick, all sent again after its kill).
# PostgreSQL did that when it ran the claim's `LIMIT ... SKIP LOCKED` subquery once per row of
# a nested loop, its plan when statistics say few rows are due: the usual state of a busy
# outbox, whose rows are mostly sent, when a broadcast lands.
async def test_a_claim_takes_no_more_than_its_batch_when_few_rows_looked_due(
    db: Database,
) -> None:
    now = datetime.now(UTC)

    def rows(prefix: str, count: int, status: str) -> list[dict[str, Any]]:
        return [
            {
                "channel": CHANNEL,
                "kind": "broadcast",
                "payload": {},
                "idempotency_key": f"{prefix}:{n}",
                "due_at": now,
                "status": status,
                "attempts": 0,
                "created_at": now,
            }
            for n in range(count)
        ]

    async with db.unit_of_work() as uow:
        await uow.session.execute(insert(OutboxRow), rows("old", 20_000, "sent"))
        await uow.commit()
    if db.dialect == "postgresql":
        async with db.engine.connect() as connection:
            await connection.execute(text("ANALYZE outbox"))
            await connection.commit()
    async with db.unit_of_work() as uow:
        await uow.session.execute(insert(OutboxRow), rows("broadcast", 1_000, "pending"))
        await uow.commit()

    async with db.unit_of_work() as uow:
        claimed = await claim_due(
            uow.session, now=now, worker="w", lease=timedelta(seconds=60), limit=BATCH
        )
        await uow.commit()
    assert len(claimed) == BATCH
    assert await outbox_statuses(db) == {
        "sent": 20_000,
        "sending": BATCH,
        "pending": 1_000 - BATCH,
    }


# A clean stop (SIGTERM: a deploy, a restart) sends nothing twice and leaves nothing to the
# lease: the heartbeat stops the worker (bot/heartbeat.py), which gives back at once the rows
# waiting for their pacing slot and lets the messages in flight finish and be recorded before
# the process ends. A send cut off before its record would leave its row `sending`, to go out
# again after its lease, and Telegram has no idempotency key to drop a repeat.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_worker_stopped_mid_batch_sends_nothing_twice(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    scenario_dir = write_scenario(tmp_path / "scenario")
    expected = await enrol_leads(db, load_scenario(scenario_dir).scenario, BATCH)
    platform = Platform()
    url = await platform.start()
    workers = Workers(
        tmp_path,
        [
            *("--database", database_url, "--scenario", str(scenario_dir), "--receiver", url),
            *("--lease", str(LEASE_SECONDS), "--interval", str(HEARTBEAT_SECONDS)),
            *("--rate", str(STOP_TEST_RATE)),
        ],
    )
    try:
        held = platform.hold_next()
        first = await workers.start("a")
        # The first send: the rest of the batch is on the wire or waits for its slot.
        await wait_until(held.done, "a send waits for its answer", workers)
        workers.terminate(first)

        async def given_back() -> bool:
            return bool((await outbox_statuses(db)).get("pending"))

        # Only a stop gives a row back here (every slot is well within the lease).
        await wait_until(given_back, "the stopping worker gives back the waiting rows", workers)
        platform.release()  # the answer to the send on the wire arrives: it is recorded
        await asyncio.wait_for(first.process.wait(), timeout=PHASE_TIMEOUT)
        out = set(platform.attempts)  # the keys sent before the stop
        stopped = await outbox_statuses(db)
        async with db.unit_of_work() as uow:
            query = select(OutboxRow.idempotency_key).where(OutboxRow.status == "sent")
            recorded = set((await uow.session.execute(query)).scalars())
        await workers.start("a")
        await wait_for_empty_outbox(db, workers)
    finally:
        await workers.stop()
        await platform.stop()

    # Stopped: every send out was recorded, every other row given back, none left `sending`.
    assert set(stopped) == {"sent", "pending"}, stopped
    assert recorded == out, f"{len(out - recorded)} sends unrecorded, {len(recorded - out)} unsent"
    assert set(platform.attempts) == set(expected)
    assert await outbox_statuses(db) == {"sent": BATCH}
    resent = resent_keys(platform)
    assert not resent, f"{len(resent)} keys sent twice, e.g. {next(iter(resent.items()))}"
    assert not workers.errors(), "\n".join(workers.errors())
