"""Gates hold up to the moment a message goes on the wire: 200 messages are being paced out
when 50 of their leads send /stop, withdraw advertising consent, block the bot or leave the
chain; once that is committed, no read of their gates lets a message out (only a message
whose gate was read before the commit, already in flight, may still go). A retry-after holds
every send until it has elapsed; after a block nothing more is tried for that person.

Real time at a modest rate (100 msg/s), a real database and the real engine functions that
close each gate. Nothing here measures time: sends, the gates' reads and the commits are
ordered on one counter, and sends against a retry-after by the moments they were made.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import broadcasts, sequences
from bot.clock import SystemClock
from bot.consent import MARKETING, PERSONAL_DATA
from bot.delivery import CONCURRENCY, DeliveryWorker
from bot.engine.funnel import Funnel
from bot.handoff import post_about_lead
from bot.messages import Incoming, Kind, Outgoing
from bot.pacing import ChannelLimits, Limit, MemoryPacer, Place
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.transport import Blocked, RetryLater
from storage.database import Database
from storage.models import OutboxRow
from tests.conftest import FIXTURE_SCENARIO

LEADS = 200
GATED = 50
CHAIN, TEXT = "blast", "Привет"
RATE = 100.0  # msg/s: the batch takes two seconds, paused in the middle to close the gates
LIMITS = {
    "telegram": ChannelLimits(
        overall=Limit(rate=RATE, burst=1),
        per_chat=Limit(rate=1.0, burst=1),
        per_group=Limit(rate=1.0, burst=1),
    )
}


def write_scenario(folder: Path) -> Path:
    """The test funnel with one one-step chain (stopped by `purchase`), no quiet hours."""
    import shutil

    shutil.copytree(FIXTURE_SCENARIO, folder)
    path = folder / "funnel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["settings"].pop("quiet_hours", None)
    for offer in data["offers"].values():
        offer.get("then", {}).pop("start", None)
    data["scoring"]["events"].pop("case_read", None)
    data["sequences"] = {
        CHAIN: {"stop_on": ["purchase"], "steps": [{"id": "only", "after": "0m", "text": TEXT}]}
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


@dataclass
class Wire:
    """The platform: every attempt in order; `fail` decides per attempt to raise instead."""

    attempts: list[tuple[str, str, float]] = field(default_factory=list)  # (to, text, when)
    fail: Callable[[str, int], BaseException | None] = lambda to, n: None
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    wanted: int = 0
    # From this attempt on, answers wait for `resume`: the platform is slow for a while, so
    # the test closes its gates while the batch is still being paced.
    pause_after: int | None = None
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    moment: Iterator[int] = field(default_factory=itertools.count)  # numbers each attempt
    numbered: list[tuple[str, int]] = field(default_factory=list)  # (to, moment)

    channel = "telegram"

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        self.attempts.append((external_id, message.text, time.monotonic()))
        self.numbered.append((external_id, next(self.moment)))
        if len(self.attempts) >= self.wanted:
            self.sent.set()
        if self.pause_after is not None and len(self.attempts) > self.pause_after:
            await self.resume.wait()
        error = self.fail(external_id, len(self.attempts))
        if error is not None:
            raise error

    def after(self, count: int) -> Awaitable[bool]:
        self.wanted = count
        self.sent.clear()
        if len(self.attempts) >= count:
            self.sent.set()
        return self.sent.wait()

    def moments(self, external_id: str) -> list[int]:
        """The moments of the attempts to this person."""
        return [at for to, at in self.numbered if to == external_id]

    def to(self, external_id: str) -> list[int]:
        """The positions of the attempts to this person."""
        return [n for n, (to, _, _) in enumerate(self.attempts) if to == external_id]


@dataclass
class Setup:
    db: Database
    funnel: Funnel
    worker: DeliveryWorker
    wire: Wire
    leads: dict[str, int]  # external id -> lead id, in claim order


@dataclass
class ManagersChat:
    """The managers' group: posts in order, with the moment each was made."""

    posts: list[tuple[str, float]] = field(default_factory=list)

    async def post_to_managers(
        self, text: str, buttons: object = (), *, expect_reply: bool = False
    ) -> str | None:
        self.posts.append((text, time.monotonic()))
        return f"-100:{len(self.posts)}"


async def setup(
    db: Database,
    tmp_path: Path,
    *,
    broadcast: bool = False,
    leads_count: int = LEADS,
    limits: dict[str, ChannelLimits] = LIMITS,
    managers: ManagersChat | None = None,
) -> Setup:
    scenarios = ActiveScenario(load_scenario(write_scenario(tmp_path / "scenario")))
    clock = SystemClock()
    funnel = Funnel(db, scenarios, clock)
    now = datetime.now(UTC)
    leads: dict[str, int] = {}
    async with db.unit_of_work() as uow:
        for n in range(leads_count):
            lead, _ = await uow.leads.create(
                channel="telegram", external_id=str(5000 + n), now=now
            )
            for kind in (PERSONAL_DATA, MARKETING):
                await uow.leads.give_consent(
                    lead.id, kind, text_version="test", channel="telegram", now=now
                )
            assert await sequences.start(uow, scenarios.current.scenario, lead, CHAIN, now)
            leads[str(5000 + n)] = lead.id
        await uow.commit()
    if broadcast:  # a second row per lead in the same batch
        scenario = scenarios.current.scenario
        queued = await broadcasts.enqueue(
            db, scenario, "news", list(leads.values()), now=now, text="Новости"
        )
        assert queued == leads_count
    wire = Wire()
    worker = DeliveryWorker(
        db,
        scenarios,
        clock,
        {"telegram": wire},
        MemoryPacer(limits),
        funnel,
        managers={"telegram": managers} if managers else None,
        worker_id="w",
        batch=2 * leads_count,
    )
    return Setup(db, funnel, worker, wire, leads)


async def close_by_stop(s: Setup, external_id: str) -> None:
    await s.funnel.handle(Incoming(channel="telegram", external_id=external_id, kind=Kind.STOP))


async def close_by_consent(s: Setup, external_id: str) -> None:
    """Consent withdrawn and nothing else: no flag, no cancelled row (a path other than
    /stop, such as an operator's correction)."""
    async with s.db.unit_of_work() as uow:
        assert await uow.leads.withdraw_consent(s.leads[external_id], MARKETING, now=_now())
        await uow.commit()


async def close_by_block(s: Setup, external_id: str) -> None:
    await s.funnel.mark_blocked("telegram", external_id)  # Telegram's "kicked" update


async def close_by_chain_stop(s: Setup, external_id: str) -> None:
    """A purchase reported for the lead: the chain's `stop_on` ends it."""
    async with s.db.unit_of_work() as uow:
        lead = await uow.leads.get(s.leads[external_id], lock=True)
        assert lead is not None
        scenario = s.funnel.scenarios.current.scenario
        await sequences.react(uow, scenario, lead, _now(), [("purchase", {})], set())
        await uow.commit()


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    "close",
    [close_by_stop, close_by_consent, close_by_block, close_by_chain_stop],
    ids=["stop", "consent", "block", "chain_stop"],
)
async def test_a_gate_closed_mid_batch_stops_every_message_not_yet_sent(
    db: Database, tmp_path: Path, close: Callable[[Setup, str], Awaitable[None]]
) -> None:
    s = await setup(db, tmp_path)
    gated = list(s.leads)[-GATED:]  # the last in claim order: their slots come last
    # While the platform holds its answers, at most CONCURRENCY more messages get on the wire:
    # the gated leads' slots come after those.
    assert 5 + CONCURRENCY < LEADS - GATED
    s.wire.pause_after = 5
    # A gate is read for every send of a moment at once, right before they go out; a read
    # that began before a commit may still let that send out (it was in flight). So the
    # order that counts is that of the reads: one must never let a send out once the gate
    # it read had closed. Reads, attempts and commits are numbered on one timeline.
    moment = itertools.count()
    reads: dict[str, list[int]] = defaultdict(list)
    read = s.worker.sender._gates._handle

    async def numbered_read(items: list[Any]) -> list[bool]:
        at = next(moment)
        for item in items:
            reads[item.external_id].append(at)
        return await read(items)

    s.worker.sender._gates._handle = numbered_read
    s.wire.moment = moment
    sending = asyncio.create_task(s.worker.tick())
    await asyncio.wait_for(s.wire.after(6), 30)
    closed_at: dict[str, int] = {}  # the moment each gate's commit returned
    for external_id in gated:
        await close(s, external_id)
        closed_at[external_id] = next(moment)
    s.wire.resume.set()
    assert await asyncio.wait_for(sending, 60) == LEADS

    def read_before(external_id: str, attempt: int) -> int:
        return max(r for r in reads[external_id] if r < attempt)

    late = {e: [a for a in s.wire.moments(e) if read_before(e, a) > closed_at[e]] for e in gated}
    assert {e: a for e, a in late.items() if a} == {}
    still_open = [e for e in gated if not any(a < closed_at[e] for a in s.wire.moments(e))]
    # The gates really closed mid-batch: most of those leads were still waiting for a slot
    # (on a loaded machine the engine's commits are slower, so fewer).
    assert len(still_open) >= GATED * 2 // 5, closed_at
    # Everybody else got their message, once.
    others = [e for e in s.leads if e not in gated]
    assert all(len(s.wire.to(e)) == 1 for e in others)
    # What never went on the wire stays unsent. (A send whose gate read came just before the
    # close may still go out after it: it was in flight, and `late` allows no other.)
    async with db.unit_of_work() as uow:
        for external_id in still_open:
            if s.wire.moments(external_id):
                continue
            rows = await uow.outbox.for_lead(s.leads[external_id])
            assert [r.status for r in rows] == ["cancelled"], external_id


async def test_after_a_block_nothing_more_is_tried_for_that_person(
    db: Database, tmp_path: Path
) -> None:
    s = await setup(db, tmp_path, broadcast=True)  # a step and a broadcast per lead
    blocking = set(list(s.leads)[::20])  # 10 people who blocked the bot
    s.wire.fail = lambda to, n: (
        Blocked("Forbidden: bot was blocked by the user") if (to in blocking) else None
    )
    assert await asyncio.wait_for(s.worker.tick(), 60) == 2 * LEADS
    assert {e: len(s.wire.to(e)) for e in blocking} == dict.fromkeys(blocking, 1)
    assert all(len(s.wire.to(e)) == 2 for e in s.leads if e not in blocking)
    async with db.unit_of_work() as uow:
        for external_id in blocking:
            lead = await uow.leads.get(s.leads[external_id])
            assert lead is not None
            assert lead.unreachable_at is not None
            rows = await uow.outbox.for_lead(lead.id)
            assert {r.status for r in rows} == {"cancelled"}


async def test_no_send_inside_a_retry_after_window(db: Database, tmp_path: Path) -> None:
    s = await setup(db, tmp_path)
    retry_after = 1.0
    raised: list[float] = []

    def fail(to: str, n: int) -> BaseException | None:
        if n == 30:
            raised.append(time.monotonic())
            return RetryLater(retry_after, "Too Many Requests: retry after 1")
        return None

    s.wire.fail = fail
    assert await asyncio.wait_for(s.worker.tick(), 60) == LEADS
    [start] = raised
    inside = [
        n for n, (_, _, at) in enumerate(s.wire.attempts) if start < at < start + retry_after
    ]
    assert inside == []
    # The refused message is queued again for the end of the window, not lost.
    async with db.unit_of_work() as uow:
        pending = await uow.outbox.pending_for_lead(s.leads[s.wire.attempts[29][0]])
        assert len(pending) == 1
        assert pending[0].attempts == 0
    await asyncio.sleep(max(0.0, start + retry_after - time.monotonic()) + 0.05)
    assert await asyncio.wait_for(s.worker.drain(), 60) == 1
    delivered = {to for to, _, _ in s.wire.attempts}
    assert delivered == set(s.leads)
    async with db.unit_of_work() as uow:
        statuses = await uow.session.execute(
            OutboxRow.__table__.select().with_only_columns(OutboxRow.status)
        )
        assert {status for (status,) in statuses} == {"sent"}


async def test_a_post_waiting_for_the_managers_group_holds_back_no_other_send(
    db: Database, tmp_path: Path
) -> None:
    """The group allows one post every 4 s and has just had one; the next post waits for its
    slot while 40 prospects get their messages at the channel's rate (0.4 s of sending)."""
    group = Limit(rate=0.25, burst=1)
    limits = {"telegram": ChannelLimits(LIMITS["telegram"].overall, Limit(1.0, 1), group)}
    chat = ManagersChat()
    s = await setup(db, tmp_path, leads_count=40, limits=limits, managers=chat)
    assert await s.worker.sender.pacer.reserve("telegram", "managers", group=True) == 0.0
    began = time.monotonic()
    chat.posts.append(("the post before", began))
    place = await s.worker.sender.pacer.take("telegram", "managers", group=True)
    assert isinstance(place, Place)
    lead_id = next(iter(s.leads.values()))
    async with db.unit_of_work() as uow:
        await post_about_lead(
            uow,
            lead_id,
            "Вопрос клиента",
            purpose="question",
            key="q:1",
            managers=("telegram",),
            now=_now(),
        )
        await uow.commit()
    assert await asyncio.wait_for(s.worker.tick(), 60) == 41
    [(_, posted_at)] = [p for p in chat.posts if p[0] == "Вопрос клиента"]
    assert posted_at >= began + 4.0  # it waited for the group's slot...
    prospects = [at for _, _, at in s.wire.attempts]
    assert len(prospects) == 40
    # ...while every prospect got the message before it: nobody waited behind the post.
    assert max(prospects) < posted_at


def _clock_now() -> float:
    return SystemClock().now().timestamp()
