"""Two `web` and two `worker` processes on PostgreSQL and Redis against the Telegram emulator in
webhook mode: prospects spread over both web processes by the proxy, a broadcast drained by
both workers while one of them is killed with SIGKILL. Every reply arrives, no broadcast
message is lost, repeats are at most what the killed worker had in flight, and the sends of
both workers together keep the limit in every second."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.delivery.sending import CONCURRENCY
from tests.e2e.cluster import (
    Cluster,
    postgres_schema,
    query,
    scenario_with_broadcast,
    start_cluster,
)
from tests.e2e.telegram import BotMessage, TelegramClient

pytestmark = [pytest.mark.postgres, pytest.mark.alone]

PROSPECTS = 300
AT_ONCE = 60  # prospects typing at the same time
LIMIT = 30  # Telegram's messages a second (the emulator's and the bots' own setting)
NEWS = "Новости недели: вебинар в четверг"
WAIT = 120.0  # seconds any one reply may take while 300 prospects go through the funnel
POLL = 0.3
# A prospect reads a reply before acting on it: a robot answering within milliseconds would
# trip Telegram's limit of a chat (a short burst, then a message a second), people do not.
READING = 1.0


@pytest.fixture
async def cluster(
    telegram_emulator: TelegramClient, postgres_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    await telegram_emulator.set_limits(overall_per_second=LIMIT)
    async with postgres_schema(postgres_url) as database_url:
        running = await start_cluster(
            telegram_emulator,
            tmp_path,
            database_url,
            redis_url,
            SCENARIO_DIR=str(scenario_with_broadcast(tmp_path, "news", NEWS, {"offer": "guide"})),
            TELEGRAM_MESSAGES_PER_SECOND=str(LIMIT),
        )
        try:
            yield running
        finally:
            codes = running.stop()
            await running.proxy.close()
        assert all(code in (0, None) for code in codes), codes


async def through_the_funnel(tg: TelegramClient, chat: int) -> None:
    """/start on the guide's link, consent, advertising, an e-mail: the guide arrives."""
    await tg.send_command(chat, "/start o_guide")
    await tg.wait_for(chat, "согласие", WAIT, poll=POLL)
    await asyncio.sleep(READING)
    await tg.press_button(chat, "Даю согласие")
    await tg.wait_for(chat, "можно иногда присылать", WAIT, poll=POLL)
    await asyncio.sleep(READING)
    await tg.press_button(chat, "Да, присылайте")
    await tg.wait_for(chat, "Напишите e-mail", WAIT, poll=POLL)
    await asyncio.sleep(READING)
    await tg.send_text(chat, f"client{chat}@company.ru")
    await tg.wait_for(chat, lambda ms: any(m.document for m in ms), WAIT, poll=POLL)


def news_in(messages: list[BotMessage]) -> int:
    return sum(1 for m in messages if NEWS in (m.text or ""))


async def news_counts(tg: TelegramClient, chats: list[int]) -> dict[int, int]:
    counts = await asyncio.gather(*(tg.bot_messages(chat) for chat in chats))
    return {chat: news_in(messages) for chat, messages in zip(chats, counts, strict=True)}


def most_in_any_second(times: list[float]) -> int:
    """The most sends in any window of one second (a sliding window over sorted times)."""
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def sends(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls that put a message in a chat, refused ones included."""
    return [c for c in calls if c["method"].startswith("send") and c["method"] != "sendChatAction"]


async def test_two_web_and_two_worker_processes_share_the_work_and_the_limit(
    telegram_emulator: TelegramClient, cluster: Cluster
) -> None:
    tg = telegram_emulator
    chats = [tg.new_chat_id() for _ in range(PROSPECTS)]
    gate = asyncio.Semaphore(AT_ONCE)

    async def prospect(chat: int) -> None:
        async with gate:
            await through_the_funnel(tg, chat)

    with cluster.logs_on_failure():
        # Every prospect's replies arrive, whichever web process took each update.
        await asyncio.gather(*(prospect(chat) for chat in chats))
        served = cluster.proxy.served
        assert len(served) == 2, served
        assert min(served.values()) >= PROSPECTS, served  # of the 4 updates each sent

        assert f"Поставлено в очередь: {PROSPECTS} " in await cluster.broadcast("news")
        # Mid-way, once both workers have sent some of it, the one holding more of the rest
        # dies without a word.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            rows = await query(
                cluster.database_url,
                "select leased_by, status, count(*) as n from outbox "
                "where kind = 'broadcast' group by leased_by, status",
            )
            sent = {r["leased_by"] for r in rows if r["status"] == "sent"}
            held = Counter({r["leased_by"]: r["n"] for r in rows if r["status"] == "sending"})
            if len(sent) == 2:
                break
            assert loop.time() < deadline, f"the workers do not share the broadcast: {rows}"
            await asyncio.sleep(0.05)
        victim = max(cluster.workers, key=lambda bot: held[cluster.worker_id(bot)])
        victim.process.kill()
        victim.process.wait()
        [survivor] = [bot for bot in cluster.workers if bot is not victim]
        # What it held when it died: only these can go out twice (if they were on the wire).
        orphans = {
            int(row["external_id"])
            for row in await query(
                cluster.database_url,
                "select i.external_id from outbox o join identities i on i.lead_id = o.lead_id "
                "where o.kind = 'broadcast' and o.status = 'sending' and o.leased_by = $1",
                cluster.worker_id(victim),
            )
        }

        # 0 lost: the survivor sends the rest, the orphans once their lease runs out.
        deadline = loop.time() + WAIT
        while min((counts := await news_counts(tg, chats)).values()) < 1:
            assert loop.time() < deadline, f"{list(counts.values()).count(0)} never got the news"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # a repeat still on its way would show now
        counts = await news_counts(tg, chats)
        repeated = {chat: n - 1 for chat, n in counts.items() if n > 1}
        assert set(repeated) <= orphans, "a message not in flight at the kill went out twice"
        assert sum(repeated.values()) <= min(len(orphans), CONCURRENCY)
        # Both workers sent part of the broadcast.
        senders = Counter(
            row["leased_by"]
            for row in await query(
                cluster.database_url,
                "select leased_by from outbox where kind = 'broadcast' and status = 'sent'",
            )
        )
        assert senders[cluster.worker_id(victim)] > 0, senders
        assert senders[cluster.worker_id(survivor)] > 0, senders
        assert sum(senders.values()) == PROSPECTS

        # Both workers together never went over the limit: no second held more sends than
        # the limit, and the emulator never had to refuse one.
        calls = sends(await tg.calls())
        refused = [c for c in calls if c.get("error_code") == 429]
        assert refused == [], [
            (c["time"], c["method"], c["params"].get("chat_id"), c.get("description"))
            for c in refused[:5]
        ]
        assert await tg.violations() == []
        assert most_in_any_second([c["time"] for c in calls]) <= LIMIT
        print(
            f"{len(calls)} sends, at most {most_in_any_second([c['time'] for c in calls])} "
            f"in a second; {len(orphans)} orphaned, {sum(repeated.values())} repeated; "
            f"proxy {dict(served)}; broadcast by {dict(senders)}"
        )
