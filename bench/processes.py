"""Events/s and messages/s with 1, 2 and 4 bot processes on PostgreSQL and Redis: the sizing
table of docs/production.md, measured.

For each N in --processes, on a migrated PostgreSQL schema of its own and against the Telegram
emulator (tests/e2e/telegram.py) with Telegram's flood limits off and the bot's own limits
lifted (TELEGRAM_MESSAGES_PER_SECOND, TELEGRAM_CHAT_MESSAGES_PER_SECOND, FLOOD_BURST): we
measure the processes, not Telegram's cap.

  events    N `web` processes (`leadbot run --role web`, webhook mode) behind the round-robin
            proxy of tests/e2e/cluster.py. --clients prospects at once each post a `/start`
            of a fresh chat, --updates in all after a warm-up: with --via webhook (the
            default) the update JSON goes straight to the proxy's /telegram/webhook with the
            secret header, as Telegram posts it; with --via emulator it goes through the
            emulator's client API (`send_command`), which delivers it to the webhook and
            waits for the 200 (the single node process then does twice the work and limits
            the rate first). Each update is answered only after the bot has handled it and
            sent its reply (the webhook does not handle in the background). Counted
            independently: the `leads` rows and the emulator's sendMessage calls.
  messages  N `worker` processes (`--role worker`, no web process: the broadcast needs no
            webhook) drain a broadcast of --messages leads, written straight into the
            database (lead, Telegram identity, both consents) and queued with
            `leadbot broadcast --step`. Wall time from the rows' queueing (their created_at)
            to the last one's sent_at; done when every row is `sent`.

CPU is the bot processes' own (utime + stime from /proc/<pid>/stat); the PostgreSQL server's
and the harness's (emulator, proxy and driver: this process) are printed beside it. On a
machine with fewer cores than processes + PostgreSQL + emulator + proxy, the processes share
the cores: the ratio line says what more processes bring on this machine.

    .venv/bin/python bench/processes.py
    .venv/bin/python bench/processes.py --processes 1,2 --updates 500 --messages 500
    .venv/bin/python bench/processes.py --database postgresql+asyncpg://u@h/db --redis redis://h/1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from bench.measure import progress, ratio  # noqa: E402
from bot.consent import MARKETING, PERSONAL_DATA  # noqa: E402
from tests.e2e.cluster import (  # noqa: E402
    Cluster,
    postgres_schema,
    query,
    scenario_with_broadcast,
    start_cluster,
)
from tests.e2e.telegram import (  # noqa: E402
    EmulatorProcess,
    TelegramClient,
    ensure_emulator_installed,
    start_emulator,
)

NEWS = "Новости недели: вебинар в четверг"
SOURCE = "bench_broadcast"  # the broadcast's segment: the leads written for it
LIFTED = {
    "TELEGRAM_MESSAGES_PER_SECOND": "100000",
    "TELEGRAM_CHAT_MESSAGES_PER_SECOND": "100000",
    "FLOOD_BURST": "100000",
    "LOG_LEVEL": "WARNING",  # a line per update would be part of what is measured
}
TICK = os.sysconf("SC_CLK_TCK")
DRAIN_TIMEOUT = 600.0  # seconds a broadcast may take to drain
_update_ids = itertools.count(1)


# ---- CPU time of processes from /proc ----


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (none when it runs elsewhere)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == "postgres":
                    pids.append(int(entry))
    return pids


@dataclass
class CpuMeter:
    """CPU seconds of the bots, of PostgreSQL and of the harness since `start`."""

    bots: list[int]
    emulator: int
    started: dict[str, dict[int, float]] | None = None
    harness_started: float = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        groups = {"bots": self.bots, "postgres": postgres_pids(), "emulator": [self.emulator]}
        return {
            name: {pid: s for pid in pids if (s := cpu_seconds(pid)) is not None}
            for name, pids in groups.items()
        }

    def start(self) -> None:
        self.started = self._read()
        self.harness_started = time.process_time()

    def spent(self) -> dict[str, float]:
        """Seconds of each group since `start` (a process started since counts whole)."""
        assert self.started is not None
        now = self._read()
        spent = {
            name: sum(s - self.started[name].get(pid, 0.0) for pid, s in pids.items())
            for name, pids in now.items()
        }
        spent["harness"] = spent.pop("emulator") + time.process_time() - self.harness_started
        return spent


# ---- the events: updates posted to the web processes ----


def start_update(chat: int) -> dict[str, Any]:
    """`/start` from a prospect in a private chat, as Telegram posts it to a webhook."""
    user = {"id": chat, "is_bot": False, "first_name": "Bench", "language_code": "ru"}
    message_id = next(_update_ids)
    message = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat, "type": "private", "first_name": "Bench"},
        "from": user,
        "text": "/start",
        "entities": [{"offset": 0, "length": 6, "type": "bot_command"}],
    }
    return {"update_id": message_id, "message": message}


Post = Callable[[int], Awaitable[None]]


@contextlib.asynccontextmanager
async def poster(via: str, tg: TelegramClient, cluster: Cluster) -> Any:
    """A function that posts one chat's /start and returns once the bot answered it."""
    if via == "emulator":

        async def post(chat: int) -> None:
            await tg.send_command(chat, "/start")

        yield post
        return
    url = cluster.proxy.url + "/telegram/webhook"
    headers = {"X-Telegram-Bot-Api-Secret-Token": cluster.settings["WEBHOOK_SECRET"]}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def post(chat: int) -> None:
            async with http.post(url, json=start_update(chat), headers=headers) as answer:
                if answer.status != 200:
                    raise AssertionError(f"the webhook answered {answer.status}")
                await answer.read()

        yield post


async def post_all(post: Post, chats: list[int], clients: int) -> None:
    """Every chat's /start, `clients` at once (each client posts its next when answered)."""
    pending = iter(chats)

    async def client() -> None:
        for chat in pending:
            await post(chat)

    await asyncio.gather(*(client() for _ in range(clients)))


@dataclass
class Events:
    processes: int
    updates: int
    wall: float
    cpu: dict[str, float]
    leads: int  # rows in `leads` after the run (warm-up included)
    replies: int  # the emulator's successful sendMessage calls (warm-up included)
    warm_up: int
    served: dict[str, int]

    @property
    def rate(self) -> float:
        return self.updates / self.wall

    def ms(self, group: str) -> float:
        return self.cpu[group] / self.updates * 1000


async def measure_events(
    emulator: EmulatorProcess, args: argparse.Namespace, n: int, folder: Path
) -> Events:
    async with TelegramClient(emulator.url) as tg, postgres_schema(args.database) as url:
        await tg.set_limits(enabled=False)
        cluster = await start_cluster(tg, folder, url, args.redis, web=n, workers=0, **LIFTED)
        try:
            with cluster.logs_on_failure():
                meter = CpuMeter([bot.process.pid for bot in cluster.web], emulator.process.pid)
                async with poster(args.via, tg, cluster) as post:
                    # Connections, compiled statements, aiogram's handlers: not part of a turn.
                    warm_up = [tg.new_chat_id() for _ in range(args.warm_up * n)]
                    await post_all(post, warm_up, args.clients)
                    chats = [tg.new_chat_id() for _ in range(args.updates)]
                    meter.start()
                    began = time.perf_counter()
                    await post_all(post, chats, args.clients)
                    wall = time.perf_counter() - began
                    cpu = meter.spent()
                [leads] = await query(url, "select count(*) as n from leads")
                replies = [c for c in await tg.calls("sendMessage") if c["ok"]]
                served = dict(cluster.proxy.served)
                assert len(served) == n, f"not every web process took updates: {served}"
        finally:
            await stop(cluster)
    return Events(n, args.updates, wall, cpu, leads["n"], len(replies), len(warm_up), served)


# ---- the messages: a broadcast drained by worker processes ----


async def write_leads(url: str, chats: list[int]) -> None:
    """A lead per chat with its Telegram identity and both consents, in a few statements."""
    plain, _, search_path = url.replace("+asyncpg", "").partition("?search_path=")
    conn = await asyncpg.connect(plain, server_settings={"search_path": search_path})
    now = datetime.now(UTC)
    try:
        async with conn.transaction():
            ids = [
                row["id"]
                for row in await conn.fetch(
                    "insert into leads (created_at, updated_at, stage, funnel_stage, score, "
                    "first_name, source) select $1, $1, 'new', 'new', 0, 'Bench', $2 "
                    "from generate_series(1, $3) returning id",
                    now,
                    SOURCE,
                    len(chats),
                )
            ]
            await conn.execute(
                "insert into identities (lead_id, channel, external_id, created_at, "
                "last_seen_at) select lead, 'telegram', chat, $3, $3 "
                "from unnest($1::bigint[], $2::text[]) as t(lead, chat)",
                ids,
                [str(chat) for chat in chats],
                now,
            )
            for kind in (PERSONAL_DATA, MARKETING):
                await conn.execute(
                    "insert into consents (lead_id, kind, text_version, channel, given_at) "
                    "select unnest($1::bigint[]), $2, 'bench', 'telegram', $3",
                    ids,
                    kind,
                    now,
                )
    finally:
        await conn.close()


@dataclass
class Messages:
    processes: int
    messages: int
    queued: int
    sent: int  # rows recorded sent
    delivered: int  # the news in the emulator's successful sendMessage calls
    wall: float
    cpu: dict[str, float]
    senders: int  # workers that sent a part

    @property
    def rate(self) -> float:
        return self.sent / self.wall

    def ms(self, group: str) -> float:
        return self.cpu[group] / max(self.sent, 1) * 1000


async def measure_messages(
    emulator: EmulatorProcess, args: argparse.Namespace, n: int, folder: Path
) -> Messages:
    async with TelegramClient(emulator.url) as tg, postgres_schema(args.database) as url:
        await tg.set_limits(enabled=False)
        chats = [tg.new_chat_id() for _ in range(args.messages)]
        await write_leads(url, chats)
        scenario = scenario_with_broadcast(folder, "news", NEWS, {"source": SOURCE})
        cluster = await start_cluster(
            tg, folder, url, args.redis, web=0, workers=n, SCENARIO_DIR=str(scenario), **LIFTED
        )
        try:
            with cluster.logs_on_failure():
                meter = CpuMeter(
                    [bot.process.pid for bot in cluster.workers], emulator.process.pid
                )
                meter.start()
                said = await cluster.broadcast("news")
                assert "Поставлено в очередь" in said, said
                deadline = time.monotonic() + DRAIN_TIMEOUT
                while True:
                    [row] = await query(
                        url,
                        "select count(*) filter (where status = 'sent') as sent, "
                        "count(*) as queued from outbox where kind = 'broadcast'",
                    )
                    if row["sent"] >= row["queued"]:
                        break
                    assert all(bot.process.poll() is None for bot in cluster.workers)
                    assert time.monotonic() < deadline, f"not drained: {dict(row)}"
                    await asyncio.sleep(0.05)
                cpu = meter.spent()
                [span] = await query(
                    url,
                    "select extract(epoch from max(sent_at) - min(created_at)) as wall, "
                    "count(distinct leased_by) as senders from outbox "
                    "where kind = 'broadcast' and status = 'sent'",
                )
                delivered = sum(
                    1
                    for c in await tg.calls("sendMessage")
                    if c["ok"] and NEWS in str(c["params"].get("text", ""))
                )
        finally:
            await stop(cluster)
    return Messages(
        n,
        args.messages,
        row["queued"],
        row["sent"],
        delivered,
        float(span["wall"]),
        cpu,
        span["senders"],
    )


async def stop(cluster: Cluster) -> None:
    """SIGTERM to every process (they finish what is in flight), then the proxy."""
    try:
        codes = await asyncio.to_thread(cluster.stop)
    finally:
        await cluster.proxy.close()
    assert all(code in (0, None) for code in codes), f"exit codes {codes}"


# ---- the report ----


def table(events: dict[int, Events], messages: dict[int, Messages]) -> Iterable[str]:
    yield "processes  events/s  ms CPU/event  messages/s  ms CPU/message"
    for n in sorted(events.keys() | messages.keys()):
        e, m = events.get(n), messages.get(n)
        yield (
            f"{n:>9}  "
            + (f"{e.rate:>8,.0f}  {e.ms('bots'):>12.2f}  " if e else f"{'-':>8}  {'-':>12}  ")
            + (f"{m.rate:>10,.0f}  {m.ms('bots'):>14.2f}" if m else f"{'-':>10}  {'-':>14}")
        )


def details(events: dict[int, Events], messages: dict[int, Messages]) -> Iterable[str]:
    for n, e in sorted(events.items()):
        yield (
            f"events   {n} processes: {e.updates:,} updates in {e.wall:.2f} s wall, "
            f"{e.cpu['bots']:.2f} s CPU of the bots; per update {e.ms('postgres'):.2f} ms "
            f"PostgreSQL, {e.ms('harness'):.2f} ms harness; leads {e.leads:,} "
            f"(= {e.warm_up:,} warm-up + {e.updates:,}), replies sent {e.replies:,}; "
            f"proxy {sorted(e.served.values())}"
        )
    for n, m in sorted(messages.items()):
        yield (
            f"messages {n} processes: sent {m.sent:,} of {m.queued:,} in {m.wall:.2f} s wall, "
            f"{m.cpu['bots']:.2f} s CPU of the workers; per message {m.ms('postgres'):.2f} ms "
            f"PostgreSQL, {m.ms('harness'):.2f} ms harness; delivered {m.delivered:,}; "
            f"{m.senders} of {n} workers sent"
        )


def ratios(events: dict[int, Events], messages: dict[int, Messages]) -> Iterable[str]:
    base_e, base_m = events.get(1), messages.get(1)
    for n in sorted(events.keys() | messages.keys()):
        if n == 1:
            continue
        e, m = events.get(n), messages.get(n)
        yield (
            f"{n} processes: {ratio(e.rate if e else None, base_e.rate if base_e else None)} "
            f"events/s of 1, "
            f"{ratio(m.rate if m else None, base_m.rate if base_m else None)} messages/s of 1"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--updates", type=int, default=2000, help="updates measured per N")
    parser.add_argument("--warm-up", type=int, default=20, help="updates per process first")
    parser.add_argument("--clients", type=int, default=32, help="prospects posting at once")
    parser.add_argument("--messages", type=int, default=3000, help="broadcast size per N")
    parser.add_argument("--via", choices=("webhook", "emulator"), default="webhook")
    parser.add_argument("--database", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--skip-events", action="store_true")
    parser.add_argument("--skip-messages", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    events: dict[int, Events] = {}
    messages: dict[int, Messages] = {}
    emulator = start_emulator(ensure_emulator_installed())
    try:
        with tempfile.TemporaryDirectory(prefix="leadbot-bench-") as folder:
            for n in counts:
                if not args.skip_events:
                    progress(f"events, {n} web processes ...")
                    where = Path(tempfile.mkdtemp(prefix=f"events{n}-", dir=folder))
                    events[n] = await measure_events(emulator, args, n, where)
                if not args.skip_messages:
                    progress(f"messages, {n} worker processes ...")
                    where = Path(tempfile.mkdtemp(prefix=f"messages{n}-", dir=folder))
                    messages[n] = await measure_messages(emulator, args, n, where)
    finally:
        emulator.stop()
    print(
        f"bench/processes.py: {args.updates:,} /start updates ({args.clients} at once, via "
        f"{args.via}) and a {args.messages:,}-message broadcast per N, on PostgreSQL + Redis; "
        f"os.cpu_count() = {os.cpu_count()}"
    )
    for line in (*table(events, messages), *details(events, messages), *ratios(events, messages)):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
