"""What the minute's time-trigger scan (bot/time_triggers.py) costs with many leads: the shipped
scenario's birthday and silence chains over N leads, each with a birthday and a last-seen
moment drawn from a seeded random. Prints the statements and the CPU of the first scan (which
starts what is due) and of a quiet one, against a baseline measured in the same run: one
plain read of every lead's id.

    .venv/bin/python bench/time_triggers.py --leads 20000 [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.clock import FakeClock  # noqa: E402
from bot.scenario.active import ActiveScenario  # noqa: E402
from bot.scenario.loader import load_scenario  # noqa: E402
from bot.time_triggers import start_due  # noqa: E402
from storage import migrate  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.models import Identity, Lead, LeadDate  # noqa: E402

NOW = datetime(2027, 6, 15, 7, 0, tzinfo=UTC)
SCANS = 20


async def seed(db: Database, leads: int) -> None:
    rnd = random.Random(1)
    async with db.unit_of_work() as uow:
        rows = [
            {"created_at": NOW, "updated_at": NOW, "stage": "warming", "funnel_stage": "warming"}
            for _ in range(leads)
        ]
        ids = (await uow.session.execute(insert(Lead).returning(Lead.id), rows)).scalars().all()
        seen = [NOW - timedelta(minutes=rnd.randrange(200 * 24 * 60)) for _ in ids]
        await uow.session.execute(
            insert(Identity),
            [
                {"lead_id": i, "channel": "telegram", "external_id": str(i), "created_at": NOW}
                | {"last_seen_at": at}
                for i, at in zip(ids, seen, strict=True)
            ],
        )
        await uow.session.execute(
            insert(LeadDate),
            [
                {"lead_id": i, "name": "birthday", "month": rnd.randrange(1, 13)}
                | {"day": rnd.randrange(1, 29), "year": 1990, "created_at": NOW}
                for i in ids
            ],
        )
        await uow.commit()


async def run(url: str, leads: int) -> None:
    db = Database(url)
    await migrate.upgrade(db.engine)
    await seed(db, leads)
    statements = [0]
    event.listen(
        db.engine.sync_engine,
        "before_cursor_execute",
        lambda *_: statements.__setitem__(0, statements[0] + 1),
    )
    scenarios = ActiveScenario(load_scenario(ROOT / "scenarios"))
    clock = FakeClock(NOW)
    cpu = time.process_time()
    started = await start_due(db, scenarios, clock)
    first_cpu, first_statements = time.process_time() - cpu, statements[0]
    quiet_cpu, quiet_statements = 0.0, 0
    for _ in range(SCANS):
        clock.advance(timedelta(minutes=1))
        statements[0] = 0
        cpu = time.process_time()
        await start_due(db, scenarios, clock)
        quiet_cpu += time.process_time() - cpu
        quiet_statements += statements[0]
    cpu = time.process_time()
    for _ in range(SCANS):
        async with db.reading() as session:
            (await session.execute(select(Lead.id))).scalars().all()
    baseline = (time.process_time() - cpu) / SCANS
    await db.dispose()
    quiet = quiet_cpu / SCANS
    print(f"leads: {leads:,}")
    print(f"first scan: {started:,} chains started, {first_statements:,} statements, "
          f"{first_cpu * 1000:.1f} ms CPU")  # fmt: skip
    print(f"quiet scan: {quiet_statements / SCANS:.1f} statements, {quiet * 1000:.1f} ms CPU")
    print(f"baseline (every lead's id read once): {baseline * 1000:.1f} ms CPU")
    print(f"ratio quiet scan / baseline: {quiet / baseline:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--db", help="a database URL (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.db or f"sqlite+aiosqlite:///{folder}/bench.db"
        asyncio.run(run(url, args.leads))


if __name__ == "__main__":
    main()
