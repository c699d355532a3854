"""The funnel engine: one incoming event in, replies out, all state changed in one
transaction. `Funnel.handle` is the one entry: it loads the lead, then a turn understands the
input (`understand`), runs the flow it belongs to (`offers`, `contacts`, `commands`, `talk`)
and what follows from it (`consequences`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from bot import merge, referrals, scoring, sequences, stages
from bot.clock import Clock
from bot.engine import consequences, understand
from bot.engine.turn import Turn
from bot.messages import Incoming, Outgoing, Reply
from bot.metrics import Metrics
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import LoadedScenario
from storage.claims import is_unavailable, is_write_conflict
from storage.database import Database

log = logging.getLogger(__name__)

# A new identity racing with itself (two first messages at once) loses the unique-key race
# once, and the retry finds the lead the winner created; a PostgreSQL deadlock is retried too.
ATTEMPTS = 3
T = TypeVar("T")


class StorageUnavailable(Exception):
    """The database could not take the event (locked past its timeout, unreachable): nothing
    of it is kept, and the messenger must not be told it was handled."""


async def until_stored(
    handle: Callable[[], Awaitable[T]],
    *,
    patience: float,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """`handle()`, tried again while the database is unavailable (waits of 0.5 s doubling to
    30 s) for up to `patience` seconds; then `StorageUnavailable` for the messenger to
    redeliver (a webhook's 5xx). Long polling is patient: its update is not sent again."""
    waited, delay = 0.0, 0.5
    while True:
        try:
            return await handle()
        except StorageUnavailable:
            if waited + delay > patience:
                raise
        await sleep(delay)
        waited, delay = waited + delay, min(delay * 2, 30.0)


class Funnel:
    """Applies the active scenario to incoming events; knows no messenger."""

    def __init__(
        self,
        db: Database,
        scenarios: ActiveScenario,
        clock: Clock,
        *,
        phone_region: str = "RU",
        max_input_length: int = 1000,
        routes: scoring.Routes | None = None,
        link_base: str | None = None,
        referral_links: referrals.ReferralLinks | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        # The process's counters (bot/metrics.py); the worker and redemptions of this engine
        # record into them too. None: nothing is counted (most tests).
        self.metrics = metrics
        self.referral_links = referral_links or referrals.ReferralLinks()
        # Where a qualified lead and the questions the FAQ cannot answer go.
        self.routes = routes or scoring.Routes()
        self.link_base = link_base  # URL buttons go through <link_base>/r/<token> when set
        self.scenarios = scenarios
        self.clock = clock
        self.phone_region = phone_region
        self.max_input_length = max_input_length
        # How long a channel's event may wait for an unavailable database, set by the channel
        # by how its messenger redelivers: a webhook is answered in seconds (a 5xx, and the
        # messenger sends it again), long polling never redelivers (so it waits long).
        self.patience: dict[str, float] = {}
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    async def handle_until_stored(self, incoming: Incoming) -> Reply:
        """`handle`, tried again while the database is unavailable, within the channel's
        patience; then `StorageUnavailable`."""
        patience = self.patience.get(incoming.channel, 0.0)
        return await until_stored(
            lambda: self.handle(incoming), patience=patience, sleep=self.sleep
        )

    async def handle(self, incoming: Incoming) -> Reply:
        """Process one event. A failure rolls back and answers with an apology, but for the
        database being unavailable: that raises `StorageUnavailable`, nothing kept, so the
        channel has the messenger deliver the event again (see `until_stored`)."""
        incoming = incoming.cleaned()
        loaded = self.scenarios.current
        lock_first: set[int] = set()
        started = time.perf_counter()
        outcome = "cancelled"  # until it ends otherwise
        try:
            for attempt in range(ATTEMPTS):
                try:
                    reply = await self._handle_once(incoming, loaded, lock_first)
                    outcome = "duplicate" if reply.duplicate else "handled"
                    return reply
                except merge.LockOrder as busy:
                    if attempt == ATTEMPTS - 1:
                        raise
                    lock_first.add(busy.lead_id)
                except DBAPIError as exc:
                    if attempt == ATTEMPTS - 1 or not is_write_conflict(exc):
                        raise
                    log.info(
                        "retrying %s event of %s:%s after a write conflict",
                        incoming.kind,
                        incoming.channel,
                        incoming.external_id,
                    )
        except Exception as exc:
            outcome = "failed"
            if is_unavailable(exc):
                outcome = "unavailable"
                log.warning(
                    "%s event of %s:%s not stored, the database is unavailable: %s",
                    incoming.kind,
                    incoming.channel,
                    incoming.external_id,
                    str(exc).splitlines()[0][:200],
                )
                raise StorageUnavailable(str(exc).splitlines()[0][:200]) from exc
            log.exception(
                "failed to handle %s event of %s:%s",
                incoming.kind,
                incoming.channel,
                incoming.external_id,
            )
        finally:
            if self.metrics is not None:
                seconds = time.perf_counter() - started
                self.metrics.update_handled(incoming.channel, outcome, seconds)
        return Reply([Outgoing(loaded.scenario.messages.error)])

    async def _handle_once(
        self, incoming: Incoming, loaded: LoadedScenario, lock_first: set[int]
    ) -> Reply:
        now = self.clock.now()
        async with self.db.unit_of_work() as uow:
            if incoming.event_key and not await uow.inbound.first_time(
                incoming.event_key, now=now
            ):
                log.info("update %s was handled before; skipped", incoming.event_key)
                return Reply(duplicate=True)
            if lock_first:  # a merge found these leads busy: all locks in id order this time
                known = await uow.leads.find_by_identity(incoming.channel, incoming.external_id)
                for lead_id in sorted(lock_first | ({known[0].id} if known else set())):
                    await uow.leads.get(lead_id, lock=True)
            found = await uow.leads.find_by_identity(
                incoming.channel, incoming.external_id, lock=True
            )
            if found is None:
                lead, identity = await uow.leads.create(
                    channel=incoming.channel,
                    external_id=incoming.external_id,
                    now=now,
                    first_name=incoming.first_name,
                    username=incoming.username,
                )
            else:
                lead, identity = found
            away = now - identity.last_seen_at if found is not None else None
            # Written now, not at the end: what this turn queues goes to this account.
            uow.leads.seen(identity, now)
            turn = Turn(self, uow, loaded, lead, identity, incoming, new_lead=found is None)
            silence = loaded.scenario.shortest_silence
            if away is not None and silence is not None and away >= silence:
                # Back after a silence an `inactive:` chain counts: `stop_on: [returned]`.
                turn.record("returned", days=away.days)
            await turn.load_answers()
            await understand.route(turn)
            await consequences.follow(turn)
            lead = turn.lead  # another lead, if a merge made this one part of it
            lead.updated_at = now
            if lead.erased_at is None and incoming.first_name and not lead.first_name:
                lead.first_name = incoming.first_name
            await uow.commit()
        return turn.reply

    async def mark_blocked(self, channel: str, external_id: str) -> None:
        """The person blocked the bot: never send again until they write, drop the queue."""
        now = self.clock.now()
        async with self.db.unit_of_work() as uow:
            found = await uow.leads.find_by_identity(channel, external_id, lock=True)
            if found is None:
                return
            lead = found[0]
            if lead.unreachable_at is None:
                lead.unreachable_at = now
                uow.events.add(lead.id, "blocked", now=now, channel=channel)
            stages.set_side_stage(
                lead, "blocked", reason=f"{channel} blocked", now=now, events=uow.events
            )
            await sequences.stop_runs(uow, lead.id, now, "blocked")
            # A referral reward is still granted (the code waits in /promo); only its
            # thank-you is not sent.
            cancelled = await uow.outbox.cancel_pending(
                lead.id, reason="blocked", keep=(referrals.REWARD,)
            )
            await uow.commit()
        log.info(
            "lead %s blocked the bot in %s; %d queued messages cancelled",
            lead.id,
            channel,
            cancelled,
        )
