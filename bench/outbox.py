"""The outbox under load, against baselines measured in the same run.

Queues LEADS x STEPS messages (STEPS - 1 warm-up steps per lead, then one broadcast to every
lead), all due, and prints for the outbox (house rules 5 and 6):
  1. drain: the real `DeliveryWorker` through a transport that does nothing, with no pacing
     limit (a huge one), ticking back to back and pumping (continuous mode): messages per
     wall second and per CPU second, statements and transactions per 1,000 messages;
  2. paced: the same worker at a configured 30 msg/s and 1,000 msg/s (Telegram's paid
     broadcasts), with Telegram's per-chat and per-group limits: the share of what the limit
     allows that it achieves, and the windows that break a limit, counted from the transport's
     own record of its send moments; then 30 msg/s with a managers' post waiting for the slot
     of a group whose limit is used up, and whether any other send waits for it;
  3. enqueue: `OutboxRepository.enqueue` (one statement a row, 1,000 rows a transaction),
     `enqueue_many` and a broadcast for every lead (`broadcasts.audience` +
     `broadcasts.enqueue`) against APScheduler 3's `add_job`;
  4. the latency of `claim_due` for a batch of BATCH with every message pending (each claim
     committed, then released);
  5. peak memory (ru_maxrss) of the process that claims and sends, against the same process
     with a small load (`--memory-baseline` pending), which also gives claims and drains a
     baseline.
Each part ends with GOAL lines: the goal, the figure, PASS or FAIL. The machine may be shared
and noisy: times are given in CPU time (this process's, plus its PostgreSQL server processes'
when the server runs on this machine) and in wall time, and each goal is judged on both; the
counts (statements, transactions, violations) are exact.

The baseline is APScheduler 3 with one `date` job per message in its SQLAlchemyJobStore on a
SQLite file: `add_job` rate (a sample; the rest written in bulk as the store writes them),
the time to fetch the due jobs (`get_due_jobs`, what it does on each wake-up), the rate at
which it fires a sample of bare jobs, and its peak memory.

Each measured part runs in a child process of its own, so each peak memory is its own.
PostgreSQL gets schemas of its own, dropped afterwards. The test run runs this at a tiny size
(tests/test_benchmarks.py); the figures mean something only at a real size:

    .venv/bin/python bench/outbox.py                      # 100,000 leads x 5, SQLite
    .venv/bin/python bench/outbox.py --leads 20000 --database postgresql+asyncpg://u@h/db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import apscheduler  # noqa: E402
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # noqa: E402
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: E402
from sqlalchemy import func, insert, literal_column, select, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.measure import (  # noqa: E402
    BACKENDS,
    STATEMENTS,
    Meter,
    cpu_of,
    peak_rss_mb,
    percentile,
    postgres_schema,
    progress,
    rates,
    ratio,
    verdict,
)

# The leadbot side is imported where it is used: the parent and the APScheduler processes
# start in a fraction of the time without it.
if TYPE_CHECKING:
    from bot.delivery import DeliveryWorker
    from bot.messages import Button, Outgoing
    from bot.pacing import ChannelLimits, Limit
    from bot.scenario.active import ActiveScenario
    from storage.database import Database

CHANNEL = "fake"
CHAIN = "warmup"
BROADCAST_ID = "bench"
ENQUEUE_PER_TRANSACTION = 1_000
SETUP_PER_STATEMENT = 20_000

# The goals (the issue's), judged below; the paced share is this benchmark's bar.
DRAIN_GOAL = 5_000.0  # messages per second, one process, no pacing limit
PACED_GOAL = 0.99  # of what the limit allows, with no window over a limit
ENQUEUE_GOAL = 10.0  # times APScheduler's add_job
BROADCAST_LEADS, BROADCAST_GOAL = 100_000, 10.0  # a broadcast to that many queued in < s
CLAIM_P99_GOAL_MS = 20.0
MEMORY_GOAL = 1.2  # peak memory at the full load / at the small one

SLACK = 0.001  # seconds; see `violations`

# Limits as (rate, burst). No pacing limit: the console's (the chat channel that must never
# be slowed down). Telegram's per chat and per group (bot/pacing.py DEFAULT_LIMITS).
UNLIMITED = (1_000_000.0, 1_000_000)
PER_CHAT = (1.0, 1)
PER_GROUP = (20 / 60, 20)


# ---- the load ----


def write_scenario(folder: Path, chain_steps: int) -> Path:
    """A minimal funnel with one chain of `chain_steps` steps and no quiet hours."""
    folder.mkdir(parents=True, exist_ok=True)
    step_lines = "\n".join(
        f'      - {{id: s{n}, after: {"1d" if n else "0m"}, text: "Шаг {n}"}}'
        for n in range(chain_steps)
    )
    (folder / "funnel.yaml").write_text(
        f"""version: 1
start:
  text: "Привет"
  buttons: [{{offer: quick}}]
consent:
  text: "Согласие: {{policy_url}}"
  policy_url: https://example.com/privacy
  marketing: "Присылать полезное?"
offers:
  quick:
    title: "Чек-лист"
    deliver: {{text: "Держите"}}
sequences:
  {CHAIN}:
    steps:
{step_lines}
""",
        encoding="utf-8",
    )
    return folder


@dataclass(frozen=True)
class Message:
    """One queued warm-up step."""

    lead_id: int
    run_id: int
    step: int
    due_at: datetime


def messages(runs: Sequence[tuple[int, int]], steps: int, start: datetime) -> Iterator[Message]:
    """Step-major (every lead's step 0 first), every message already due: a batch holds
    different leads, so the per-chat limit (1 msg/s) holds no batch back."""
    for step in range(steps):
        due = start - timedelta(seconds=steps - step)
        for lead_id, run_id in runs:
            yield Message(lead_id, run_id, step, due)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def count_rows(db: Database, *where: Any) -> int:
    async with db.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).where(*where)) or 0)


# ---- the outbox: load ----


async def outbox_load(args: argparse.Namespace) -> dict[str, Any]:
    """The full load, and the small one of the baselines when asked (its figures unused)."""
    full = await load_one(args.url, args.scenario, args.leads, args.steps, args.enqueue_sample)
    if args.baseline_url:
        full["small"] = await load_one(
            args.baseline_url,
            args.scenario,
            args.baseline_leads,
            args.steps,
            min(args.enqueue_sample, args.baseline_leads),
        )
    return full


async def load_one(
    url: str, scenario_folder: str, leads: int, steps: int, enqueue_sample: int
) -> dict[str, Any]:
    """Leads with an account, advertising consent and an active chain (bulk set-up, not
    measured); then every message queued: a sample of the steps through `enqueue()`, the other
    steps through `enqueue_many`, and a broadcast to every lead."""
    from pydantic import TypeAdapter

    from bot import broadcasts, sequences
    from bot.consent import MARKETING
    from bot.scenario.conditions import Rule
    from bot.scenario.loader import load_scenario
    from storage import migrate
    from storage.database import Database
    from storage.models import Consent, Identity, Lead, OutboxRow, SequenceRun
    from storage.repositories import outbox_row

    def row(message: Message) -> dict[str, Any]:
        """The row of a step, as `sequences.queue_steps` writes it."""
        step = f"s{message.step}"
        return outbox_row(
            sequences.step_key(message.lead_id, CHAIN, step),
            CHANNEL,
            sequences.STEP,
            message.due_at,
            now,
            message.lead_id,
            {"sequence": CHAIN, "step": step, "index": message.step, "run": message.run_id},
        )

    db = Database(url)
    await migrate.upgrade(db.engine)
    scenario = load_scenario(Path(scenario_folder)).scenario
    now = datetime.now(UTC)
    began = time.perf_counter()
    async with db.unit_of_work() as uow:
        session = uow.session
        lead = {"created_at": now, "updated_at": now, "stage": "new", "funnel_stage": "new"}
        for part in chunks(range(leads), SETUP_PER_STATEMENT):
            await session.execute(insert(Lead), [{**lead, "score": 0} for _ in part])
        lead_ids = (await session.scalars(select(Lead.id).order_by(Lead.id))).all()
        for part in chunks(lead_ids, SETUP_PER_STATEMENT):
            await session.execute(
                insert(Identity),
                [
                    {
                        "lead_id": i,
                        "channel": CHANNEL,
                        "external_id": str(i),
                        "created_at": now,
                        "last_seen_at": now,
                    }
                    for i in part
                ],
            )
            await session.execute(
                insert(Consent),
                [
                    {
                        "lead_id": i,
                        "kind": MARKETING,
                        "text_version": "bench",
                        "channel": CHANNEL,
                        "given_at": now,
                    }
                    for i in part
                ],
            )
            await session.execute(
                insert(SequenceRun),
                [
                    {"lead_id": i, "sequence": CHAIN, "status": "active", "started_at": now}
                    for i in part
                ],
            )
        runs = (
            await session.execute(
                select(SequenceRun.lead_id, SequenceRun.id).order_by(SequenceRun.lead_id)
            )
        ).all()
        await uow.commit()
    setup = time.perf_counter() - began
    progress(f"{leads:,} leads set up in {setup:.1f}s")

    chain = list(messages([(lead, run) for lead, run in runs], steps - 1, now))
    sample, rest = chain[:enqueue_sample], chain[enqueue_sample:]
    meter = Meter.now()
    for part in chunks(sample, ENQUEUE_PER_TRANSACTION):
        async with db.unit_of_work() as uow:
            for message in part:
                values = row(message)
                await uow.outbox.enqueue(
                    idempotency_key=values["idempotency_key"],
                    channel=CHANNEL,
                    kind=sequences.STEP,
                    due_at=message.due_at,
                    now=now,
                    lead_id=message.lead_id,
                    payload=values["payload"],
                )
            await uow.commit()
    single = meter.since()
    progress(f"{len(sample):,} rows through enqueue() in {single['wall']:.1f}s")
    meter = Meter.now()
    for part in chunks(rest, broadcasts.BATCH):
        async with db.unit_of_work() as uow:
            await uow.outbox.enqueue_many([row(message) for message in part])
            await uow.commit()
    many = meter.since()
    progress(f"{len(rest):,} rows through enqueue_many() in {many['wall']:.1f}s")

    segment = TypeAdapter(Rule).validate_python({"score": ">= 0"})  # every lead
    meter = Meter.now()
    crowd = await broadcasts.audience(
        db, segment, now=datetime.now(UTC), rfm_limits=scenario.settings.rfm
    )
    chosen = meter.since()
    meter = Meter.now()
    queued = await broadcasts.enqueue(
        db,
        scenario,
        BROADCAST_ID,
        crowd.reachable,
        now=datetime.now(UTC),
        text="Новости недели",
    )
    broadcast = meter.since()
    progress(f"a broadcast to {queued:,} leads queued in {broadcast['wall']:.1f}s")
    if db.dialect == "postgresql":  # what autovacuum does soon after a bulk load
        async with db.unit_of_work() as uow:
            await uow.session.execute(text("ANALYZE"))
            await uow.commit()
    pending = await count_rows(db, OutboxRow.status == "pending")
    await db.dispose()
    return {
        "setup_seconds": setup,
        "leads": len(runs),
        "per_transaction": broadcasts.BATCH,
        "single_rows": len(sample),
        "single": single,
        "many_rows": len(rest),
        "many": many,
        "audience": chosen,
        "audience_matched": crowd.matched,
        "broadcast_rows": queued,
        "broadcast": broadcast,
        "pending": pending,
        "server_cpu_known": BACKENDS.known,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---- the outbox: claims and drains ----


class NullTransport:
    """The fake channel: a send does nothing but one trip through the event loop. It keeps
    the moment of each send (time.monotonic) and its chat, and says when `target` are out."""

    channel = CHANNEL

    def __init__(self, target: int = 0) -> None:
        self.moments: list[float] = []
        self.chats: list[str] = []
        self.target = target
        self.reached = asyncio.Event()

    @property
    def sent(self) -> int:
        return len(self.moments)

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        self.moments.append(time.monotonic())
        self.chats.append(external_id)
        if self.target and len(self.moments) >= self.target:
            self.reached.set()
        await asyncio.sleep(0)


class NullManagers:
    """The managers' chat of the fake channel: keeps the moment of each post."""

    def __init__(self, target: int = 0) -> None:
        self.moments: list[float] = []
        self.target = target
        self.reached = asyncio.Event()

    async def post_to_managers(
        self,
        text: str,
        buttons: tuple[tuple[Button, ...], ...] = (),
        *,
        expect_reply: bool = False,
    ) -> str | None:
        self.moments.append(time.monotonic())
        if self.target and len(self.moments) >= self.target:
            self.reached.set()
        await asyncio.sleep(0)
        return f"bench-{uuid.uuid4().hex[:16]}"

    async def edit_in_managers(
        self, reference: str, text: str, buttons: tuple[tuple[Button, ...], ...] = ()
    ) -> None:
        return None


def make_worker(
    db: Database,
    scenarios: ActiveScenario,
    limits: ChannelLimits,
    transport: NullTransport,
    name: str,
    rows: int,
    *,
    managers: NullManagers | None = None,
) -> DeliveryWorker:
    """The worker as the bot runs it; its batch (and so its capacity) no larger than the
    `rows` a sample sends, so a tiny sample does not claim far more than it sends."""
    from bot.clock import SystemClock
    from bot.delivery import BATCH, DeliveryWorker
    from bot.delivery.worker import CAPACITY
    from bot.engine.funnel import Funnel
    from bot.pacing import MemoryPacer

    clock = SystemClock()
    batch = max(1, min(BATCH, rows))
    return DeliveryWorker(
        db,
        scenarios,
        clock,
        {CHANNEL: transport},
        MemoryPacer({CHANNEL: limits}),
        Funnel(db, scenarios, clock),
        managers={CHANNEL: managers} if managers is not None else None,
        worker_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
        batch=batch,
        capacity=CAPACITY * batch // BATCH,
    )


async def pumped(worker: DeliveryWorker, *done: asyncio.Event, seconds: float) -> None:
    """Pump as the heartbeat does until every `done` is set, then stop the worker.

    `pump()` is not awaited before that: it claims again while the worker has room, and with
    fast sends the room comes back during each claim, so one `pump()` returns only once
    nothing is due (the whole outbox). The worker is left no room, then stopped."""
    from bot.delivery import LEASE

    pumping = asyncio.create_task(worker.pump())

    async def all_done() -> None:
        for each in done:
            await each.wait()

    waiting = asyncio.create_task(asyncio.wait_for(all_done(), seconds))
    await asyncio.wait({pumping, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if pumping.done() and pumping.exception() is not None:
        waiting.cancel()
        await pumping  # raises what the worker raised
    await waiting
    worker.capacity = 0
    await pumping
    await worker.stop(LEASE.total_seconds())


async def claims(db: Database, count: int) -> dict[str, Any]:
    """`count` claims of a batch, each committed, then released as a worker gives a row
    back (the release is not timed). One claim first, not timed: it opens the connection
    and compiles the statements, as a running worker has long done."""
    from bot.delivery import BATCH, LEASE
    from storage.claims import claim_due
    from storage.models import OutboxRow

    latencies: list[float] = []
    cpus: list[float] = []
    statements = 0
    for number in range(count + 1):
        meter = Meter.now()
        async with db.unit_of_work() as uow:
            claimed = await claim_due(
                uow.session, now=datetime.now(UTC), worker="bench", lease=LEASE, limit=BATCH
            )
            ids = [row.id for row in claimed]
            await uow.commit()
        spent = meter.since()
        if number:
            latencies.append(spent["wall"])
            cpus.append(cpu_of(spent))
            statements += int(spent["statements"])
        async with db.unit_of_work() as uow:
            await uow.session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids))
                .values(
                    status="pending",
                    lease_until=None,
                    leased_by=None,
                    attempts=OutboxRow.attempts - 1,
                )
            )
            await uow.commit()
    return {
        "claims": count,
        "batch": BATCH,
        "claimed": len(ids),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_p50_ms": percentile(cpus, 0.5) * 1000,
        "cpu_p99_ms": percentile(cpus, 0.99) * 1000,
        "statements": statements / count,
    }


async def drain(
    db: Database, scenarios: ActiveScenario, rows: int, *, continuous: bool
) -> dict[str, Any]:
    """Send about `rows` messages with no pacing limit: `tick` back to back (each claims a
    batch, sends it and records it), or `pump` once and let the worker claim by itself as
    sends finish (the heartbeat's mode), stopped once `rows` are out."""
    from bot.pacing import ChannelLimits, Limit
    from storage.models import OutboxRow

    limits = ChannelLimits(Limit(*UNLIMITED), Limit(*UNLIMITED), Limit(*UNLIMITED))
    now = datetime.now(UTC)
    due = await count_rows(db, OutboxRow.status == "pending", OutboxRow.due_at <= now)
    rows = min(rows, due)
    transport = NullTransport(target=rows)
    worker = make_worker(db, scenarios, limits, transport, "pump" if continuous else "tick", rows)
    before = await count_rows(db, OutboxRow.status == "sent")
    meter = Meter.now()
    if not rows:
        pass
    elif continuous:
        await pumped(worker, transport.reached, seconds=3600)
    else:
        while transport.sent < rows and await worker.tick():
            pass
    spent = meter.since()
    recorded = await count_rows(db, OutboxRow.status == "sent") - before
    left = await count_rows(db, OutboxRow.status == "sending")
    mode = "pump" if continuous else "tick"
    progress(f"drain ({mode}): {transport.sent:,} sent in {spent['wall']:.1f}s")
    return {
        "mode": mode,
        "target": rows,
        "sent": transport.sent,
        "recorded": recorded,
        "left_sending": left,
        **spent,
    }


async def outbox_run(args: argparse.Namespace) -> dict[str, Any]:
    """The process that claims and sends: claim latency, then the drains."""
    from bot.scenario.active import ActiveScenario
    from bot.scenario.loader import load_scenario
    from storage.database import Database
    from storage.models import OutboxRow

    db = Database(args.url)
    scenarios = ActiveScenario(load_scenario(Path(args.scenario)))
    pending = await count_rows(db, OutboxRow.status == "pending")
    claimed = await claims(db, args.claims)
    progress(f"{args.claims} claims with {pending:,} pending: p99 {claimed['p99_ms']:.1f} ms")
    drains = [
        await drain(db, scenarios, args.drain, continuous=False),
        await drain(db, scenarios, args.drain, continuous=True),
    ]
    await db.dispose()
    return {
        "pending": pending,
        "claims": claimed,
        "drains": drains,
        "server_cpu_known": BACKENDS.known,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---- the outbox: paced ----


def violations(moments: Sequence[float], limit: Limit) -> int:
    """Windows that break `limit` (at most `burst` sends in any `burst / rate` seconds): the
    sends that open a window of that length holding `burst + 1` sends or more. A window short
    by less than SLACK is not counted: the worker times its sends on the wall clock (to the
    microsecond), the transport on the monotonic clock, a few microseconds later."""
    ordered = sorted(moments)
    window, most = limit.burst / limit.rate - SLACK, limit.burst
    return sum(1 for i in range(len(ordered) - most) if ordered[i + most] - ordered[i] < window)


def achieved(moments: Sequence[float], limit: Limit) -> tuple[float | None, int]:
    """The share of what `limit` allows that the sends used, and over how many windows: the
    sends in the whole windows from the first send on (`k` windows of `burst / rate` seconds)
    against `k * burst`. Above 1.0 only if a window broke the limit; None within one window."""
    ordered = sorted(moments)
    if not ordered:
        return None, 0
    window = limit.burst / limit.rate
    whole = int((ordered[-1] - ordered[0]) // window)
    if whole < 1:
        return None, 0
    end = ordered[0] + whole * window
    return sum(1 for moment in ordered if moment < end) / (whole * limit.burst), whole


async def paced_sample(
    db: Database,
    scenarios: ActiveScenario,
    rate: float,
    rows: int,
    *,
    post_slot: float | None = None,
) -> dict[str, Any]:
    """`rows` messages at a limit of `rate` per second (a second's worth of burst) with
    Telegram's per-chat and per-group limits, pumped as the heartbeat does, then stopped.
    With `post_slot`: the managers' group may post once per `post_slot` seconds, and two posts
    are due before every message: the first goes at once (the group's limit is used up), the
    second must wait for its slot while the messages go on."""
    from bot.handoff import MANAGERS_POST
    from bot.pacing import ChannelLimits, Limit
    from storage.models import Lead, OutboxRow
    from storage.repositories import outbox_row

    due = await count_rows(
        db, OutboxRow.status == "pending", OutboxRow.due_at <= datetime.now(UTC)
    )
    if due < rows:
        progress(f"only {due:,} messages left due: the paced sample at {rate:g}/s sends those")
        rows = due
    if not rows:
        raise SystemExit("no message left due for a paced sample: a larger --leads, please")
    overall = Limit(rate, max(1, int(rate)))
    per_chat = Limit(*PER_CHAT)
    group = Limit(*PER_GROUP) if post_slot is None else Limit(1 / post_slot, 1)
    limits = ChannelLimits(overall, per_chat, group)
    transport = NullTransport(target=rows)
    chat = NullManagers(target=2) if post_slot is not None else None
    posts: list[int] = []
    if chat is not None:
        now = datetime.now(UTC)
        async with db.unit_of_work() as uow:
            lead_id = await uow.session.scalar(select(func.min(Lead.id)))
            key = uuid.uuid4().hex[:8]
            inserted = await uow.outbox.enqueue_many(
                [
                    outbox_row(
                        f"bench-post:{key}:{n}",
                        CHANNEL,
                        MANAGERS_POST,
                        now - timedelta(days=365),  # claimed first
                        now,
                        lead_id,
                        {"purpose": "bench", "text": f"Пост {n}"},
                    )
                    for n in (1, 2)
                ]
            )
            await uow.commit()
        posts = [row_id for row_id, _ in sorted(inserted)]
    name = f"paced{rate:g}" + ("-post" if chat else "")
    worker = make_worker(db, scenarios, limits, transport, name, rows, managers=chat)
    before = await count_rows(db, OutboxRow.status == "sent")
    began = time.monotonic()
    timeout = rows / rate + (post_slot or 0) + 120
    waits = [transport.reached] + ([chat.reached] if chat is not None else [])
    await pumped(worker, *waits, seconds=timeout)
    recorded = await count_rows(db, OutboxRow.status == "sent") - before
    left = await count_rows(db, OutboxRow.status == "sending")
    others = transport.moments[:rows]
    share, windows = achieved(others, overall)
    chats: dict[str, list[float]] = defaultdict(list)
    for chat_key, moment in zip(transport.chats, transport.moments, strict=True):
        chats[chat_key].append(moment)
    post_moments = chat.moments if chat is not None else []
    statuses: list[str] = []
    if posts:
        async with db.unit_of_work() as uow:
            found = dict(
                (
                    await uow.session.execute(
                        select(OutboxRow.id, OutboxRow.status).where(OutboxRow.id.in_(posts))
                    )
                ).all()
            )
        statuses = [found[row_id] for row_id in posts]
    result = {
        "rate": rate,
        "burst": overall.burst,
        "rows": rows,
        "sent": transport.sent,
        "posted": len(post_moments),
        "recorded": recorded,
        "left_sending": left,
        "share": share,
        "windows": windows,
        "span": others[-1] - others[0] if others else 0.0,
        "whole_rate": rows / (others[-1] - began) if others else 0.0,
        "violations": {
            "overall": violations(transport.moments + post_moments, overall),
            "chat": sum(violations(m, per_chat) for m in chats.values()),
            "group": violations(post_moments, group),
        },
        "post_slot": post_slot,
        "post_gap": post_moments[1] - post_moments[0] if len(post_moments) > 1 else None,
        "post_at": post_moments[1] - others[0] if len(post_moments) > 1 and others else None,
        "post_statuses": statuses,
    }
    shown = f"{share:.1%}" if share is not None else "n/a"
    progress(f"paced {name}: {transport.sent:,} sent, {shown} of the limit")
    return result


async def outbox_paced(args: argparse.Namespace) -> dict[str, Any]:
    from bot.delivery import LEASE
    from bot.scenario.active import ActiveScenario
    from bot.scenario.loader import load_scenario
    from storage.database import Database

    db = Database(args.url)
    scenarios = ActiveScenario(load_scenario(Path(args.scenario)))
    samples = [await paced_sample(db, scenarios, rate, rows) for rate, rows in args.paced]
    if args.managers:
        rate, rows = args.managers
        # The post's slot comes half-way through the sample (so the others are seen going on
        # while it waits), and well within half the lease (so it is sent, not given back).
        slot = min(max(1.0, round((rows - rate) / rate / 2)), LEASE.total_seconds() / 4)
        samples.append(await paced_sample(db, scenarios, rate, rows, post_slot=slot))
    await db.dispose()
    return {"samples": samples}


# ---- APScheduler 3, one job per message ----


@dataclass
class Fired:
    """What the jobs of this process did: a count, and an event once `target` were fired."""

    count: int = 0
    target: int = 0
    done: asyncio.Event | None = None


FIRED = Fired()


async def send_step(lead_id: int, sequence: str, step: str) -> None:
    """The job of one message, as commonly written: the same fake send as the outbox's
    transport, and nothing else (no send-time checks, nothing recorded, no pacing)."""
    await asyncio.sleep(0)
    FIRED.count += 1
    if FIRED.done is not None and FIRED.count >= FIRED.target:
        FIRED.done.set()


def job_id(message: Message) -> str:
    return f"step:{message.lead_id}:{CHAIN}:s{message.step}"  # the outbox row's key


def aps_scheduler(path: Path) -> tuple[AsyncIOScheduler, SQLAlchemyJobStore]:
    store = SQLAlchemyJobStore(url=f"sqlite:///{path}")
    scheduler = AsyncIOScheduler(jobstores={"default": store}, timezone=UTC)
    return scheduler, store


async def aps_load(args: argparse.Namespace) -> dict[str, Any]:
    """`add_job` for a sample, then the rest written in bulk as the job store writes them."""
    scheduler, store = aps_scheduler(Path(args.aps_file))
    scheduler.start(paused=True)
    queue = list(
        messages([(n + 1, n + 1) for n in range(args.leads)], args.steps, datetime.now(UTC))
    )
    sample, rest = queue[: args.aps_add_sample], queue[args.aps_add_sample :]
    meter = Meter.now()
    for message in sample:
        scheduler.add_job(
            send_step,
            "date",
            run_date=message.due_at,
            args=[message.lead_id, CHAIN, f"s{message.step}"],
            id=job_id(message),
            misfire_grace_time=None,
        )
    added = meter.since()
    progress(f"{len(sample):,} jobs added in {added['wall']:.1f}s")

    # The rest in bulk: the store's own row format (a pickled job state per row).
    with store.engine.begin() as connection:
        template = pickle.loads(
            connection.execute(select(store.jobs_t.c.job_state).limit(1)).scalar_one()
        )
    began = time.perf_counter()
    for part in chunks(rest, SETUP_PER_STATEMENT):
        rows = []
        for message in part:
            state = {
                **template,
                "id": job_id(message),
                "args": (message.lead_id, CHAIN, f"s{message.step}"),
                "next_run_time": message.due_at,
            }
            rows.append(
                {
                    "id": job_id(message),
                    "next_run_time": message.due_at.timestamp(),
                    "job_state": pickle.dumps(state, store.pickle_protocol),
                }
            )
        with store.engine.begin() as connection:
            connection.execute(store.jobs_t.insert(), rows)
    progress(f"{len(rest):,} jobs written in bulk in {time.perf_counter() - began:.1f}s")
    scheduler.shutdown(wait=False)
    return {"add_sample": len(sample), "add": added, "jobs": len(queue)}


async def aps_run(args: argparse.Namespace) -> dict[str, Any]:
    scheduler, store = aps_scheduler(Path(args.aps_file))
    scheduler.start(paused=True)
    fetches: list[float] = []
    due = 0
    for _ in range(args.aps_fetches):
        began = time.perf_counter()
        due = len(store.get_due_jobs(datetime.now(UTC)))
        fetches.append(time.perf_counter() - began)
    progress(f"{due:,} due jobs fetched {len(fetches)} times, {statistics.median(fetches):.1f}s")

    # Fire a sample: every job but the first `aps_fire` is moved to next year first.
    later = (datetime.now(UTC) + timedelta(days=365)).timestamp()
    with store.engine.begin() as connection:
        rowid = literal_column("rowid")
        first = (
            select(rowid)
            .select_from(store.jobs_t)
            .order_by(store.jobs_t.c.next_run_time, rowid)
            .limit(args.aps_fire)
        )
        connection.execute(
            update(store.jobs_t)
            .where(rowid.not_in(first.scalar_subquery()))
            .values(next_run_time=later)
        )
    FIRED.target, FIRED.done = min(args.aps_fire, due), asyncio.Event()
    meter = Meter.now()
    scheduler.resume()
    await asyncio.wait_for(FIRED.done.wait(), timeout=3600)
    fired = meter.since()
    progress(f"{FIRED.count:,} jobs fired in {fired['wall']:.1f}s")
    scheduler.shutdown(wait=False)
    return {
        "due": due,
        "fetch_median_s": statistics.median(fetches),
        "fired": FIRED.count,
        "fire": fired,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---- the parent: runs each part in a child process, prints the comparison ----

PHASES = {
    "outbox-load": outbox_load,
    "outbox-run": outbox_run,
    "outbox-paced": outbox_paced,
    "aps-load": aps_load,
    "aps-run": aps_run,
}


def run_phase(name: str, argv: list[str]) -> dict[str, Any]:
    progress(f"{name} ...")
    began = time.perf_counter()
    child = subprocess.run(
        [sys.executable, __file__, *argv, "--phase", name],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - began
    return result


def describe_drain(d: dict[str, Any]) -> str:
    wall, cpu = rates(d["sent"], d)
    thousands = max(d["sent"], 1) / 1000
    return (
        f"{d['sent']:,} sent ({d['recorded']:,} recorded sent, {d['left_sending']} left "
        f"sending) in {d['wall']:.2f} s wall, {cpu_of(d):.2f} s CPU: {wall:,.0f}/s wall, "
        f"{cpu:,.0f}/s per CPU second; {d['statements'] / thousands:,.0f} statements and "
        f"{d['transactions'] / thousands:,.0f} transactions per 1,000 messages"
    )


def report(args: argparse.Namespace, dialect: str, results: dict[str, dict[str, Any]]) -> None:
    load, run, paced = results["outbox-load"], results["outbox-run"], results["outbox-paced"]
    small_load, small = load.get("small"), results.get("small-run")
    aps_load_, aps_run_ = results.get("aps-load"), results.get("aps-run")
    server = run["server_cpu_known"]
    total = load["pending"]
    cpu_note = "this process's CPU time"
    if server:
        cpu_note += " plus its PostgreSQL server processes'"
    elif dialect != "sqlite":
        cpu_note += " (not the PostgreSQL server's: it runs on another machine)"
    print()
    print(
        f"Load: {load['leads']:,} leads x {args.steps} messages = {total:,} pending "
        f"({args.steps - 1} warm-up step{'s' if args.steps > 2 else ''} each, and a broadcast "
        f"to every lead), all due. "
        f"Outbox on {dialect}; APScheduler {apscheduler.__version__} SQLAlchemyJobStore on "
        f"a SQLite file, one date job per message."
    )
    print(f"CPU = {cpu_note}. Lead set-up (bulk, not measured): {load['setup_seconds']:.1f}s")

    print()
    print("1. Drain, no pacing limit, a transport that does nothing, one process")
    for d in run["drains"]:
        print(f"   {d['mode']:<4} at {run['pending']:,} pending: {describe_drain(d)}")
    if small:
        for d in small["drains"]:
            print(f"   {d['mode']:<4} at {small['pending']:,} pending: {describe_drain(d)}")
    best = max(run["drains"], key=lambda d: rates(d["sent"], d)[1])
    wall, cpu = rates(best["sent"], best)
    print(
        f"   GOAL drain >= {DRAIN_GOAL:,.0f}/s: {cpu:,.0f}/s per CPU second ({best['mode']}) "
        f"-> {verdict(cpu >= DRAIN_GOAL)}; wall {wall:,.0f}/s -> {verdict(wall >= DRAIN_GOAL)}"
    )

    print()
    print(
        f"2. Paced: pumped as the heartbeat does; per chat {PER_CHAT[1]} per "
        f"{PER_CHAT[1] / PER_CHAT[0]:g} s, per group {PER_GROUP[1]} per "
        f"{PER_GROUP[1] / PER_GROUP[0]:g} s; violations counted over the transport's "
        f"own send moments (a window short by under {SLACK * 1000:g} ms not counted)"
    )
    for s in paced["samples"]:
        share = f"{s['share']:.1%}" if s["share"] is not None else "n/a (within one window)"
        v = s["violations"]
        head = f"limit {s['rate']:,g}/s (burst {s['burst']:,})"
        if s["post_slot"] is not None:
            head += f" + a managers' post waiting for its group slot ({s['post_slot']:g} s)"
        print(
            f"   {head}: {s['rows']:,} messages, {share} of what the limit allows over "
            f"{s['windows']} whole windows ({s['span']:.2f} s first to last; "
            f"{s['whole_rate']:,.1f}/s from the first claim); sent {s['sent']:,}, posted "
            f"{s['posted']}, recorded sent {s['recorded']:,}, left sending {s['left_sending']}; "
            f"violations: overall {v['overall']}, per chat {v['chat']}, per group {v['group']}"
        )
        if s["post_slot"] is not None:
            gap = s["post_gap"]
            print(
                f"     the waiting post went out {gap:.2f} s after the group's last post "
                f"(its slot: {s['post_slot']:g} s), {s['post_at']:.2f} s after the first "
                f"message; posts recorded: {', '.join(s['post_statuses'])}"
            )
    for s in paced["samples"]:
        v = s["violations"]
        clean = v["overall"] == v["chat"] == v["group"] == 0
        name = f"{s['rate']:,g}/s" + (" with a post waiting" if s["post_slot"] else "")
        share = f"{s['share']:.1%}" if s["share"] is not None else "n/a"
        ok = clean and s["share"] is not None and s["share"] >= PACED_GOAL
        if s["post_slot"] is not None:
            ok = ok and s["post_gap"] is not None and s["post_gap"] >= s["post_slot"]
        print(
            f"   GOAL paced {name}: >= {PACED_GOAL:.0%} of the limit, 0 violations: {share}, "
            f"{v['overall'] + v['chat'] + v['group']} violations -> {verdict(ok)}"
        )

    print()
    print("3. Enqueue")
    single_wall, single_cpu = rates(load["single_rows"], load["single"])
    many_wall, many_cpu = rates(load["many_rows"], load["many"])
    b = load["broadcast"]
    bulk_wall, bulk_cpu = rates(load["broadcast_rows"], b)
    per_single = load["single"]["statements"] / max(load["single_rows"], 1)
    print(
        f"   enqueue(), {ENQUEUE_PER_TRANSACTION:,} a transaction: {load['single_rows']:,} "
        f"rows, {single_wall:,.0f}/s wall, {single_cpu:,.0f}/s per CPU second; "
        f"{per_single:.2f} statements per row"
    )
    print(
        f"   enqueue_many(), {load['per_transaction']:,} a transaction: "
        f"{load['many_rows']:,} rows, {many_wall:,.0f}/s wall, {many_cpu:,.0f}/s per CPU second; "
        f"{load['many']['statements']:,.0f} statements"
    )
    print(
        f"   a {load['broadcast_rows']:,}-lead broadcast queued in {b['wall']:.2f} s wall "
        f"({cpu_of(b):.2f} s CPU; {b['statements']:,.0f} statements) by broadcasts.enqueue: "
        f"{bulk_wall:,.0f}/s wall, {bulk_cpu:,.0f}/s per CPU second; choosing its "
        f"{load['audience_matched']:,} leads (broadcasts.audience) took "
        f"{load['audience']['wall']:.2f} s wall, {cpu_of(load['audience']):.2f} s CPU"
    )
    if aps_load_:
        add = aps_load_["add"]
        add_wall, add_cpu = rates(aps_load_["add_sample"], add)
        print(
            f"   APScheduler add_job(): {aps_load_['add_sample']:,} jobs, {add_wall:,.0f}/s "
            f"wall, {add_cpu:,.0f}/s per CPU second; "
            f"{add['statements'] / max(aps_load_['add_sample'], 1):.2f} statements per job"
        )
        for name, wall_, cpu_ in (
            ("enqueue()", single_wall, single_cpu),
            ("broadcasts.enqueue", bulk_wall, bulk_cpu),
        ):
            print(
                f"   GOAL {name} >= {ENQUEUE_GOAL:g}x add_job(): {ratio(cpu_, add_cpu)} per "
                f"CPU second -> {verdict(cpu_ >= ENQUEUE_GOAL * add_cpu)}; "
                f"{ratio(wall_, add_wall)} wall -> {verdict(wall_ >= ENQUEUE_GOAL * add_wall)}"
            )
    else:
        print(f"   GOAL enqueue >= {ENQUEUE_GOAL:g}x add_job(): not measured (--skip-apscheduler)")
    scale = BROADCAST_LEADS / max(load["broadcast_rows"], 1)
    wall_s, cpu_s = scale * b["wall"], scale * cpu_of(b)
    whole = scale * (b["wall"] + load["audience"]["wall"])
    extrapolated = "" if scale == 1 else f" (extrapolated from {load['broadcast_rows']:,} leads)"
    print(
        f"   GOAL a {BROADCAST_LEADS:,}-lead broadcast queued in < {BROADCAST_GOAL:g} s"
        f"{extrapolated}: {cpu_s:.2f} s CPU -> {verdict(cpu_s < BROADCAST_GOAL)}; "
        f"{wall_s:.2f} s wall -> {verdict(wall_s < BROADCAST_GOAL)}; with choosing the leads "
        f"{whole:.2f} s wall"
    )

    print()
    c = run["claims"]
    print(
        f"4. Claim: claim_due of {c['batch']} with {run['pending']:,} pending: p50 "
        f"{c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms wall ({c['claims']} claims, "
        f"{c['claimed']} rows the last); CPU p50 {c['cpu_p50_ms']:.2f} ms, p99 "
        f"{c['cpu_p99_ms']:.2f} ms; {c['statements']:.1f} statements a claim"
    )
    if small:
        sc = small["claims"]
        print(
            f"   at {small['pending']:,} pending: p50 {sc['p50_ms']:.2f} ms, p99 "
            f"{sc['p99_ms']:.2f} ms wall, CPU p50 {sc['cpu_p50_ms']:.2f} ms, p99 "
            f"{sc['cpu_p99_ms']:.2f} ms; ratio of the p50s {ratio(c['p50_ms'], sc['p50_ms'])}"
        )
    print(
        f"   GOAL claim p99 < {CLAIM_P99_GOAL_MS:g} ms: {c['cpu_p99_ms']:.2f} ms CPU -> "
        f"{verdict(c['cpu_p99_ms'] < CLAIM_P99_GOAL_MS)}; {c['p99_ms']:.2f} ms wall -> "
        f"{verdict(c['p99_ms'] < CLAIM_P99_GOAL_MS)}"
    )

    print()
    print(
        f"5. Peak memory (ru_maxrss) of the process that claims and sends: "
        f"{run['peak_rss_mb']:,.1f} MB at {run['pending']:,} pending"
        + (f", {small['peak_rss_mb']:,.1f} MB at {small['pending']:,} pending" if small else "")
    )
    if small:
        same = [d["target"] for d in run["drains"]] == [d["target"] for d in small["drains"]]
        work = "the same claims and sends" if same else "unequal sends (the small load ran out)"
        memory = run["peak_rss_mb"] / small["peak_rss_mb"]
        print(
            f"   GOAL peak memory <= {MEMORY_GOAL:g}x the small load's ({work}): "
            f"{memory:.2f}x -> {verdict(memory <= MEMORY_GOAL)}"
        )
    if aps_run_ and aps_load_:
        fire_wall, fire_cpu = rates(aps_run_["fired"], aps_run_["fire"])
        _, drain_cpu = rates(best["sent"], best)
        print()
        print(
            f"APScheduler with {aps_load_['jobs']:,} jobs: get_due_jobs "
            f"{aps_run_['fetch_median_s'] * 1000:,.0f} ms median (all {aps_run_['due']:,} due, "
            f"loaded at once); fired {aps_run_['fired']:,} bare jobs (no checks, nothing "
            f"recorded, no pacing) at {fire_wall:,.0f}/s wall, {fire_cpu:,.0f}/s per CPU "
            f"second (outbox drain/fire per CPU second: {ratio(drain_cpu, fire_cpu)}); peak "
            f"memory {aps_run_['peak_rss_mb']:,.1f} MB "
            f"({ratio(aps_run_['peak_rss_mb'], run['peak_rss_mb'])} the outbox's)"
        )
    if small_load:
        print(
            f"Small load for the baselines: {small_load['pending']:,} pending "
            f"({small_load['leads']:,} leads)"
        )
    walls = ", ".join(f"{name} {r['wall_seconds']:.0f}s" for name, r in results.items())
    print(f"Wall time per part: {walls}")


def rate_rows(value: str) -> tuple[float, int]:
    rate, rows = value.split(":")
    return float(rate), int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument(
        "--steps", type=int, default=5, help="messages per lead: STEPS-1 steps and a broadcast"
    )
    parser.add_argument(
        "--database", default="sqlite", help="sqlite (a temporary file) or a PostgreSQL URL"
    )
    parser.add_argument("--enqueue-sample", type=int, default=20_000, help="rows via enqueue()")
    parser.add_argument("--claims", type=int, default=200, help="claims timed")
    parser.add_argument(
        "--drain", type=int, default=5_000, help="messages sent per drain mode (tick, pump)"
    )
    parser.add_argument(
        "--paced",
        type=rate_rows,
        action="append",
        help="RATE:ROWS, a paced sample at that limit (msg/s); default 30:600 and 1000:5000",
    )
    parser.add_argument(
        "--managers",
        type=rate_rows,
        default=(30.0, 600),
        help="RATE:ROWS, the paced sample with a managers' post waiting (default 30:600)",
    )
    parser.add_argument("--skip-managers", action="store_true")
    parser.add_argument(
        "--memory-baseline",
        type=int,
        default=10_000,
        help="messages pending in the small load (memory, claim and drain baselines); 0: none",
    )
    parser.add_argument("--aps-add-sample", type=int, default=10_000, help="jobs via add_job()")
    parser.add_argument("--aps-fetches", type=int, default=3, help="get_due_jobs calls timed")
    parser.add_argument("--aps-fire", type=int, default=5_000, help="jobs fired")
    parser.add_argument("--skip-apscheduler", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    # set by the parent for its children
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--aps-file", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-leads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.paced = args.paced or [(30.0, 600), (1000.0, 5000)]
    if args.skip_managers:
        args.managers = None
    if args.steps < 2:
        parser.error("--steps must be at least 2 (a warm-up step and the broadcast)")
    if args.claims < 1:
        parser.error("--claims must be at least 1")

    if args.phase:
        STATEMENTS.install()
        BACKENDS.install()
        print(json.dumps(asyncio.run(PHASES[args.phase](args))))
        return

    workdir = Path(tempfile.mkdtemp(prefix="leadbot-bench-"))
    schemas: list[str] = []

    def database(name: str) -> str:
        if args.database == "sqlite":
            return f"sqlite+aiosqlite:///{workdir}/{name}.db"
        schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
        postgres_schema(args.database, f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        return f"{args.database}{'&' if '?' in args.database else '?'}search_path={schema}"

    if args.database != "sqlite" and "search_path" in make_url(args.database).query:
        parser.error("--database: give a URL without search_path (schemas are made here)")
    scenario = write_scenario(workdir / "scenario", args.steps - 1)
    common = [
        *("--steps", str(args.steps), "--claims", str(args.claims)),
        *("--scenario", str(scenario), "--aps-file", str(workdir / "apscheduler.db")),
        *("--aps-add-sample", str(args.aps_add_sample), "--aps-fetches", str(args.aps_fetches)),
        *("--aps-fire", str(args.aps_fire)),
        *(arg for rate, rows in args.paced for arg in ("--paced", f"{rate:g}:{rows}")),
    ]
    if args.managers:
        common += ["--managers", f"{args.managers[0]:g}:{args.managers[1]}"]
    else:
        common += ["--skip-managers"]
    results: dict[str, dict[str, Any]] = {}
    try:
        url = database("outbox")
        dialect = make_url(url).get_backend_name()
        print(
            f"bench/outbox.py: {args.leads:,} leads x {args.steps} on {dialect}, work in "
            f"{workdir}",
            file=sys.stderr,
        )
        full = [*common, "--leads", str(args.leads), "--url", url]
        full += ["--enqueue-sample", str(args.enqueue_sample), "--drain", str(args.drain)]
        small_leads = args.memory_baseline // args.steps
        small_url = database("baseline") if small_leads else ""
        baseline = ["--baseline-url", small_url, "--baseline-leads", str(small_leads)]
        results["outbox-load"] = run_phase("outbox-load", [*full, *baseline])
        results["outbox-run"] = run_phase("outbox-run", full)
        if small_leads:
            pending = results["outbox-load"]["small"]["pending"]
            small = [*common, "--leads", str(small_leads), "--url", small_url]
            small += ["--drain", str(min(args.drain, pending // 2))]
            results["small-run"] = run_phase("outbox-run", small)
        results["outbox-paced"] = run_phase("outbox-paced", full)
        if not args.skip_apscheduler:
            aps = [*common, "--leads", str(args.leads)]
            results["aps-load"] = run_phase("aps-load", aps)
            results["aps-run"] = run_phase("aps-run", aps)
    finally:
        if not args.keep:
            for schema in schemas:
                postgres_schema(args.database, f'DROP SCHEMA "{schema}" CASCADE')
            shutil.rmtree(workdir, ignore_errors=True)
    report(args, dialect, results)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
