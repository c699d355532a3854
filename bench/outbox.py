"""The outbox under load, next to the common alternative: APScheduler 3 with one job per message.

Queues LEADS x STEPS warm-up messages and prints, for the outbox (house rule 5):
  - the enqueue rate through `OutboxRepository.enqueue` (1,000 rows a transaction, a sample)
    and the bulk equivalent (multi-row INSERT) that fills the rest of the queue;
  - the latency of `claim_due` for a batch of 200 with every message pending and due
    (p50/p99; each claimed batch is committed, then released);
  - the send rate the real `DeliveryWorker` achieves against its configured pacing limit
    (a drain sample through a transport that only counts, ticking back to back);
  - peak memory (ru_maxrss) of the process that claims and sends;
and the same for APScheduler 3.11 with one `date` job per message in its SQLAlchemyJobStore on
a SQLite file: `add_job` rate (a sample) and the bulk equivalent, the time to fetch the due
jobs (`get_due_jobs`, what the scheduler does on each wake-up, with every job due), the rate
at which it fires a sample of due jobs, peak memory; then the ratios.

Each measured part runs in a child process of its own, so each peak memory is its own.
Run by hand; never part of the test run.

    .venv/bin/python bench/outbox.py                      # 100,000 leads x 5 steps, SQLite
    .venv/bin/python bench/outbox.py --leads 20000 --database postgresql+asyncpg://u@h/db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import apscheduler  # noqa: E402
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # noqa: E402
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: E402
from sqlalchemy import func, insert, literal_column, select, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot import sequences  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.delivery import BATCH, LEASE, DeliveryWorker  # noqa: E402
from bot.engine.funnel import MARKETING, Funnel  # noqa: E402
from bot.engine.messages import Outgoing  # noqa: E402
from bot.pacing import ChannelLimits, Limit, MemoryPacer  # noqa: E402
from bot.scenario.active import ActiveScenario  # noqa: E402
from bot.scenario.loader import load_scenario  # noqa: E402
from storage import migrate  # noqa: E402
from storage.claims import claim_due  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.models import Consent, Identity, Lead, OutboxRow, SequenceRun  # noqa: E402

CHANNEL = "fake"
CHAIN = "warmup"
ENQUEUE_PER_TRANSACTION = 1_000
BULK_PER_STATEMENT = 20_000


# ---- the load ----


def write_scenario(folder: Path, steps: int) -> Path:
    """A minimal funnel with one chain of `steps` steps and no quiet hours."""
    folder.mkdir(parents=True, exist_ok=True)
    step_lines = "\n".join(
        f'      - {{id: s{n}, after: {"1d" if n else "0m"}, text: "Шаг {n}"}}'
        for n in range(steps)
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
    """One queued step, as `sequences.queue_step` writes it."""

    lead_id: int
    run_id: int
    step: int
    due_at: datetime

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "channel": CHANNEL,
            "kind": sequences.STEP,
            "payload": {
                "sequence": CHAIN,
                "step": f"s{self.step}",
                "index": self.step,
                "run": self.run_id,
            },
            "idempotency_key": sequences.step_key(self.lead_id, CHAIN, f"s{self.step}"),
            "due_at": self.due_at,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
        }


def messages(runs: Sequence[tuple[int, int]], steps: int, start: datetime) -> Iterator[Message]:
    """Step-major (every lead's step 0 first), every message already due: a batch holds 200
    different leads, so the per-chat limit (1 msg/s) never holds a batch back."""
    for step in range(steps):
        due = start - timedelta(seconds=steps - step)
        for lead_id, run_id in runs:
            yield Message(lead_id, run_id, step, due)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- the outbox ----


async def outbox_load(args: argparse.Namespace) -> dict[str, Any]:
    """Leads with an account, advertising consent and an active chain (bulk: set-up, not
    measured); then every step queued, a sample through the repository, the rest in bulk."""
    db = Database(args.url)
    await migrate.upgrade(db.engine)
    now = datetime.now(UTC)
    began = time.perf_counter()
    async with db.unit_of_work() as uow:
        session = uow.session
        lead = {"created_at": now, "updated_at": now, "stage": "new", "funnel_stage": "new"}
        for part in chunks(range(args.leads), BULK_PER_STATEMENT):
            await session.execute(insert(Lead), [{**lead, "score": 0} for _ in part])
        lead_ids = (await session.scalars(select(Lead.id).order_by(Lead.id))).all()
        for part in chunks(lead_ids, BULK_PER_STATEMENT):
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
    progress(f"{args.leads:,} leads set up in {setup:.1f}s")

    queue = list(messages([(lead_id, run_id) for lead_id, run_id in runs], args.steps, now))
    sample, rest = queue[: args.enqueue_sample], queue[args.enqueue_sample :]
    began = time.perf_counter()
    for part in chunks(sample, ENQUEUE_PER_TRANSACTION):
        async with db.unit_of_work() as uow:
            for message in part:
                values = message.row(now)
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
    repository = time.perf_counter() - began
    progress(f"{len(sample):,} rows enqueued through the repository in {repository:.1f}s")
    began = time.perf_counter()
    for part in chunks(rest, BULK_PER_STATEMENT):
        async with db.unit_of_work() as uow:
            await uow.session.execute(insert(OutboxRow), [m.row(now) for m in part])
            await uow.commit()
    bulk = time.perf_counter() - began
    progress(f"{len(rest):,} rows inserted in bulk in {bulk:.1f}s")
    async with db.unit_of_work() as uow:
        pending = await uow.session.scalar(
            select(func.count()).where(OutboxRow.status == "pending")
        )
    await db.dispose()
    return {
        "setup_seconds": setup,
        "enqueue_sample": len(sample),
        "enqueue_rate": len(sample) / repository if sample else None,
        "bulk_rows": len(rest),
        "bulk_rate": len(rest) / bulk if rest else None,
        "pending": pending,
        "peak_rss_mb": peak_rss_mb(),
    }


class CountingTransport:
    """The fake channel: a send costs one trip through the event loop, and is counted."""

    channel = CHANNEL

    def __init__(self) -> None:
        self.sent = 0

    async def send(
        self, external_id: str, message: Outgoing, *, idempotency_key: str | None = None
    ) -> None:
        await asyncio.sleep(0)
        self.sent += 1


async def outbox_run(args: argparse.Namespace) -> dict[str, Any]:
    db = Database(args.url)
    async with db.unit_of_work() as uow:
        pending = await uow.session.scalar(
            select(func.count()).where(OutboxRow.status == "pending")
        )
    latencies: list[float] = []
    for _ in range(args.claims):
        began = time.perf_counter()
        async with db.unit_of_work() as uow:
            claimed = await claim_due(
                uow.session, now=datetime.now(UTC), worker="bench", lease=LEASE, limit=BATCH
            )
            ids = [row.id for row in claimed]
            await uow.commit()
        latencies.append(time.perf_counter() - began)
        async with db.unit_of_work() as uow:  # released as a worker gives a row back
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
    progress(
        f"{args.claims} claims of {BATCH} with {pending:,} pending: "
        f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms"
    )

    scenarios = ActiveScenario(load_scenario(Path(args.scenario)))
    clock = SystemClock()
    drains = []
    for rate, rows in args.drain:
        transport = CountingTransport()
        burst = max(1, int(rate))  # a second's worth, as the Telegram default
        one_per_second = Limit(rate=1.0, burst=1)
        limits = ChannelLimits(Limit(rate, burst), one_per_second, one_per_second)
        worker = DeliveryWorker(
            db,
            scenarios,
            clock,
            {CHANNEL: transport},
            MemoryPacer({CHANNEL: limits}),
            Funnel(db, scenarios, clock),
            worker_id=f"bench-{rate:g}",
        )
        began = time.perf_counter()
        while transport.sent < rows and await worker.tick():
            pass
        elapsed = time.perf_counter() - began
        drains.append({"rate": rate, "burst": burst, "sent": transport.sent, "seconds": elapsed})
        progress(f"drained {transport.sent:,} at a limit of {rate:g}/s in {elapsed:.1f}s")
    await db.dispose()
    return {
        "pending": pending,
        "claims": len(latencies),
        "claim_p50_ms": percentile(latencies, 0.5) * 1000,
        "claim_p99_ms": percentile(latencies, 0.99) * 1000,
        "drains": drains,
        "peak_rss_mb": peak_rss_mb(),
    }


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
    transport, and nothing else (no send-time checks, nothing recorded)."""
    await asyncio.sleep(0)
    FIRED.count += 1
    if FIRED.done is not None and FIRED.count >= FIRED.target:
        FIRED.done.set()


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
    began = time.perf_counter()
    for message in sample:
        scheduler.add_job(
            send_step,
            "date",
            run_date=message.due_at,
            args=[message.lead_id, CHAIN, f"s{message.step}"],
            id=sequences.step_key(message.lead_id, CHAIN, f"s{message.step}"),
            misfire_grace_time=None,
        )
    added = time.perf_counter() - began
    progress(f"{len(sample):,} jobs added in {added:.1f}s")

    # The bulk equivalent: the store's own row format (a pickled job state per row).
    with store.engine.begin() as connection:
        template = pickle.loads(
            connection.execute(select(store.jobs_t.c.job_state).limit(1)).scalar_one()
        )
    began = time.perf_counter()
    for part in chunks(rest, BULK_PER_STATEMENT):
        rows = []
        for message in part:
            key = sequences.step_key(message.lead_id, CHAIN, f"s{message.step}")
            state = {
                **template,
                "id": key,
                "args": (message.lead_id, CHAIN, f"s{message.step}"),
                "next_run_time": message.due_at,
            }
            rows.append(
                {
                    "id": key,
                    "next_run_time": message.due_at.timestamp(),
                    "job_state": pickle.dumps(state, store.pickle_protocol),
                }
            )
        with store.engine.begin() as connection:
            connection.execute(store.jobs_t.insert(), rows)
    bulk = time.perf_counter() - began
    progress(f"{len(rest):,} jobs written in bulk in {bulk:.1f}s")
    scheduler.shutdown(wait=False)
    return {
        "add_sample": len(sample),
        "add_rate": len(sample) / added if sample else None,
        "bulk_rows": len(rest),
        "bulk_rate": len(rest) / bulk if rest else None,
        "jobs": len(queue),
        "peak_rss_mb": peak_rss_mb(),
    }


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
    began = time.perf_counter()
    scheduler.resume()
    await asyncio.wait_for(FIRED.done.wait(), timeout=3600)
    fired_in = time.perf_counter() - began
    progress(f"{FIRED.count:,} jobs fired in {fired_in:.1f}s")
    scheduler.shutdown(wait=False)
    return {
        "due": due,
        "fetch_median_s": statistics.median(fetches),
        "fetch_max_s": max(fetches),
        "fired": FIRED.count,
        "fire_seconds": fired_in,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---- the parent: runs each part in a child process, prints the comparison ----

PHASES = {
    "outbox-load": outbox_load,
    "outbox-run": outbox_run,
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


def postgres_schema(url: str, statement: str) -> None:
    import asyncpg

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run() -> None:
        connection = await asyncpg.connect(plain)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}x" if a and b else "-"


def report(args: argparse.Namespace, dialect: str, results: dict[str, dict[str, Any]]) -> None:
    load, run = results["outbox-load"], results["outbox-run"]
    aps_load_, aps_run_ = results.get("aps-load"), results.get("aps-run")
    total = args.leads * args.steps
    print()
    print(
        f"Load: {args.leads:,} leads x {args.steps} steps = {total:,} messages, all due. "
        f"Outbox on {dialect}; APScheduler {apscheduler.__version__} SQLAlchemyJobStore "
        f"on a SQLite file."
    )
    print(f"Lead set-up (bulk, not measured): {load['setup_seconds']:.1f}s")
    rows: list[tuple[str, str, str, str]] = []
    aps_add = aps_load_["add_rate"] if aps_load_ else None
    rows.append(
        (
            "enqueue (API), per s",
            f"{load['enqueue_rate']:,.0f} rows (enqueue(), {load['enqueue_sample']:,} rows, "
            f"{ENQUEUE_PER_TRANSACTION:,}/transaction)",
            f"{aps_add:,.0f} jobs (add_job(), {aps_load_['add_sample']:,} jobs)"
            if aps_load_
            else "-",
            ratio(load["enqueue_rate"], aps_add),
        )
    )
    rows.append(
        (
            "bulk write, per s",
            f"{load['bulk_rate'] or 0:,.0f} rows ({load['bulk_rows']:,})",
            f"{aps_load_['bulk_rate'] or 0:,.0f} jobs ({aps_load_['bulk_rows']:,})"
            if aps_load_
            else "-",
            ratio(load["bulk_rate"], aps_load_["bulk_rate"] if aps_load_ else None),
        )
    )
    rows.append(
        (
            "fetch due work",
            f"claim {BATCH}: p50 {run['claim_p50_ms']:.0f} ms, p99 {run['claim_p99_ms']:.0f} ms "
            f"({run['claims']} claims, {run['pending']:,} pending)",
            f"get_due_jobs: {aps_run_['fetch_median_s'] * 1000:,.0f} ms median "
            f"(all {aps_run_['due']:,} due, loaded at once)"
            if aps_run_
            else "-",
            ratio(aps_run_["fetch_median_s"] * 1000, run["claim_p50_ms"]) + " (aps/outbox)"
            if aps_run_
            else "-",
        )
    )
    for drain in run["drains"]:
        achieved = drain["sent"] / drain["seconds"]
        rows.append(
            (
                f"drain, limit {drain['rate']:g}/s",
                f"{achieved:,.1f}/s achieved of {drain['rate']:g}/s (burst {drain['burst']}, "
                f"{drain['sent']:,} sent in {drain['seconds']:.1f}s)",
                "",
                f"{achieved / drain['rate']:.0%} of limit",
            )
        )
    if aps_run_:
        fire_rate = aps_run_["fired"] / aps_run_["fire_seconds"]
        best = max(d["sent"] / d["seconds"] for d in run["drains"])
        rows.append(
            (
                "fire (bare job, no limit)",
                "",
                f"{fire_rate:,.1f}/s ({aps_run_['fired']:,} fired in "
                f"{aps_run_['fire_seconds']:.1f}s)",
                ratio(best, fire_rate) + " (outbox best/aps)",
            )
        )
    rows.append(
        (
            "peak memory (ru_maxrss)",
            f"{run['peak_rss_mb']:,.0f} MB claiming and sending "
            f"({load['peak_rss_mb']:,.0f} MB loading)",
            f"{aps_run_['peak_rss_mb']:,.0f} MB fetching and firing "
            f"({aps_load_['peak_rss_mb']:,.0f} MB loading)"
            if aps_run_ and aps_load_
            else "-",
            ratio(aps_run_["peak_rss_mb"], run["peak_rss_mb"]) + " (aps/outbox)"
            if aps_run_
            else "-",
        )
    )
    header = ("", "outbox (leadbot)", "APScheduler 3, job per message", "ratio")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    notes = [
        "drain: the real DeliveryWorker ticking back to back (claim, send-time checks, "
        "paced send, record: about 12 statements a row); fire: APScheduler running a job that "
        "only sends (no checks, nothing recorded, no pacing).",
    ]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for note in notes:
        print(note)
    walls = ", ".join(f"{name} {r['wall_seconds']:.0f}s" for name, r in results.items())
    print(f"Wall time per part: {walls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--database", default="sqlite", help="sqlite (a temporary file) or a PostgreSQL URL"
    )
    parser.add_argument("--enqueue-sample", type=int, default=20_000, help="rows via enqueue()")
    parser.add_argument("--claims", type=int, default=200, help="claims timed")
    parser.add_argument(
        "--drain",
        type=lambda value: tuple(float(part) for part in value.split(":")),
        action="append",
        help="RATE:ROWS, a drain at that limit (msg/s); default 30:600 and 5000:5000",
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
    args = parser.parse_args()
    args.drain = [(rate, int(rows)) for rate, rows in (args.drain or [(30, 600), (5000, 5000)])]

    if args.phase:
        print(json.dumps(asyncio.run(PHASES[args.phase](args))))
        return

    workdir = Path(tempfile.mkdtemp(prefix="leadbot-bench-"))
    schema = None
    if args.database == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir}/outbox.db"
    else:
        url = args.database
        if "search_path" not in make_url(url).query:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            postgres_schema(url, f'CREATE SCHEMA "{schema}"')
            url = f"{url}{'&' if '?' in url else '?'}search_path={schema}"
    dialect = make_url(url).get_backend_name()
    scenario = write_scenario(workdir / "scenario", args.steps)
    argv = [
        *("--leads", str(args.leads), "--steps", str(args.steps)),
        *("--enqueue-sample", str(args.enqueue_sample), "--claims", str(args.claims)),
        *(arg for rate, rows in args.drain for arg in ("--drain", f"{rate:g}:{rows}")),
        *("--aps-add-sample", str(args.aps_add_sample), "--aps-fetches", str(args.aps_fetches)),
        *("--aps-fire", str(args.aps_fire)),
        *("--url", url, "--scenario", str(scenario)),
        *("--aps-file", str(workdir / "apscheduler.db")),
    ]
    print(
        f"bench/outbox.py: {args.leads:,} leads x {args.steps} steps on {dialect}, "
        f"work in {workdir}",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        phases = ["outbox-load", "outbox-run"]
        if not args.skip_apscheduler:
            phases += ["aps-load", "aps-run"]
        for name in phases:
            results[name] = run_phase(name, argv)
    finally:
        if not args.keep:
            if schema is not None:
                postgres_schema(args.database, f'DROP SCHEMA "{schema}" CASCADE')
            shutil.rmtree(workdir, ignore_errors=True)
    report(args, dialect, results)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
