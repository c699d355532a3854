"""Sending prepared rows: each message waits for its slot, then every gate is checked again
right before it goes on the wire.

The gates, in the order they are checked once the slot has come:
- the row and its lead as committed now (one read for all the sends of that moment): the row
  is still this worker's and not cancelled (the engine cancels the rows of a lead who sent
  `/stop`, blocked the bot, was erased or left the chain), and the lead has not stopped
  advertising, withdrawn its advertising consent, blocked the bot or been erased since the
  row was prepared;
- a retry-after that arrived after the slot was booked (this process's): the slot is revoked
  and booked again after it;
- a person this worker saw block the bot: nothing more is tried for them;
- the pacer's `take`: a retry-after any process heard (again the slot is revoked), and the
  platform's window over the sends that really left, of every process sharing the pacer.
Nothing awaits between `take` and the send, so no other send of this process can slip in
between, and `take` itself is atomic (in the loop, or a script on the Redis server). Before
its slot is booked, a row waits for its turn in its chat's line (bot/delivery/ordering.py),
so a chat's messages leave in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, select

from bot.clock import Clock
from bot.consent import MARKETING
from bot.crm import CrmExporter, CrmRejected
from bot.delivery.coalescing import Coalescer
from bot.delivery.ordering import ChatLines, Turn
from bot.delivery.outcomes import (
    ADVERTISING,
    LONGEST_HOLD,
    Prepared,
    Skip,
    advertises,
    purpose_of,
)
from bot.handoff import RELAY
from bot.metrics import Metrics
from bot.pacing import Pacer, Place
from bot.referrals import REWARD
from bot.scoring import CRM_EXPORT
from bot.transport import (
    Blocked,
    ManagersChat,
    Refused,
    RetryLater,
    TemporaryFailure,
    Transport,
)
from storage.database import Database
from storage.models import Consent, Lead, OutboxRow

log = logging.getLogger(__name__)

# Messages in flight at once: on the wire, or out and not yet recorded. A crash repeats at
# most these (on Telegram, which has no idempotency key).
CONCURRENCY = 128
PERSONAL = frozenset({RELAY, REWARD})  # not advertising, yet personal: stop at a block


class Sender:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        transports: Mapping[str, Transport],
        pacer: Pacer,
        *,
        managers: Mapping[str, ManagersChat],
        crm: CrmExporter | None,
        mark_blocked: Callable[[str, str], Awaitable[None]],
        worker_id: str,
        lease: timedelta,
        sleep: Callable[[float], Awaitable[None]],
        on_part: Callable[[Prepared], Awaitable[None]],
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.transports = transports
        self.pacer = pacer
        self.managers = managers
        self.crm = crm
        self.mark_blocked = mark_blocked
        self.worker_id = worker_id
        self.lease = lease
        self.sleep = sleep
        self.on_part = on_part  # a message of a row of several is out: record it now
        self.metrics = metrics
        self.waiting: set[int] = set()  # rows waiting for a slot: nothing of theirs in flight
        self._wire = asyncio.Semaphore(CONCURRENCY)
        self._gates: Coalescer[Prepared, bool] = Coalescer(self._read_gates)
        self._holds: dict[str, float] = {}  # channel -> end of a retry-after seen here
        self._blocked: dict[tuple[str, str], int] = {}  # person -> batch that saw the block
        self.lines = ChatLines(forget_after=lease)

    def _now(self) -> float:
        return self.clock.now().timestamp()

    async def deliver(
        self,
        item: Prepared,
        generation: int,
        record: Callable[[Skip | None], Awaitable[None]],
    ) -> None:
        """Send every message of the row not yet out, then `record` what became of it (None:
        all out). A message that went out keeps its place among the `CONCURRENCY` in flight
        until it is recorded, so a crash can repeat at most that many messages.
        `generation` numbers the batch the row was prepared in."""
        if item.kind == CRM_EXPORT:
            await record(
                await self._export(item) if await self._gates.submit(item) else _revoked()
            )
            return
        transport = self.transports.get(item.channel)
        chat = self.managers.get(item.channel)
        if item.post is not None and chat is None:
            await record(Skip("failed", f"no managers' chat in {item.channel}"))
            return
        if item.post is None and transport is None:
            await record(Skip("failed", f"no transport for {item.channel}"))
            return
        turn = self.lines.join((item.channel, item.external_id), item.row_id)
        try:
            await self._deliver_in_turn(item, generation, transport, chat, record, turn)
        finally:
            self.lines.leave(turn, None, self.clock.now())  # in any case, the line moves on

    async def _deliver_in_turn(
        self,
        item: Prepared,
        generation: int,
        transport: Transport | None,
        chat: ManagersChat | None,
        record: Callable[[Skip | None], Awaitable[None]],
        turn: Turn,
    ) -> None:
        self.waiting.add(item.row_id)  # waiting for its turn: nothing of it in flight yet
        try:
            ahead = await self.lines.wait(turn, self.clock.now)
        finally:
            self.waiting.discard(item.row_id)
        if ahead is not None:
            skip = Skip("pending", "an earlier message to the chat was given back", due=ahead)
            self.lines.leave(turn, ahead, self.clock.now())
            await record(skip)
            return
        while item.parts_sent < item.parts:
            outcome = await self._send_next(item, generation, transport, chat)
            if outcome is not None:
                if outcome.status == "pending" and outcome.due is not None:
                    self.lines.leave(turn, outcome.due, self.clock.now())  # takes the line along
                else:
                    self.lines.leave(turn, None, self.clock.now())
                await record(outcome)
                return
            if item.parts_sent == item.parts:
                self.lines.leave(turn, None, self.clock.now())  # out: the next may go
            try:  # the message is out and holds its place in flight until recorded
                if item.parts_sent < item.parts:
                    await self.on_part(item)
                else:
                    await record(None)
            finally:
                self._wire.release()

    async def _send_next(
        self,
        item: Prepared,
        generation: int,
        transport: Transport | None,
        chat: ManagersChat | None,
    ) -> Skip | None:
        """Wait for the next message's turn, check the gates and send it. None: it went out,
        and its place in flight is still held (the caller releases it once recorded)."""
        group = item.post is not None
        while True:
            wait = await self.pacer.reserve(item.channel, item.external_id, group=group)
            if wait > LONGEST_HOLD.total_seconds():
                # Held that long, it would keep a place another row could use: given back.
                return Skip("pending", "paced", due=self.clock.now() + timedelta(seconds=wait))
            if wait > 0:
                await self._wait(item, wait)
            while True:
                await self._wire.acquire()
                try:
                    outcome = await self._checked_send(item, generation, transport, chat)
                except BaseException:
                    self._wire.release()
                    raise
                if isinstance(outcome, float):  # not yet: wait, then look again
                    self._wire.release()
                    if outcome < 0:
                        break  # a retry-after came after the slot was booked: book again
                    await self._wait(item, outcome)
                    continue
                if outcome is not None:
                    self._wire.release()
                return outcome

    async def _wait(self, item: Prepared, seconds: float) -> None:
        """Wait for a slot; meanwhile the row may be given back (`waiting`)."""
        if self.metrics is not None:  # counted as booked: a row given back meanwhile waited too
            self.metrics.paced(item.channel, seconds)
        self.waiting.add(item.row_id)
        try:
            await self.sleep(seconds)
        finally:
            self.waiting.discard(item.row_id)

    async def _checked_send(
        self,
        item: Prepared,
        generation: int,
        transport: Transport | None,
        chat: ManagersChat | None,
    ) -> Skip | float | None:
        """With a place in flight: the last checks, then the send. A float asks to wait that
        long (-1: book a new slot). The gates are read together with every other send of the
        moment; nothing but in-process checks lies between that read and the send."""
        if not await self._gates.submit(item):
            return _revoked()
        if self._holds.get(item.channel, 0.0) > self._now():
            return -1.0
        if self._blocked.get((item.channel, item.external_id), -1) >= generation:
            return Skip("cancelled", "blocked")
        taken = await self.pacer.take(item.channel, item.external_id, group=item.post is not None)
        if not isinstance(taken, Place):
            return taken
        try:
            return await self._on_wire(item, generation, transport, chat)
        finally:  # the platform answered (or not at all): held from now on
            await self.pacer.done(taken)

    async def _on_wire(
        self,
        item: Prepared,
        generation: int,
        transport: Transport | None,
        chat: ManagersChat | None,
    ) -> Skip | None:
        number = item.parts_sent
        try:
            await self._put_on_wire(item, number, transport, chat)
            if item.post is not None and item.reference is None:
                return Skip("cancelled", f"no managers' chat in {item.channel}")
        except Blocked:
            if item.post is not None:  # the bot was removed from the managers' chat
                return Skip("retry", "the managers' chat refused the bot")
            self._blocked[(item.channel, item.external_id)] = generation
            await self.mark_blocked(item.channel, item.external_id)
            return Skip("cancelled", "blocked")
        except RetryLater as exc:
            # Held here at once, before the pacer (perhaps a Redis round trip) hears of it.
            until = self._now() + exc.seconds
            self._holds[item.channel] = max(self._holds.get(item.channel, 0.0), until)
            await self.pacer.penalize(item.channel, None, exc.seconds)
            due = self.clock.now() + timedelta(seconds=exc.seconds)
            return Skip("pending", f"retry after {exc.seconds}s: {exc}", due=due)
        except Refused as exc:
            # The same message would be refused again: failed at once, with the reason. A
            # chain goes on past it, as past a step with nothing to show.
            log.error("%s refused outbox row %s: %s", item.channel, item.row_id, exc)
            reason = f"{item.channel} refused message {number + 1}: {exc}"
            return Skip("failed", reason[:500], queue_next=True)
        except TemporaryFailure as exc:
            log.warning("sending outbox row %s failed for now: %s", item.row_id, exc)
            return Skip("retry", f"temporary failure: {exc}"[:500])
        except Exception as exc:  # a bug or an unknown failure: retried with backoff
            log.exception("sending outbox row %s failed", item.row_id)
            return Skip("retry", repr(exc)[:500])
        item.parts_sent = number + 1
        return None

    async def _put_on_wire(
        self,
        item: Prepared,
        number: int,
        transport: Transport | None,
        chat: ManagersChat | None,
    ) -> None:
        if item.post is not None and chat is not None:
            item.reference = await chat.post_to_managers(*item.post)
        elif transport is not None:
            await transport.send(
                item.external_id,
                replace(item.messages[number], purpose=purpose_of(item)),
                idempotency_key=item.part_key(number),
                last_message_at=item.last_message_at,
            )

    async def _export(self, item: Prepared) -> Skip | None:
        if self.crm is None:
            return Skip("failed", "no CRM configured")
        target, lead = item.details["target"], item.details["lead"]
        try:
            item.reference = await self.crm.export(target, lead, idempotency_key=item.key)
        except CrmRejected as exc:
            log.error("%s refused lead %s: %s", target, item.lead_id, exc)
            return Skip("failed", f"{target} refused: {exc}"[:500])
        except RetryLater as exc:
            due = self.clock.now() + timedelta(seconds=exc.seconds)
            return Skip("pending", f"retry after {exc.seconds}s: {exc}", due=due)
        except TemporaryFailure as exc:
            log.warning("exporting lead %s to %s failed for now: %s", item.lead_id, target, exc)
            return Skip("retry", f"temporary failure: {exc}"[:500])
        except Exception as exc:
            log.exception("exporting lead %s to %s failed", item.lead_id, target)
            return Skip("retry", repr(exc)[:500])
        item.parts_sent = 1
        return None

    async def _read_gates(self, items: list[Prepared]) -> list[bool]:
        """Whether each row may go now, as committed now: one read for every send of the
        moment, outside the write queue."""
        consent = (
            select(Consent.id)
            .where(
                Consent.lead_id == OutboxRow.lead_id,
                Consent.kind == MARKETING,
                Consent.withdrawn_at.is_(None),
            )
            .exists()
        )
        query = (
            select(
                OutboxRow.id,
                OutboxRow.status,
                OutboxRow.leased_by,
                Lead.unsubscribed_at,
                Lead.unreachable_at,
                Lead.erased_at,
                consent.label("consenting"),
            )
            .outerjoin(Lead, Lead.id == OutboxRow.lead_id)
            .where(OutboxRow.id.in_({item.row_id for item in items}))
        )
        async with self.db.reading() as session:
            state = {row.id: row for row in await session.execute(query)}
        return [self._open(item, state.get(item.row_id)) for item in items]

    def _open(self, item: Prepared, row: Row[Any] | None) -> bool:
        if row is None or row.status != "sending" or row.leased_by != self.worker_id:
            return False  # cancelled by the engine, or taken over after the lease ran out
        if advertises(item):
            stopped = row.unsubscribed_at or row.unreachable_at or row.erased_at
            return bool(row.consenting) and not stopped
        if item.kind in PERSONAL or item.kind in ADVERTISING:  # a `service:` step is personal
            return not (row.unreachable_at or row.erased_at)
        return True


def _revoked() -> Skip:
    return Skip("cancelled", "a gate closed before it was sent (stop, block, chain, erasure)")
