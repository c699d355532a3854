"""One delivery worker process for the restart test: the real DeliveryWorker, pumped by the
real APScheduler heartbeat, sending through a transport that POSTs every message to the test's
platform receiver. It runs until SIGTERM (stopping as the production runner stops) or SIGKILL
(the crash under test).

    python -m tests.delivery.restart_worker --database URL --scenario DIR \
        --receiver http://127.0.0.1:PORT/send --worker-id w1-0 --lease 15
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from bot.clock import SystemClock
from bot.delivery import BATCH, CONCURRENCY, DeliveryWorker
from bot.engine.funnel import Funnel
from bot.heartbeat import start_heartbeat
from bot.messages import Outgoing
from bot.pacing import ChannelLimits, Limit, MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.transport import RetryLater
from storage.database import Database

CHANNEL = "fake"

log = logging.getLogger("restart_worker")


class ReceiverTransport:
    """The fake channel: every send is an HTTP POST to the platform. It carries the row's
    idempotency key so the test can tell the messages apart; the platform, like Telegram,
    does not drop a repeated one."""

    channel = CHANNEL

    def __init__(self, session: aiohttp.ClientSession, url: str, worker_id: str) -> None:
        self.session = session
        self.url = url
        self.worker_id = worker_id

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        body = {
            "key": idempotency_key,
            "to": external_id,
            "text": message.text,
            "worker": self.worker_id,
        }
        async with self.session.post(self.url, json=body) as response:
            if response.status != 200:
                raise RetryLater(1.0, f"platform answered {response.status}")


class TimedWorker(DeliveryWorker):
    """The real worker, logging each `pump` that claimed rows and how long it took (claiming
    and preparing; the sends go on without it). The heartbeat pumps, and so does the worker
    itself as its sends finish."""

    async def pump(self) -> int:
        began = time.perf_counter()
        claimed = await super().pump()
        if claimed:
            log.info("pump: claimed %d rows in %.2fs", claimed, time.perf_counter() - began)
        return claimed


def fake_limits(rate: float) -> dict[str, ChannelLimits]:
    """Generous limits for the fake channel: pacing is real but never the bottleneck."""
    one_per_second = Limit(rate=1.0, burst=1)
    return {
        CHANNEL: ChannelLimits(
            overall=Limit(rate=rate, burst=max(int(rate), 1)),
            per_chat=one_per_second,
            per_group=one_per_second,
        )
    }


async def run(args: argparse.Namespace) -> None:
    db = Database(args.database)
    scenarios = ActiveScenario(load_scenario(Path(args.scenario)))
    clock = SystemClock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        worker = TimedWorker(
            db,
            scenarios,
            clock,
            {CHANNEL: ReceiverTransport(session, args.receiver, args.worker_id)},
            MemoryPacer(fake_limits(args.rate)),
            Funnel(db, scenarios, clock),
            worker_id=args.worker_id,
            batch=args.batch,
            lease=timedelta(seconds=args.lease),
        )
        heartbeat = start_heartbeat(worker, db, clock, interval_seconds=args.interval)
        log.info("ready")
        await stop.wait()
        log.info("stopping")
        # As handlers/telegram/runner.py stops: rows waiting for a slot are given back, the
        # sends on the wire finish and are recorded.
        await heartbeat.stop()
        await worker.pacer.aclose()
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of a migrated db")
    parser.add_argument("--scenario", required=True, help="scenario folder")
    parser.add_argument("--receiver", required=True, help="URL the fake transport POSTs to")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--lease", type=float, default=3.0, help="claim lease, seconds")
    parser.add_argument("--batch", type=int, default=BATCH, help="rows claimed at most at once")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat, seconds")
    parser.add_argument("--rate", type=float, default=5000.0, help="fake channel msg/s")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s {args.worker_id} %(name)s %(levelname)s %(message)s",
    )
    # The scheduler logs every tick at INFO; its warnings (a skipped tick) still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
