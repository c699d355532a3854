"""The delivery worker: claims due outbox rows, prepares them as a set, sends each message when
its slot comes and its gates are still open, and records each send as soon as it is out.

A row goes pending -> sending (claimed with a lease) -> sent, or back to pending (retry-after,
a network error, quiet hours, a slot too far ahead), or failed (too many attempts) or
cancelled (blocked, no advertising consent, the chain stopped, the step removed). Nothing is
held in memory that the database does not also know: a restarted or crashed worker loses
nothing, and a row whose lease expired is taken over.

Sending is continuous: every row is a delivery of its own that waits only for its own slots,
so a row waiting for its chat's or the managers' group's slot holds back no other, and while
the last rows of a batch wait the next batch is claimed (`pump`). `tick` claims one batch and
waits until all of it is recorded (the chat's `/wait`, tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.crm import CrmExporter
from bot.delivery.coalescing import Coalescer
from bot.delivery.outcomes import LEASE, Outcome, Prepared, Skip
from bot.delivery.prepare import Preparer
from bot.delivery.record import PROGRESS, Recorder
from bot.delivery.sending import Sender
from bot.engine.funnel import Funnel
from bot.metrics import Metrics
from bot.pacing import Pacer
from bot.scenario.active import ActiveScenario
from bot.transport import ManagersChat, Transport
from storage.claims import claim_due, renew_leases
from storage.database import Database

log = logging.getLogger(__name__)

# Rows claimed and prepared in one go: a claim holds SQLite's one write lock (that incoming
# events wait for) for about 50 µs a row.
BATCH = 200
# Rows claimed and not yet recorded, at most: `pump` claims batches until there are so many.
CAPACITY = 1_000
# ... and no more than the worker's channels may send in this many seconds: a worker does not
# hoard what it can only send much later, so the workers sharing a pacer share a broadcast,
# and a dead worker leaves few rows to wait out their lease.
HORIZON_SECONDS = 5.0


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        scenarios: ActiveScenario,
        clock: Clock,
        transports: Mapping[str, Transport],
        pacer: Pacer,
        funnel: Funnel,
        *,
        managers: Mapping[str, ManagersChat] | None = None,
        crm: CrmExporter | None = None,
        worker_id: str,
        batch: int = BATCH,
        capacity: int = CAPACITY,
        lease: timedelta = LEASE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        only_own_channels: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        # Counted where the engine counts, unless told otherwise.
        self.metrics = metrics if metrics is not None else funnel.metrics
        # A terminal chat on a shared database claims only its own rows: another channel's
        # would fail here for want of a transport, though the bot that has it would send it.
        self.channels: frozenset[str] | None = (
            frozenset(transports) | frozenset(managers or ()) if only_own_channels else None
        )
        self.scenarios = scenarios
        self.clock = clock
        self.funnel = funnel
        self.worker_id = worker_id
        self.batch = batch
        self.capacity = max(capacity, batch)
        rate = sum(
            pacer.limits[channel].overall.rate
            for channel in set(transports) | set(managers or ())
            if channel in pacer.limits
        )
        if rate > 0:
            self.capacity = max(1, min(self.capacity, math.ceil(rate * HORIZON_SECONDS)))
        self.lease = lease
        self.pacer = pacer
        self.recorder = Recorder(db, scenarios, worker_id, clock.now, self.metrics)
        self._records: Coalescer[Outcome, None] = Coalescer(self.recorder.flush)
        self.sender = Sender(
            db,
            clock,
            transports,
            pacer,
            managers=managers or {},
            crm=crm,
            mark_blocked=funnel.mark_blocked,
            worker_id=worker_id,
            lease=lease,
            sleep=sleep,
            on_part=self._record_progress,
            metrics=self.metrics,
        )
        self._deliveries: dict[asyncio.Task[None], Prepared] = {}
        self._generation = 0
        self._continuous = False
        self._stopping = False
        self._pumping: asyncio.Task[int] | None = None
        self._claiming = asyncio.Lock()
        self._renewed_at: datetime | None = None

    # ---- driving ----

    async def tick(self) -> int:
        """Claim one batch, send all of it and record it; the rows handled."""
        handled = await self._claim(self.batch)
        await self.settle()
        return handled

    async def drain(self, *, limit: int = 10_000) -> int:
        """Tick until nothing is due (for `/wait` in the chat and for tests); rows handled."""
        total = 0
        while total < limit and (handled := await self.tick()):
            total += handled
        return total

    async def pump(self) -> int:
        """The heartbeat's job: claim while rows are due and fewer than `capacity` are in
        flight, and return without waiting for the sends. From then on the worker claims
        again by itself whenever half its capacity is free."""
        if self._stopping:
            return 0
        self._continuous = True
        await self._renew_leases()
        total = 0
        # Claims enough to fill the capacity once, then returns (the heartbeat's job ends;
        # the refills go on as sends finish).
        for _ in range(-(-self.capacity // self.batch)):
            room = self.capacity - len(self._deliveries)
            if room <= 0:
                break
            claimed = await self._claim(min(self.batch, room))
            total += claimed
            if claimed < min(self.batch, room):
                break
        return total

    async def settle(self) -> None:
        """Wait until every delivery started so far is sent (or decided) and recorded."""
        while self._deliveries:
            await asyncio.wait(list(self._deliveries))
        await self._records.idle()

    async def stop(self, grace_seconds: float) -> None:
        """Claim nothing more; give back at once the rows waiting for a slot (another worker
        or the next start takes them), and let the messages in flight finish and be recorded."""
        self._stopping, self._continuous = True, False
        async with self._claiming:  # a claim under way starts its deliveries first
            pass
        for task, item in list(self._deliveries.items()):
            if item.row_id in self.sender.waiting:
                task.cancel()
        if self._deliveries:
            await asyncio.wait(list(self._deliveries), timeout=grace_seconds)
        await self._records.idle()

    async def next_due(self) -> datetime | None:
        async with self.db.unit_of_work() as uow:
            return await uow.outbox.next_due(self.channels)

    # ---- the stages ----

    async def _claim(self, limit: int) -> int:
        """Claim up to `limit` due rows, prepare them in one transaction and start their
        deliveries; how many were claimed. Two statements claim (three on PostgreSQL), a
        handful prepare."""
        async with self._claiming:
            if self._stopping:
                return 0
            now = self.clock.now()
            loaded = self.scenarios.current
            async with self.db.unit_of_work() as uow:
                claimed = await claim_due(
                    uow.session,
                    now=now,
                    worker=self.worker_id,
                    lease=self.lease,
                    limit=limit,
                    channels=self.channels,
                )
                await uow.commit()
            if not claimed:
                return 0
            self._generation += 1
            items = [Prepared.of(row) for row in claimed]
            async with self.db.unit_of_work() as uow:
                # Locks: the leads first, in id order (the engine's order), then their rows.
                preparer = Preparer(loaded, self.funnel, now)
                ready, skipped, batch = await preparer.prepare(uow, items)
                await self.recorder.apply(uow, loaded.scenario, skipped, batch.leads)
                await uow.commit()
            for item in ready:
                task = asyncio.create_task(self._deliver(item, self._generation))
                self._deliveries[task] = item
                task.add_done_callback(self._delivered)
            return len(claimed)

    async def _renew_leases(self) -> None:
        """Every third of a lease, extend the leases of the rows still held here: a row stays
        this worker's however long it waits, and a dead worker's rows are taken over within
        one lease of its death."""
        now = self.clock.now()
        if self._renewed_at is not None and now - self._renewed_at < self.lease / 3:
            return
        self._renewed_at = now
        held = [item.row_id for item in self._deliveries.values()]
        if not held:
            return
        async with self.db.unit_of_work() as uow:
            await renew_leases(uow.session, held, worker=self.worker_id, until=now + self.lease)
            await uow.commit()

    async def _deliver(self, item: Prepared, generation: int) -> None:
        async def record(outcome: Skip | None) -> None:
            try:
                await self._records.submit((item, outcome))
            except Exception:
                # The row stays `sending` and is taken over when its lease runs out; only
                # what was on the wire can go out again.
                log.exception("recording outbox row %s failed", item.row_id)

        try:
            await self.sender.deliver(item, generation, record)
        except asyncio.CancelledError:
            # Stopping while it waited for a slot: the row goes back (what is out is recorded).
            await record(Skip("pending", "the worker stopped", due=self.clock.now()))
        except Exception as exc:  # the database failed under a gate's read, say
            log.exception("delivering outbox row %s failed", item.row_id)
            await record(Skip("retry", repr(exc)[:500]))

    async def _record_progress(self, item: Prepared) -> None:
        await self._records.submit((item, PROGRESS))

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._deliveries.pop(task, None)
        if (
            self._continuous
            and len(self._deliveries) <= self.capacity // 2
            and (self._pumping is None or self._pumping.done())
        ):
            self._pumping = asyncio.create_task(self._refill())

    async def _refill(self) -> int:
        try:
            return await self.pump()
        except Exception:
            log.exception("claiming outbox rows failed")
            return 0
