"""Drive N simulated prospects through the shipped funnel on the engine and a SQLite file.

Prints events per second and per-event latency (p50, p99), next to a baseline measured in the
same run: the bare cost of one SQLite transaction per event (find the identity, insert one event
row, commit), which is the floor any engine with "one transaction per event" pays.

    .venv/bin/python bench/funnel.py --prospects 500 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.clock import FakeClock  # noqa: E402
from bot.engine.funnel import Funnel  # noqa: E402
from bot.engine.messages import Incoming, Kind, Outgoing  # noqa: E402
from bot.scenario.active import ActiveScenario  # noqa: E402
from bot.scenario.loader import load_scenario  # noqa: E402
from storage import migrate  # noqa: E402
from storage.database import Database  # noqa: E402


def press(replies: list[Outgoing], label: str) -> str:
    for message in replies:
        for row in message.buttons:
            for button in row:
                if button.text == label and button.action:
                    return button.action
    raise RuntimeError(f"no button {label!r}")


async def walk(
    funnel: Funnel, user: str, timed: Callable[[Incoming], Awaitable[list[Outgoing]]]
) -> None:
    """One prospect: start, guide offer, consent, advertising consent, e-mail, then a FAQ."""
    s = funnel.scenarios.current.scenario

    def event(kind: Kind, **fields: object) -> Incoming:
        return Incoming(
            channel="telegram", external_id=user, kind=kind, first_name="Bench", **fields
        )  # type: ignore[arg-type]

    replies = await timed(event(Kind.START, payload="src_bench"))
    replies = await timed(event(Kind.BUTTON, payload=press(replies, s.offers["guide"].title)))
    replies = await timed(event(Kind.BUTTON, payload=press(replies, s.consent.accept)))
    replies = await timed(event(Kind.BUTTON, payload=press(replies, s.consent.marketing_accept)))
    replies = await timed(event(Kind.TEXT, text=f"{user}@example.com"))
    assert any(m.file for m in replies), "the guide was not delivered"
    await timed(event(Kind.TEXT, text="сколько стоит внедрение?"))


async def run_engine(folder: str, prospects: int, concurrency: int) -> tuple[list[float], float]:
    db = Database(f"sqlite+aiosqlite:///{folder}/engine.db")
    await migrate.upgrade(db.engine)
    funnel = Funnel(
        db,
        ActiveScenario(load_scenario(ROOT / "scenarios")),
        FakeClock(datetime(2026, 11, 23, 9, tzinfo=UTC)),
    )
    latencies: list[float] = []

    async def timed(incoming: Incoming) -> list[Outgoing]:
        began = time.perf_counter()
        replies = (await funnel.handle(incoming)).messages
        latencies.append(time.perf_counter() - began)
        return replies

    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            await walk(funnel, f"u{index}", timed)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(prospects)))
    elapsed = time.perf_counter() - began
    await db.dispose()
    return latencies, elapsed


async def run_baseline(folder: str, events: int, concurrency: int) -> tuple[list[float], float]:
    db = Database(f"sqlite+aiosqlite:///{folder}/baseline.db")
    await migrate.upgrade(db.engine)
    clock = FakeClock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    users = max(1, events // 6)
    async with db.unit_of_work() as uow:
        for index in range(users):
            await uow.leads.create(channel="telegram", external_id=f"u{index}", now=clock.now())
        await uow.commit()
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            began = time.perf_counter()
            async with db.unit_of_work() as uow:
                found = await uow.leads.find_by_identity(
                    "telegram", f"u{index % users}", lock=True
                )
                assert found is not None
                uow.events.add(found[0].id, "bench", now=clock.now())
                await uow.commit()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(events)))
    elapsed = time.perf_counter() - began
    await db.dispose()
    return latencies, elapsed


def describe(name: str, latencies: list[float], elapsed: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    rate = len(latencies) / elapsed
    print(
        f"{name:<28} {len(latencies):>7} events {elapsed:>7.2f} s {rate:>9.0f} events/s "
        f"p50 {p50:>6.2f} ms  p99 {p99:>6.2f} ms"
    )
    return rate, p50, p99


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadbot-bench-") as folder:
        engine = await run_engine(folder, args.prospects, args.concurrency)
        baseline = await run_baseline(folder, len(engine[0]), args.concurrency)
    print(f"prospects {args.prospects}, concurrency {args.concurrency}, SQLite file (WAL)")
    e_rate, e_p50, e_p99 = describe("engine (shipped funnel)", *engine)
    b_rate, b_p50, b_p99 = describe("baseline (1 insert/commit)", *baseline)
    print(
        f"{'engine / baseline':<28} throughput x{e_rate / b_rate:.2f}, "
        f"p50 x{e_p50 / b_p50:.2f}, p99 x{e_p99 / b_p99:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
