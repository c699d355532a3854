"""A restart test: two delivery worker processes share one database (SQLite file, PostgreSQL
schema) and 10,000 due messages; the workers are killed with SIGKILL three times while
sending. Every message reaches the platform exactly once and none is lost.

The platform is an HTTP receiver in this process. Like VK with `random_id`, it accepts a
repeated idempotency key without delivering twice; it also counts every attempt, so a resend
shows. A resend is allowed only in the crash window: a row the platform accepted whose worker
was killed before recording it, taken over by another worker once its lease ran out. Each kill
is aimed at that window: the platform holds its answer to one send of the victim, and the
victim is killed while it waits.

`LEADBOT_RESTART_MESSAGES` changes the number of messages (10,000 by default).
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest
import yaml
from aiohttp import web
from sqlalchemy import func, insert, inspect, select

from bot import sequences
from bot.delivery import BATCH
from bot.engine.funnel import MARKETING
from bot.scenario.loader import load_scenario
from bot.scenario.model import Scenario
from storage.database import Database
from storage.models import Consent, Event, Identity, Lead, OutboxRow, SequenceRun

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_SCENARIO = ROOT / "tests" / "fixtures" / "funnel"

MESSAGES = int(os.environ.get("LEADBOT_RESTART_MESSAGES", "10000"))
CHANNEL = "fake"
CHAIN, STEP, TEXT = "blast", "only", "Привет"
LEASE_SECONDS = float(
    os.environ.get("LEASE", "3")
)  # short, so a killed worker's rows are taken over within the test
# Leads enrolled by the real code one by one; the rest are bulk copies of their rows.
REAL_CODE_LEADS = 100
# (share of messages delivered before the kill, worker slots killed together)
KILLS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (0.05, ("a",)),
    (0.40, ("b",)),
    (0.70, ("a", "b")),
)
PHASE_TIMEOUT = 90.0  # seconds any one wait may take before the test gives up


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
    """The messenger: records every send attempt and delivers each idempotency key once."""

    attempts: dict[str, list[Attempt]] = field(default_factory=lambda: defaultdict(list))
    deliveries: Counter[str] = field(default_factory=Counter)
    _holds: dict[str, asyncio.Future[Attempt]] = field(default_factory=dict)
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
        return len(self.deliveries)

    def hold_next(self, worker: str) -> asyncio.Future[Attempt]:
        """Accept and deliver the next send of `worker` but keep it waiting for the answer
        (until `release`): it is then in the window between sending and recording."""
        self._release.clear()
        future = self._holds[worker] = asyncio.get_running_loop().create_future()
        return future

    def release(self) -> None:
        self._release.set()

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        attempt = Attempt(body["key"], body["to"], body["text"], body["worker"])
        self.attempts[attempt.key].append(attempt)
        if attempt.key not in self.deliveries:  # a repeated key is accepted, not delivered
            self.deliveries[attempt.key] += 1
        hold = self._holds.pop(attempt.worker, None)
        if hold is not None:
            hold.set_result(attempt)
            await self._release.wait()
        return web.json_response({"ok": True})


@dataclass
class WorkerProcess:
    slot: str
    worker_id: str
    process: asyncio.subprocess.Process
    log: Path
    killed: bool = False


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

    async def kill(self, slot: str) -> None:
        worker = self.current[slot]
        worker.process.send_signal(signal.SIGKILL)
        await worker.process.wait()
        worker.killed = True

    async def stop(self) -> None:
        """SIGTERM what still runs (a clean stop), SIGKILL what does not stop in time."""
        running = [w for w in self.incarnations if w.process.returncode is None]
        for worker in running:
            worker.process.terminate()
        for worker in running:
            try:
                await asyncio.wait_for(worker.process.wait(), timeout=30)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
        self._files.close()

    def logs(self) -> Iterator[tuple[WorkerProcess, str]]:
        for worker in self.incarnations:
            yield worker, worker.log.read_text(encoding="utf-8")


async def wait_until(condition: Callable[[], Any], what: str, workers: Workers) -> None:
    """Poll `condition` (a function or coroutine function) until true; fail after the phase
    timeout, or at once when a worker that was not killed died, showing the workers' logs."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        died = [
            w
            for w in workers.current.values()
            if w.process.returncode is not None and not w.killed
        ]
        if died or time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {w.worker_id} (exit {w.process.returncode}):\n{text[-3000:]}"
                for w, text in workers.logs()
            )
            reason = f"worker {died[0].worker_id} died" if died else "timed out"
            pytest.fail(f"{reason} waiting until {what}\n{tails}")
        await asyncio.sleep(0.02)


async def outbox_statuses(db: Database) -> dict[str, int]:
    async with db.unit_of_work() as uow:
        query = select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
        return dict((await uow.session.execute(query)).all())


async def test_killed_workers_send_every_message_exactly_once(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    scenario_dir = write_scenario(tmp_path / "scenario")
    expected = await enrol_leads(db, load_scenario(scenario_dir).scenario, MESSAGES)
    assert len(expected) == MESSAGES
    enrolled = time.monotonic()

    platform = Platform()
    url = await platform.start()
    argv = ["--database", database_url, "--scenario", str(scenario_dir), "--receiver", url]
    workers = Workers(
        tmp_path,
        [*argv, "--lease", str(LEASE_SECONDS), "--interval", os.environ.get("INTERVAL", "1")],
    )
    unfinished = {"pending": -1}
    try:
        await workers.start("a")
        await workers.start("b")
        for share, slots in KILLS:
            await wait_until(
                lambda share=share: platform.delivered >= share * MESSAGES,
                f"{share:.0%} of the messages are delivered",
                workers,
            )
            # Kill while the first victim waits for the platform's answer to a send.
            held = platform.hold_next(workers.current[slots[0]].worker_id)
            await wait_until(held.done, f"worker {slots[0]} sends", workers)
            for slot in slots:
                await workers.kill(slot)
            platform.release()
            for slot in slots:
                await workers.start(slot)
        await wait_until(
            lambda: platform.delivered >= MESSAGES, "every message is delivered", workers
        )

        async def outbox_done() -> bool:
            statuses = await outbox_statuses(db)
            unfinished.update(
                pending=statuses.get("pending", 0), sending=statuses.get("sending", 0)
            )
            return not any(unfinished.values())

        await wait_until(outbox_done, "no outbox row is pending or being sent", workers)
        drained = time.monotonic()
    finally:
        await workers.stop()
        await platform.stop()

    # The platform: every key delivered exactly once, none missing, none unknown.
    assert set(platform.attempts) == set(expected), "keys missing or unknown"
    assert set(platform.deliveries.values()) == {1}
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

    # Resends: only rows a killed worker had sent but not recorded, at most a batch each.
    killed = {w.worker_id for w in workers.incarnations if w.killed}
    resent = {key: a for key, a in platform.attempts.items() if len(a) > 1}
    repeats = sum(len(a) - 1 for a in resent.values())
    outside_window = {
        key: [a.worker for a in attempts]
        for key, attempts in resent.items()
        if not {a.worker for a in attempts[:-1]} <= killed
    }
    taken_over = sum(
        len(re.findall("was taken over while being sent", text)) for _, text in workers.logs()
    )
    errors = [
        f"{w.worker_id}: {line}"
        for w, text in workers.logs()
        for line in text.splitlines()
        if " ERROR " in line or line.startswith("Traceback")
    ]
    print(
        f"\n{db.dialect}: {MESSAGES} messages, {len(killed)} worker processes killed in "
        f"{len(KILLS)} kills, {len(workers.incarnations)} started; "
        f"enrolment {enrolled - began:.1f}s, delivery {drained - enrolled:.1f}s; "
        f"{sum(map(len, platform.attempts.values()))} send attempts, {repeats} repeated "
        f"({len(resent)} keys), deliveries per key {set(platform.deliveries.values())}, "
        f"{taken_over} rows taken over from live workers"
    )
    assert not errors, "\n".join(errors)
    assert not outside_window, f"resent outside the crash window: {outside_window}"
    assert repeats <= len(killed) * BATCH
    # Each kill hit a worker waiting for the platform's answer: that send was repeated.
    assert len(resent) >= len(KILLS)
