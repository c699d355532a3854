"""`leadbot report` over a big history, against a baseline measured in the same run.

Writes a synthetic history straight into a fresh database (leads over 90 days from five
sources, their events: starts, offers, answers, consents, deliveries, chain steps with A/B
variants, clicks, unsubscribes, purchases, unanswered questions; stage changes, handoffs,
NPS answers, contacts, ad spend), then times the whole report (every section, as
`leadbot report` reads it), each section on its own, and, as the baseline, one pass over
the events grouping them by name: the floor of any report that reads every event once.
Prints wall and CPU (this process's, plus its PostgreSQL server processes' when the server
runs here), statements, and the ratio to the baseline.

GOAL (issue 17): the report for 100,000 leads and 1,000,000 events in under 5 s. The test run
runs this at a tiny size (tests/test_benchmarks.py).

    .venv/bin/python bench/report.py --leads 100000 --events 1000000
    .venv/bin/python bench/report.py --leads 100000 --events 1000000 \\
        --database postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.measure import (  # noqa: E402
    BACKENDS,
    STATEMENTS,
    Meter,
    cpu_of,
    postgres_execute,
    progress,
    ratio,
    verdict,
)
from bot.analytics import report  # noqa: E402
from bot.analytics.window import Window  # noqa: E402
from bot.scenario.loader import load_scenario  # noqa: E402
from storage import migrate  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.models import (  # noqa: E402
    AdSpend,
    Answer,
    Contact,
    Event,
    Handoff,
    Lead,
    StageChange,
)

SCENARIO = ROOT / "scenarios"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
DAYS = 90
SOURCES = ("vk_ads", "yandex", "tg_channel", "partner", "seo")
STAGES = ("new", "engaged", "contact", "warming", "qualified", "handed_off", "customer")
GOAL_SECONDS = 5.0
CHUNK = 20_000
# The floor of any report that reads every event once: one pass grouping them by name.
BASELINE = select(Event.name, func.count()).group_by(Event.name)


def history(leads: int, events: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The rows of a history: `events` events spread over `leads` leads, the busier leads
    further down the funnel, as in a real one."""
    rng = random.Random(seed)
    s = load_scenario(SCENARIO).scenario
    offers = list(s.offers)
    steps = [
        (seq_id, step.id, ["a", *sorted(step.variants)])
        for seq_id, seq in s.sequences.items()
        for step in seq.steps
    ]
    scale = [q for q, question in s.questions.items() if question.type == "scale"] or ["nps"]
    rows: dict[str, list[dict[str, Any]]] = {
        "leads": [], "events": [], "stage_changes": [], "handoffs": [], "answers": [],
        "contacts": [],
    }  # fmt: skip
    # Leads still at `new` have their one start; the rest share the other events.
    ranks = [min(int(rng.expovariate(0.6)), len(STAGES) - 1) for _ in range(leads)]
    active = sum(1 for rank in ranks if rank) or 1
    per_lead = max(1, round((events - (leads - active) - 0.02 * leads) / active))
    for lead_id, rank in enumerate(ranks, start=1):
        created = NOW - timedelta(seconds=rng.randrange(DAYS * 86400))
        offer = rng.choice(offers)
        rows["leads"].append(
            {
                "id": lead_id, "created_at": created, "updated_at": created,
                "stage": STAGES[rank], "funnel_stage": STAGES[rank], "score": rank * 10,
                "source": rng.choice(SOURCES), "offer": offer if rank else None,
            }
        )  # fmt: skip
        for r in range(1, rank + 1):
            rows["stage_changes"].append(
                {
                    "lead_id": lead_id, "from_stage": STAGES[r - 1], "to_stage": STAGES[r],
                    "reason": "bench", "created_at": created + timedelta(days=r),
                }
            )  # fmt: skip
        if rank >= STAGES.index("contact"):
            rows["contacts"].append(
                {
                    "lead_id": lead_id, "kind": "email", "value": f"l{lead_id}@example.com",
                    "verified": False, "channel": "telegram", "created_at": created,
                }
            )  # fmt: skip
        if rank >= STAGES.index("handed_off"):
            won = rank == len(STAGES) - 1
            status = "won" if won else rng.choice(("open", "lost"))
            rows["handoffs"].append(
                {
                    "lead_id": lead_id, "status": status,
                    "rule": "bench", "qualified_at": created + timedelta(days=4),
                    "closed_at": None if status == "open" else created + timedelta(days=6),
                    "reason": None if won else rng.choice(("дорого", "не сейчас", None)),
                }
            )  # fmt: skip
        if rng.random() < 0.1:
            rows["answers"].append(
                {
                    "lead_id": lead_id, "question": scale[0], "value": str(rng.randrange(11)),
                    "score": 0, "created_at": created + timedelta(days=8),
                }
            )  # fmt: skip
        for n in range(per_lead if rank else 1):
            at = created + timedelta(hours=n * 7)
            seq, step, variants = rng.choice(steps)
            name, payload = rng.choice(
                (
                    ("start", {"source": "bench"}),
                    ("offer_taken", {"offer": offer}),
                    ("answered", {"question": "name", "value": "x"}),
                    (
                        "step_sent",
                        {"sequence": seq, "step": step, "variant": rng.choice(variants)},
                    ),
                    (
                        "link_clicked",
                        {"url": "https://example.com", "sequence": seq, "step": step},
                    ),
                    ("magnet_delivered", {"offer": offer}),
                    ("unmatched_text", {"text": rng.choice(("есть рассрочка?", "а скидки?"))}),
                )
            )
            if n == 0:
                name, payload = "start", {}
            rows["events"].append(
                {"lead_id": lead_id, "name": name, "payload": payload, "created_at": at}
            )
        if rank == len(STAGES) - 1:
            for k in range(rng.choice((1, 1, 2, 3))):
                rows["events"].append(
                    {
                        "lead_id": lead_id, "name": "purchase",
                        "payload": {"amount": float(rng.randrange(10, 400) * 500)},
                        "created_at": created + timedelta(days=6 + 20 * k),
                    }
                )  # fmt: skip
    return rows


async def load(db: Database, rows: dict[str, list[dict[str, Any]]]) -> None:
    tables = {
        "leads": Lead, "stage_changes": StageChange, "handoffs": Handoff, "answers": Answer,
        "contacts": Contact, "events": Event,
    }  # fmt: skip
    for name, model in tables.items():
        progress(f"writing {len(rows[name]):,} {name} ...")
        for start in range(0, len(rows[name]), CHUNK):
            async with db.unit_of_work() as uow:
                await uow.session.execute(insert(model), rows[name][start : start + CHUNK])
                await uow.commit()
    first = (NOW - timedelta(days=DAYS)).date()
    async with db.unit_of_work() as uow:
        await uow.session.execute(
            insert(AdSpend),
            [
                {
                    "source": source, "first_day": date(first.year, first.month, 1),
                    "last_day": NOW.date(), "amount": "300000", "created_at": NOW,
                }
                for source in SOURCES
            ],
        )  # fmt: skip
        await uow.commit()
    if db.engine.dialect.name == "postgresql":
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")


async def measure(url: str, leads: int, events: int, seed: int) -> dict[str, dict[str, float]]:
    db = Database(url)
    try:
        await migrate.upgrade(db.engine)
        await load(db, history(leads, events, seed))
        s = load_scenario(SCENARIO).scenario
        window = Window(
            since=NOW - timedelta(days=DAYS),
            until=NOW,
            now=NOW,
            zone=ZoneInfo(s.settings.timezone),
        )
        spent: dict[str, dict[str, float]] = {}
        async with db.unit_of_work() as uow:
            counted = await uow.session.scalar(select(func.count()).select_from(Event))
            progress(f"{counted:,} events; the baseline, then the report ...")
            for part in ("baseline", "report"):
                for _ in range(2):  # the second run is measured: caches warm, plans made
                    start = Meter.now()
                    if part == "baseline":
                        await uow.session.execute(BASELINE)
                    else:
                        built = await report.build(uow.session, s, window)
                        report.text(built)
                    spent[part] = start.since()
            for section in report.SECTIONS:
                start = Meter.now()
                await report.build(uow.session, s, window, only=[section.key])
                spent[f"  {section.key}"] = start.since()
        spent["report"]["events"] = float(counted or 0)
        return spent
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database", default="sqlite", help="sqlite (a temporary file) or a PostgreSQL URL"
    )
    args = parser.parse_args()
    STATEMENTS.install()
    BACKENDS.install()
    with tempfile.TemporaryDirectory(prefix="leadbot-bench-") as folder:
        schema = None
        if args.database == "sqlite":
            url = f"sqlite+aiosqlite:///{folder}/report.db"
        else:
            schema = f"bench_report_{uuid.uuid4().hex[:6]}"
            await postgres_execute(args.database, f'CREATE SCHEMA "{schema}"')
            sep = "&" if "?" in args.database else "?"
            url = f"{args.database}{sep}search_path={schema}"
        try:
            spent = await measure(url, args.leads, args.events, args.seed)
        finally:
            if schema is not None:
                await postgres_execute(args.database, f'DROP SCHEMA "{schema}" CASCADE')
    dialect = make_url(url).get_backend_name()
    where = "this process" + (" and its PostgreSQL server processes" if BACKENDS.known else "")
    events = int(spent["report"]["events"])
    print(f"bench/report.py: {args.leads:,} leads, {events:,} events on {dialect}; CPU = {where}")
    for part in spent:
        p = spent[part]
        print(
            f"{part:<9} wall {p['wall']:.3f} s  CPU {cpu_of(p):.3f} s  "
            f"statements {int(p['statements'])}"
        )
    report_, baseline = spent["report"], spent["baseline"]
    print(
        f"report / one pass over the events: {ratio(report_['wall'], baseline['wall'])} wall, "
        f"{ratio(cpu_of(report_), cpu_of(baseline))} CPU"
    )
    print(
        f"GOAL report for {args.leads:,} leads and {events:,} events < {GOAL_SECONDS:g} s: "
        f"{report_['wall']:.2f} s wall -> {verdict(report_['wall'] < GOAL_SECONDS)}; "
        f"{cpu_of(report_):.2f} s CPU -> {verdict(cpu_of(report_) < GOAL_SECONDS)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
