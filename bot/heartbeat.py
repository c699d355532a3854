"""APScheduler as the heartbeat: it runs the delivery worker every second and the housekeeping
jobs; what is due lives in the outbox table, never in the scheduler."""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.clock import Clock
from bot.delivery import DeliveryWorker
from bot.scenario.reload import ScenarioReloader
from storage.database import Database

log = logging.getLogger(__name__)

INBOUND_KEYS_KEPT = timedelta(days=2)  # Telegram and VK redeliver within hours, not days


async def forget_old_update_keys(db: Database, clock: Clock) -> None:
    async with db.unit_of_work() as uow:
        forgotten = await uow.inbound.forget_before(clock.now() - INBOUND_KEYS_KEPT)
        await uow.commit()
    if forgotten:
        log.info("forgot %d handled update keys", forgotten)


def start_heartbeat(
    worker: DeliveryWorker,
    db: Database,
    clock: Clock,
    *,
    reloader: ScenarioReloader | None = None,
    interval_seconds: float = 1.0,
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    # One tick at a time: a slow tick makes the next one wait instead of piling up.
    scheduler.add_job(
        worker.tick,
        "interval",
        seconds=interval_seconds,
        id="delivery",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    scheduler.add_job(
        forget_old_update_keys,
        "interval",
        hours=1,
        id="forget-update-keys",
        args=[db, clock],
        max_instances=1,
        coalesce=True,
    )
    if reloader is not None:
        scheduler.add_job(
            reloader.poll,
            "interval",
            seconds=2,
            id="scenario-reload",
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return scheduler
