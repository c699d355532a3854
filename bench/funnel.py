"""The event turn under load, against baselines measured in the same run.

Prospects walk the shipped funnel (start with a source, take the guide, accept the consent and
the advertising consent, leave an e-mail, ask the FAQ a question: six updates each), one at a
time and 20 at once, and for each way of handling them this prints the CPU time per update
(this process's, plus its PostgreSQL server processes' when the server runs here), the
statements per update, updates per wall second and the wall latency p50/p99:

  echo        a bare aiogram dispatcher: the same updates validated and dispatched to one
              handler that sends one reply (the floor of any aiogram bot);
  baseline    one transaction per update that finds the prospect and inserts one event row
              (the floor of "one transaction per event");
  engine      `Funnel.handle` on the update the channel makes of it;
  dispatcher  the real aiogram dispatcher with the project's middlewares and routers
              (`create_dispatcher`), the engine behind it; only the HTTP session is a fake
              that answers at once.

GOAL lines (issue 13) judge the dispatcher: CPU per update at most 3x the echo and never over
2 ms; 20 prospects at once: at least 500 updates/s on SQLite (1,000 on PostgreSQL) with p99
under 50 ms. The test run runs this at a tiny size (tests/test_benchmarks.py).

    .venv/bin/python bench/funnel.py --prospects 200
    .venv/bin/python bench/funnel.py --prospects 200 --database postgresql+asyncpg://u@h/db
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiogram import Bot, Dispatcher, F, Router  # noqa: E402
from aiogram.methods import TelegramMethod  # noqa: E402
from aiogram.methods.base import TelegramType  # noqa: E402
from aiogram.types import CallbackQuery, Message, Update  # noqa: E402
from sqlalchemy import update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.measure import (  # noqa: E402
    BACKENDS,
    STATEMENTS,
    Meter,
    cpu_of,
    percentile,
    postgres_execute,
    progress,
    verdict,
)
from bot.clock import FakeClock  # noqa: E402
from bot.engine.funnel import Funnel  # noqa: E402
from bot.flood import FloodGate  # noqa: E402
from bot.messages import Incoming, Kind, Outgoing  # noqa: E402
from bot.scenario.active import ActiveScenario  # noqa: E402
from bot.scenario.reload import ScenarioReloader  # noqa: E402
from handlers.telegram.channel import create_dispatcher  # noqa: E402
from handlers.telegram.middlewares import InFlight, Throttle  # noqa: E402
from handlers.telegram.sender import TelegramSender  # noqa: E402
from storage import migrate  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.models import Lead  # noqa: E402
from tests.telegram.mocked_bot import BOT_USER, RecordingSession  # noqa: E402

UPDATES_PER_PROSPECT = 6
MODES = ("echo", "baseline", "engine", "dispatcher")
CONCURRENCY = (1, 20)
START = datetime(2026, 11, 23, 9, tzinfo=UTC)
FIRST, WARM_UP = 100_000, 99_999  # Telegram user ids of the prospects, and of the warm-up


@dataclass(frozen=True)
class Step:
    """One update of a prospect's walk: a text (a command with its entity), or a button."""

    text: str | None = None
    button: str | None = None  # its label in the last keyboard the bot sent


def walk(prospect: int, scenario: Any) -> list[Step]:
    return [
        Step(text="/start src_bench"),
        Step(button=scenario.offers["guide"].title),
        Step(button=scenario.consent.accept),
        Step(button=scenario.consent.marketing_accept),
        Step(text=f"p{prospect}@example.com"),
        Step(text="сколько стоит внедрение?"),
    ]


# ---- the Telegram side: updates as the Bot API sends them, a session that answers at once ----


class BenchSession(RecordingSession):
    """Answers every request at once (as the tests' session does) and keeps only the last
    keyboard sent to each chat, so a long run does not hold every request."""

    def __init__(self) -> None:
        super().__init__()
        self.keyboards: dict[int, dict[str, str]] = {}  # chat -> label -> callback data

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram's signature
    ) -> TelegramType:
        result = await super().make_request(bot, method, timeout)
        self.requests.clear()
        self.message_ids.clear()
        markup = getattr(method, "reply_markup", None)
        rows = getattr(markup, "inline_keyboard", None)
        if rows:
            chat = int(getattr(method, "chat_id", 0) or 0)
            self.keyboards[chat] = {b.text: b.callback_data for row in rows for b in row}
        return result


_ids = itertools.count(1)


def update_of(bot: Bot, session: BenchSession, user_id: int, step: Step) -> Update:
    user = {"id": user_id, "is_bot": False, "first_name": "Bench"}
    message: dict[str, Any] = {
        "message_id": next(_ids),
        "date": int(START.timestamp()),
        "chat": {"id": user_id, "type": "private", "first_name": "Bench"},
        "from": user,
    }
    if step.button is None:
        assert step.text is not None
        message["text"] = step.text
        if step.text.startswith("/"):
            length = len(step.text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        fields: dict[str, Any] = {"message": message}
    else:
        data = session.keyboards.get(user_id, {}).get(step.button, f"echo:{step.button}")
        message |= {"text": "(an earlier message)", "from": BOT_USER.model_dump()}
        query = {"id": str(next(_ids)), "from": user, "chat_instance": "c", "data": data}
        fields = {"callback_query": query | {"message": message}}
    return Update.model_validate({"update_id": next(_ids), **fields}, context={"bot": bot})


def echo_dispatcher() -> Dispatcher:
    router = Router()

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    @router.callback_query()
    async def pressed(query: CallbackQuery) -> None:
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.answer(query.data or "")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


# ---- one run: a way of handling updates, a database, a concurrency ----

Handle = Callable[[int, Step], Awaitable[None]]


@dataclass
class Result:
    mode: str
    concurrency: int
    updates: int
    spent: dict[str, float]
    latencies: list[float]

    @property
    def cpu_ms(self) -> float:
        return cpu_of(self.spent) / self.updates * 1000

    @property
    def rate(self) -> float:
        return self.updates / self.spent["wall"]

    def line(self) -> str:
        return (
            f"  {self.mode:<11} x{self.concurrency:<3} {self.updates:>6,} updates: "
            f"{self.cpu_ms:6.2f} ms CPU, {self.spent['statements'] / self.updates:5.1f} "
            f"statements an update; {self.rate:7,.0f} updates/s wall, "
            f"p50 {percentile(self.latencies, 0.5) * 1000:6.2f} ms, "
            f"p99 {percentile(self.latencies, 0.99) * 1000:6.2f} ms"
        )


async def drive(
    mode: str, concurrency: int, prospects: int, scenario: Any, handle: Handle
) -> Result:
    """Walk every prospect, `concurrency` at a time; each update timed on the wall clock."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(prospect: int) -> None:
        async with gate:
            for step in walk(prospect, scenario):
                began = time.perf_counter()
                await handle(prospect, step)
                latencies.append(time.perf_counter() - began)

    meter = Meter.now()
    await asyncio.gather(*(one(FIRST + n) for n in range(prospects)))
    spent = meter.since()
    return Result(mode, concurrency, len(latencies), spent, latencies)


async def run_mode(mode: str, url: str, concurrency: int, prospects: int) -> Result:
    from bot.scenario.loader import load_scenario

    scenarios = ActiveScenario(load_scenario(ROOT / "scenarios"))
    scenario = scenarios.current.scenario
    db = Database(url)
    await migrate.upgrade(db.engine)
    funnel = Funnel(db, scenarios, FakeClock(START))
    session = BenchSession()
    bot = Bot("42:BENCH", session=session)
    handle: Handle
    if mode == "echo":
        echo = echo_dispatcher()

        async def handle(prospect: int, step: Step) -> None:
            await echo.feed_update(bot, update_of(bot, session, prospect, step))

    elif mode == "baseline":
        async with db.unit_of_work() as uow:
            for n in [WARM_UP, *range(FIRST, FIRST + prospects)]:
                await uow.leads.create(channel="telegram", external_id=str(n), now=START)
            # The floor counts nothing for rules: an event is its insert and nothing more.
            await uow.session.execute(update(Lead).values(facts=None))
            await uow.commit()

        async def handle(prospect: int, step: Step) -> None:
            async with db.unit_of_work() as uow:
                found = await uow.leads.find_by_identity("telegram", str(prospect), lock=True)
                assert found is not None
                uow.events.add(found[0].id, "bench", now=START)
                await uow.commit()

    elif mode == "engine":
        last: dict[int, list[Outgoing]] = {}

        async def handle(prospect: int, step: Step) -> None:
            if step.button is None:
                text = step.text or ""
                if text.startswith("/start"):
                    payload = text.partition(" ")[2] or None
                    incoming = _incoming(prospect, Kind.START, payload=payload)
                else:
                    incoming = _incoming(prospect, Kind.TEXT, text=text)
            else:
                incoming = _incoming(prospect, Kind.BUTTON, payload=_press(last[prospect], step))
            last[prospect] = (await funnel.handle(incoming)).messages

    else:
        sender = TelegramSender(bot)
        seconds = itertools.count()  # a person's pace: the flood limit lets every update in
        throttle = Throttle(FloodGate(clock=lambda: float(next(seconds))))
        dispatcher = create_dispatcher(
            funnel, sender, InFlight(), throttle, ScenarioReloader(scenarios)
        )

        async def handle(prospect: int, step: Step) -> None:
            await dispatcher.feed_update(bot, update_of(bot, session, prospect, step))

    # The first update compiles statements, connects and builds aiogram's handlers: not part
    # of a turn.
    await handle(WARM_UP, Step(text="/start"))
    result = await drive(mode, concurrency, prospects, scenario, handle)
    await db.dispose()
    await bot.session.close()
    return result


def _incoming(prospect: int, kind: Kind, **fields: Any) -> Incoming:
    return Incoming(
        channel="telegram", external_id=str(prospect), kind=kind, first_name="Bench", **fields
    )


def _press(replies: Sequence[Outgoing], step: Step) -> str:
    for message in replies:
        for row in message.buttons:
            for button in row:
                if button.text == step.button and button.action:
                    return button.action
    raise RuntimeError(f"no button {step.button!r}")


# ---- the report ----


def goals(dialect: str, results: dict[tuple[str, int], Result]) -> list[str]:
    echo, dispatcher = results["echo", 1], results["dispatcher", 1]
    times = dispatcher.cpu_ms / echo.cpu_ms
    crowd = results["dispatcher", CONCURRENCY[-1]]
    wanted = 500 if dialect == "sqlite" else 1_000
    p99 = percentile(crowd.latencies, 0.99) * 1000
    return [
        f"GOAL CPU per update through the dispatcher <= 3x the echo and <= 2 ms: "
        f"{dispatcher.cpu_ms:.2f} ms, {times:,.1f}x the echo ({echo.cpu_ms:.3f} ms) -> "
        f"{verdict(times <= 3 and dispatcher.cpu_ms <= 2)}",
        f"GOAL {CONCURRENCY[-1]} prospects at once >= {wanted:,} updates/s, p99 < 50 ms: "
        f"{crowd.rate:,.0f} updates/s, p99 {p99:.1f} ms -> "
        f"{verdict(crowd.rate >= wanted and p99 < 50)}",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prospects", type=int, default=200)
    parser.add_argument(
        "--database", default="sqlite", help="sqlite (a temporary file) or a PostgreSQL URL"
    )
    args = parser.parse_args()
    STATEMENTS.install()
    BACKENDS.install()
    results: dict[tuple[str, int], Result] = {}
    with tempfile.TemporaryDirectory(prefix="leadbot-bench-") as folder:
        for concurrency in CONCURRENCY:
            for mode in MODES:
                name = f"{mode}_{concurrency}_{uuid.uuid4().hex[:6]}"
                if args.database == "sqlite":
                    url, drop = f"sqlite+aiosqlite:///{folder}/{name}.db", None
                else:
                    schema = f"bench_{name}"
                    await postgres_execute(args.database, f'CREATE SCHEMA "{schema}"')
                    sep = "&" if "?" in args.database else "?"
                    url, drop = f"{args.database}{sep}search_path={schema}", schema
                try:
                    progress(f"{mode}, {concurrency} at once ...")
                    results[mode, concurrency] = await run_mode(
                        mode, url, concurrency, args.prospects
                    )
                finally:
                    if drop is not None:
                        await postgres_execute(args.database, f'DROP SCHEMA "{drop}" CASCADE')
    dialect = make_url(url).get_backend_name()
    where = "this process" + (" and its PostgreSQL server processes" if BACKENDS.known else "")
    print(
        f"bench/funnel.py: {args.prospects:,} prospects x {UPDATES_PER_PROSPECT} updates of "
        f"the shipped funnel on {dialect}; CPU = {where}"
    )
    for result in results.values():
        print(result.line())
    for line in goals(dialect, results):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
