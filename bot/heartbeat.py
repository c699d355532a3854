"""APScheduler as the heartbeat: it runs the delivery worker every second and the housekeeping
jobs; what is due lives in the outbox table, never in the scheduler."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.analytics.experiments import decide
from bot.clock import Clock
from bot.delivery import DeliveryWorker
from bot.reactions import remind_expiring_codes
from bot.recurring import queue_due
from bot.scenario.reload import ScenarioReloader
from bot.time_triggers import start_due
from storage.database import Database

log = logging.getLogger(__name__)

INBOUND_KEYS_KEPT = timedelta(days=2)  # Telegram and VK redeliver within hours, not days
STOP_GRACE_SECONDS = 60.0


async def forget_old_update_keys(db: Database, clock: Clock) -> None:
    async with db.unit_of_work() as uow:
        forgotten = await uow.inbound.forget_before(clock.now() - INBOUND_KEYS_KEPT)
        await uow.commit()
    if forgotten:
        log.info("forgot %d handled update keys", forgotten)


class Heartbeat:
    """The scheduler, and the delivery worker it keeps pumping. Stopping gives back the rows
    waiting for a slot and lets the messages on the wire finish and be recorded: a send cut
    off before its record would leave its row `sending`, to go out again after its lease."""

    def __init__(self, scheduler: AsyncIOScheduler, worker: DeliveryWorker) -> None:
        self.scheduler = scheduler
        self.worker = worker

    async def tick(self) -> None:
        # Claims what is due and returns; the worker then refills itself as sends finish,
        # so this once-a-second beat only matters when the outbox was idle.
        await self.worker.pump()

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        if not self.scheduler.running:
            return
        self.scheduler.pause()  # no new beats
        log.info("stopping the delivery worker")
        await self.worker.stop(grace_seconds)
        self.scheduler.shutdown(wait=False)


def start_heartbeat(
    worker: DeliveryWorker,
    db: Database,
    clock: Clock,
    *,
    reloader: ScenarioReloader | None = None,
    reminders: Callable[[], Awaitable[Any]] | None = None,
    interval_seconds: float = 1.0,
) -> Heartbeat:
    scheduler = AsyncIOScheduler(timezone=UTC)
    heartbeat = Heartbeat(scheduler, worker)
    # One tick at a time: a slow tick makes the next one wait instead of piling up.
    scheduler.add_job(
        heartbeat.tick,
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
    # What the clock starts, a minute apart: codes about to expire, birthdays and silences
    # (time triggers), the next time of a broadcast that repeats. Each is for days ahead or
    # queued ahead of its time, so a minute of lateness is no harm.
    for job, job_id in (
        (remind_expiring_codes, "promo-expiry"),
        (start_due, "time-triggers"),
        (queue_due, "recurring-broadcasts"),
    ):
        scheduler.add_job(
            job,
            "interval",
            seconds=60,
            id=job_id,
            args=[db, worker.scenarios, clock],
            max_instances=1,
            coalesce=True,
        )
    # A/B tests that finish themselves: a decision a few minutes late costs nothing, and
    # the figures over all time are a heavier read than the other jobs'. One process at a
    # time decides (the advisory lock inside), and a decision is recorded once anyway.
    scheduler.add_job(
        decide,
        "interval",
        minutes=10,
        id="experiments",
        args=[db, worker.scenarios, clock, worker.funnel.routes],
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
    if reminders is not None:
        # Cards nobody claimed: a minute of lateness on a 30-minute reminder is no harm.
        scheduler.add_job(
            reminders,
            "interval",
            seconds=30,
            id="handoff-reminders",
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return heartbeat
