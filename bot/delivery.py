"""The delivery worker: claims due outbox rows, checks each again at send time, paces, sends.

A row goes pending -> sending (claimed with a lease) -> sent, or back to pending (retry-after,
a network error, quiet hours), or failed (too many attempts) or cancelled (blocked, no
advertising consent, the chain stopped, the step removed). Nothing is held in memory between
ticks: a restarted or crashed worker loses nothing, and a row whose lease expired is taken over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot import broadcasts, promos, reactions, referrals, sequences
from bot.clock import Clock
from bot.crm import CrmExporter, CrmRejected
from bot.engine.funnel import MARKETING, REFERRAL_LINK, Funnel, question_markup
from bot.engine.messages import Button, FileRef, Outgoing, Purpose
from bot.engine.render import render
from bot.engine.transport import Blocked, ManagersChat, RetryLater, TemporaryFailure, Transport
from bot.handoff import MANAGERS_POST, RELAY, remember_message
from bot.lead_card import Rows, crm_lead, render_card
from bot.pacing import Pacer
from bot.rules import evaluate, events_in, load_facts
from bot.scenario.active import ActiveScenario
from bot.scenario.checks import placeholders
from bot.scenario.model import Scenario, StepButton
from bot.scoring import CARD, CRM_EXPORT
from bot.timing import in_quiet_hours, out_of_quiet_hours, zone_of
from bot.tracking import track_buttons
from storage.claims import claim_due
from storage.database import Database
from storage.models import Answer, Handoff, Lead, OutboxRow
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=120)
BATCH = 200
CONCURRENCY = 32
# While a manager holds a lead its warm-up waits; the row looks again this much later.
PAUSE_RECHECK = timedelta(minutes=15)
MANAGERS_CHAT_KEY = "managers"  # the pacer's key of a managers' chat (a group)


def backoff(attempts: int) -> float:
    """Seconds before retry number `attempts` after a network or server error: 5 s doubling,
    at most an hour."""
    return float(min(5 * 2 ** max(attempts - 1, 0), 3600))


# What each kind of row is for, as the messenger may need to say (VK's `intent`).
PURPOSES: dict[str, Purpose] = {
    sequences.STEP: "advertising",
    broadcasts.BROADCAST: "advertising",
    RELAY: "support",
    referrals.REWARD: "notice",
}


@dataclass
class Prepared:
    """A claimed row made ready to send: where to, what, and what to record once it is out."""

    row_id: int
    lead_id: int
    key: str  # the row's idempotency key: a platform that dedups by it (VK) sends once
    channel: str
    external_id: str
    messages: list[Outgoing]
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = sequences.STEP
    post: tuple[str, Rows] | None = None  # a post in the managers' chat of `channel`
    reference: str | None = None  # the posted message, once it is out
    last_message_at: datetime | None = None  # when the lead last wrote in `channel`


class Skip(Exception):
    """The row will not be sent now; `status` says what becomes of it."""

    def __init__(
        self, status: str, reason: str, *, due: datetime | None = None, queue_next: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.due = due
        self.queue_next = queue_next


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
        lease: timedelta = LEASE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.scenarios = scenarios
        self.clock = clock
        self.transports = transports
        self.pacer = pacer
        self.funnel = funnel
        self.managers = managers or {}
        self.crm = crm
        self.worker_id = worker_id
        self.batch = batch
        self.lease = lease
        self.sleep = sleep
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def tick(self) -> int:
        """One heartbeat: claim what is due, decide each row, send, record the outcomes.
        Three short transactions per batch, none open while a message is on the wire.

        Locks are taken lead first, then its row, leads in id order: the order the engine
        uses (it locks a lead, then cancels that lead's rows), so the two never deadlock."""
        scenario = self.scenarios.current.scenario
        now = self.clock.now()
        async with self.db.unit_of_work() as uow:
            claimed = [
                (row.lead_id or 0, row.id)
                for row in await claim_due(
                    uow.session,
                    now=now,
                    worker=self.worker_id,
                    lease=self.lease,
                    limit=self.batch,
                )
            ]
            await uow.commit()
        if not claimed:
            return 0
        prepared: list[Prepared] = []
        async with self.db.unit_of_work() as uow:
            for lead_id, row_id in sorted(claimed):
                lead = await uow.leads.get(lead_id, lock=True) if lead_id else None
                row = await self._own_row(uow, row_id)
                if row is None:
                    continue
                try:
                    if lead is None:
                        raise Skip("cancelled", "lead gone")
                    if row.kind == sequences.STEP:
                        item = await self._prepare_step(uow, scenario, row, lead, now)
                    elif row.kind == broadcasts.BROADCAST:
                        item = await self._prepare_broadcast(uow, scenario, row, lead, now)
                    elif row.kind in (CARD, MANAGERS_POST):
                        item = await self._prepare_post(uow, scenario, row, lead, now)
                    elif row.kind == RELAY:
                        item = await self._prepare_relay(uow, row, lead)
                    elif row.kind == referrals.REWARD:
                        item = await self._prepare_reward(uow, scenario, row, lead, now)
                    elif row.kind == CRM_EXPORT:
                        item = await self._prepare_crm(uow, scenario, row, lead)
                    else:
                        raise Skip("failed", f"unknown outbox kind {row.kind!r}")
                    prepared.append(item)
                except Skip as skip:
                    await self._apply_skip(uow, scenario, row, lead, skip, now)
                except Exception as exc:  # one bad row must not hold back the batch
                    log.exception("preparing outbox row %s failed", row.id)
                    await self._apply_skip(
                        uow, scenario, row, lead, Skip("retry", repr(exc)[:500]), now
                    )
            await uow.commit()
        if prepared:
            outcomes = await asyncio.gather(*(self._send(item) for item in prepared))
            await self._record(list(zip(prepared, outcomes, strict=True)))
        return len(claimed)

    async def drain(self, *, limit: int = 10_000) -> int:
        """Tick until nothing is due (for `/wait` in the chat and for tests); rows handled."""
        total = 0
        while total < limit and (handled := await self.tick()):
            total += handled
        return total

    async def next_due(self) -> datetime | None:
        async with self.db.unit_of_work() as uow:
            return await uow.outbox.next_due()

    async def _send(self, item: Prepared) -> Skip | None:
        """Send one prepared row; None when it went out, else what becomes of the row."""
        async with self._gate:
            if item.kind == CRM_EXPORT:
                return await self._export(item)
            transport = self.transports.get(item.channel)
            chat = self.managers.get(item.channel)
            if item.post is not None and chat is None:
                return Skip("failed", f"no managers' chat in {item.channel}")
            if item.post is None and transport is None:
                return Skip("failed", f"no transport for {item.channel}")
            wait = await self.pacer.reserve(
                item.channel, item.external_id, group=item.post is not None
            )
            if wait > self.lease.total_seconds() / 2:
                # Waiting that long would outlive the lease: give the row back instead.
                return Skip("pending", "paced", due=self.clock.now() + timedelta(seconds=wait))
            if wait > 0:
                await self.sleep(wait)
            try:
                if item.post is not None and chat is not None:
                    item.reference = await chat.post_to_managers(*item.post)
                    if item.reference is None:
                        return Skip("cancelled", f"no managers' chat in {item.channel}")
                for number, message in enumerate(item.messages):
                    # A key per message: a platform that drops a repeated key (VK's
                    # random_id) would otherwise drop a step's question after its text.
                    key = item.key if number == 0 else f"{item.key}:{number}"
                    await transport.send(
                        item.external_id,
                        replace(message, purpose=PURPOSES.get(item.kind, "reply")),
                        idempotency_key=key,
                        last_message_at=item.last_message_at,
                    )
            except Blocked:
                if item.post is not None:  # the bot was removed from the managers' chat
                    return Skip("retry", "the managers' chat refused the bot")
                await self.funnel.mark_blocked(item.channel, item.external_id)
                return Skip("cancelled", "blocked")
            except RetryLater as exc:
                await self.pacer.penalize(item.channel, None, exc.seconds)
                due = self.clock.now() + timedelta(seconds=exc.seconds)
                return Skip("pending", f"retry after {exc.seconds}s: {exc}", due=due)
            except TemporaryFailure as exc:
                log.warning("sending outbox row %s failed for now: %s", item.row_id, exc)
                return Skip("retry", f"temporary failure: {exc}"[:500])
            except Exception as exc:  # a bug or an unknown failure: retried with backoff
                log.exception("sending outbox row %s failed", item.row_id)
                return Skip("retry", repr(exc)[:500])
            return None

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
        return None

    async def _record(self, outcomes: list[tuple[Prepared, Skip | None]]) -> None:
        now = self.clock.now()
        scenario = self.scenarios.current.scenario
        async with self.db.unit_of_work() as uow:
            for item, skip in sorted(outcomes, key=lambda pair: (pair[0].lead_id, pair[0].row_id)):
                lead = await uow.leads.get(item.lead_id, lock=True)
                row = await self._own_row(uow, item.row_id)
                if row is None:
                    log.warning("outbox row %s was taken over while being sent", item.row_id)
                    continue
                if skip is None:
                    await self._mark_sent(uow, scenario, row, lead, item, now)
                else:
                    await self._apply_skip(uow, scenario, row, lead, skip, now)
            await uow.commit()

    # ---- deciding, at send time ----

    async def _own_row(self, uow: UnitOfWork, row_id: int) -> OutboxRow | None:
        query = select(OutboxRow).where(OutboxRow.id == row_id).with_for_update()
        row = (await uow.session.execute(query)).scalar_one_or_none()
        if row is None or row.status != "sending" or row.leased_by != self.worker_id:
            return None  # taken over by another worker after our lease ran out
        return row

    async def _prepare_step(
        self, uow: UnitOfWork, s: Scenario, row: OutboxRow, lead: Lead, now: datetime
    ) -> Prepared:
        payload = row.payload
        sequence = s.sequences.get(payload["sequence"])
        run = await uow.sequences.get(lead.id, payload["sequence"])
        if sequence is None or run is None or run.status != "active":
            raise Skip("cancelled", "chain stopped or removed")
        step = next((st for st in sequence.steps if st.id == payload["step"]), None)
        if step is None:
            raise Skip("cancelled", "step removed from the scenario", queue_next=True)
        await self._check_advertising_allowed(uow, s, lead, now)
        if s.handoff.pause_sequences:
            handoff = await uow.session.get(Handoff, lead.id)
            if handoff is not None and handoff.status == "claimed":
                raise Skip("pending", "a manager holds the lead", due=now + PAUSE_RECHECK)
        if step.if_ is not None:
            facts = await load_facts(uow, lead, events_in(step.if_))
            if not evaluate(step.if_, facts):
                raise Skip("skipped", "if: false", queue_next=True)
        variant = sequences.variant_of(lead.id, sequence_id := payload["sequence"], step)
        text = sequences.step_text(step, variant)
        question = s.questions[step.ask].text if step.ask else None
        values = await self._values(
            uow, s, lead, [text, question], now, promo=step.promo, queue_next=True
        )
        messages = self._messages(s, text, step.buttons, step.file, values, queue_next=True)
        if step.ask:
            messages.append(self._question(s, step.ask, values))
        details = {"sequence": sequence_id, "step": step.id, "variant": variant, "ask": step.ask}
        return await self._addressed(uow, row, lead, messages, details)

    async def _prepare_broadcast(
        self, uow: UnitOfWork, s: Scenario, row: OutboxRow, lead: Lead, now: datetime
    ) -> Prepared:
        broadcast_id = row.payload["broadcast"]
        defined = s.broadcasts.get(broadcast_id)
        text = row.payload.get("text") or (defined.text if defined else None)
        if text is None:
            raise Skip("cancelled", "broadcast removed from the scenario")
        await self._check_advertising_allowed(uow, s, lead, now)
        messages = self._messages(
            s,
            text,
            defined.buttons if defined else [],
            defined.file if defined else None,
            await self._values(uow, s, lead, [text], now, queue_next=False),
            queue_next=False,
        )
        return await self._addressed(uow, row, lead, messages, {"broadcast": broadcast_id})

    async def _prepare_post(
        self, uow: UnitOfWork, s: Scenario, row: OutboxRow, lead: Lead, now: datetime
    ) -> Prepared:
        """A lead card (first post, reminder, escalation) or a post about a lead."""
        purpose = row.payload.get("purpose", "card")
        if row.kind == MANAGERS_POST:
            post: tuple[str, Rows] = (row.payload["text"], ())
        else:
            handoff = await uow.session.get(Handoff, lead.id)
            if handoff is None:
                raise Skip("cancelled", "the lead was never handed over")
            if purpose != "card" and handoff.status != "open":
                raise Skip("cancelled", "claimed before the reminder was due")
            waited = _minutes(now - handoff.qualified_at)
            headline = {
                "reminder": f"⏰ Лида никто не взял уже {waited}",
                "escalation": f"🚨 Эскалация: лид ждёт менеджера {waited}",
            }.get(purpose, "")
            post = await render_card(uow, s, lead, handoff, headline=headline)
        return Prepared(
            row.id,
            lead.id,
            row.idempotency_key,
            row.channel,
            MANAGERS_CHAT_KEY,
            [],
            {"purpose": purpose},
            kind=row.kind,
            post=post,
        )

    async def _prepare_reward(
        self, uow: UnitOfWork, s: Scenario, row: OutboxRow, lead: Lead, now: datetime
    ) -> Prepared:
        """A referrer's reward for a friend who counted: granted here, under the referrer's
        lock, once (the text is kept in the row for a retry of the send), then sent like a
        manager's answer. A referrer who blocked the bot keeps the code for /promo."""
        if "text" not in row.payload:
            # A savepoint: a failure half-way leaves no half-granted reward behind.
            async with uow.session.begin_nested():
                reward = await referrals.grant(uow, s, lead, row.payload["friend"], now)
                if reward is not None:
                    await reactions.react_and_record(
                        uow, s, lead, now, reward.events, reward.reached
                    )
                row.payload = {**row.payload, "text": reward.text if reward else None}
        if row.payload["text"] is None:
            raise Skip("skipped", "no reward code: void, max_rewards reached or no reward_promo")
        return await self._prepare_relay(uow, row, lead)

    async def _prepare_relay(self, uow: UnitOfWork, row: OutboxRow, lead: Lead) -> Prepared:
        """A manager's answer or a referral thank-you: not advertising, so no consent or
        quiet hours apply, but a lead who blocked the bot or was erased gets nothing."""
        if lead.erased_at or lead.unreachable_at:
            raise Skip("cancelled", "the lead blocked the bot or was erased")
        item = await self._addressed(uow, row, lead, [Outgoing(row.payload["text"])], {})
        item.kind = row.kind
        return item

    async def _prepare_crm(
        self, uow: UnitOfWork, s: Scenario, row: OutboxRow, lead: Lead
    ) -> Prepared:
        if lead.erased_at:
            raise Skip("cancelled", "the lead was erased")
        details = {"target": row.payload["target"], "lead": await crm_lead(uow, s, lead)}
        return Prepared(
            row.id, lead.id, row.idempotency_key, row.channel, "", [], details, kind=CRM_EXPORT
        )

    async def _check_advertising_allowed(
        self, uow: UnitOfWork, s: Scenario, lead: Lead, now: datetime
    ) -> None:
        """Checked at send time, whatever was true when the row was queued."""
        if lead.erased_at or lead.unsubscribed_at or lead.unreachable_at:
            raise Skip("cancelled", "unsubscribed, blocked or erased")
        if await uow.leads.active_consent(lead.id, MARKETING) is None:
            raise Skip("cancelled", "no advertising consent")
        zone = zone_of(lead.timezone, s.settings.timezone)
        if in_quiet_hours(now, zone, s.settings.quiet_hours):
            raise Skip(
                "pending", "quiet hours", due=out_of_quiet_hours(now, zone, s.settings.quiet_hours)
            )

    async def _addressed(
        self,
        uow: UnitOfWork,
        row: OutboxRow,
        lead: Lead,
        messages: list[Outgoing],
        details: dict[str, Any],
    ) -> Prepared:
        """To the messenger the lead used last."""
        identity = await uow.leads.latest_identity(lead.id)
        if identity is None:
            raise Skip("cancelled", "no messenger account")
        messages = await track_buttons(
            uow, lead.id, messages, self.funnel.link_base, self.clock.now()
        )
        return Prepared(
            row.id,
            lead.id,
            row.idempotency_key,
            identity.channel,
            identity.external_id,
            messages,
            details,
            last_message_at=identity.last_seen_at,
        )

    async def _values(
        self,
        uow: UnitOfWork,
        s: Scenario,
        lead: Lead,
        texts: list[str | None],
        now: datetime,
        *,
        promo: str | None = None,
        queue_next: bool,
    ) -> dict[str, str]:
        """What the texts' placeholders become. Promo codes are issued here: exactly those
        the texts show, plus the step's `promo:`. A placeholder nothing can fill skips the
        message before any code is issued for it."""
        values = self._plain_values(s, await uow.leads.answers(lead.id), lead)
        if s.referral is not None and any(
            REFERRAL_LINK in placeholders(text or "") for text in texts
        ):
            channel = await sequences.lead_channel(uow, lead.id)
            code = await referrals.code_of(uow, lead)
            values[REFERRAL_LINK] = self.funnel.referral_links.link(channel, code)
        for text in texts:
            for name in placeholders(text or ""):
                parts = name.split(".")
                known_promo = parts[0] == "promo" and (
                    len(parts) == 2 or (len(parts) == 3 and parts[2] == "expires")
                )
                if name not in values and not (known_promo and parts[1] in s.promos):
                    raise Skip("skipped", _no_value(name), queue_next=queue_next)
        try:
            values |= await promos.promo_values(uow, s, lead, texts, now, also=[promo])
        except promos.NoCode as ended:
            raise Skip("skipped", str(ended), queue_next=queue_next) from None
        return values

    def _plain_values(
        self, s: Scenario, answers: Mapping[str, Answer], lead: Lead
    ) -> dict[str, str]:
        name = s.name_answer({q: a.value for q, a in answers.items()})
        return s.placeholder_values(lead.first_name, name)

    def _messages(
        self,
        s: Scenario,
        text: str | None,
        buttons: list[StepButton],
        file: str | None,
        values: dict[str, str],
        *,
        queue_next: bool,
    ) -> list[Outgoing]:
        rows: list[tuple[Button, ...]] = []
        for button in buttons:
            if button.url:
                rows.append((Button(button.text, url=button.url, event=button.event),))
            elif button.offer:
                rows.append((Button(button.text, action=f"o:{button.offer}"),))
            elif button.event:
                rows.append((Button(button.text, action=f"e:{button.event}"),))
        try:
            rendered = render(text, values) if text else None
        except KeyError as missing:  # `_values` checked the names: this is a bug
            raise Skip("skipped", _no_value(str(missing.args[0])), queue_next=queue_next) from None
        attached = (
            FileRef(path=str(self.scenarios.current.file_path(file).resolve())) if (file) else None
        )
        if rendered or attached:
            return [Outgoing(rendered or "", buttons=tuple(rows), file=attached)]
        return []

    def _question(self, s: Scenario, question_id: str, values: dict[str, str]) -> Outgoing:
        """A question a step asks: its answer is recorded and scored by the engine."""
        question = s.questions[question_id]
        buttons, contact_request = question_markup(question_id, question)
        return Outgoing(
            render(question.text, values), buttons=buttons, contact_request=contact_request
        )

    async def _mark_sent(
        self,
        uow: UnitOfWork,
        s: Scenario,
        row: OutboxRow,
        lead: Lead | None,
        item: Prepared,
        now: datetime,
    ) -> None:
        row.status, row.sent_at, row.lease_until = "sent", now, None
        if lead is None:
            return
        details = item.details
        if item.kind in (CARD, MANAGERS_POST):
            if item.reference is not None:
                kind = "card" if item.kind == CARD else details["purpose"]
                await remember_message(uow, item.channel, item.reference, lead.id, kind, now)
            return
        if item.kind == CRM_EXPORT:
            uow.events.add(
                lead.id,
                "crm_exported",
                now=now,
                payload={"target": details["target"], "id": item.reference},
            )
            return
        if item.kind in (RELAY, referrals.REWARD):
            return
        if "broadcast" in details:
            uow.events.add(
                lead.id,
                "broadcast_sent",
                now=now,
                channel=item.channel,
                payload={"broadcast": details["broadcast"]},
            )
            return
        uow.events.add(
            lead.id,
            "step_sent",
            now=now,
            channel=item.channel,
            payload={k: details[k] for k in ("sequence", "step", "variant")},
        )
        if details.get("ask") and lead.awaiting is None:  # never cut into an offer's questions
            lead.awaiting = {
                "question": details["ask"],
                "sequence": details["sequence"],
                "step": details["step"],
            }
        run = await uow.sequences.get(lead.id, details["sequence"])
        if run is not None and run.status == "active":
            await sequences.queue_next(uow, s, lead, run, row.payload, now, now)

    async def _apply_skip(
        self,
        uow: UnitOfWork,
        s: Scenario,
        row: OutboxRow,
        lead: Lead | None,
        skip: Skip,
        now: datetime,
    ) -> None:
        row.lease_until, row.leased_by, row.last_error = None, None, skip.reason[:500]
        status = skip.status
        if status == "retry":
            status = "failed" if row.attempts >= MAX_ATTEMPTS else "pending"
            row.due_at = now + timedelta(seconds=backoff(row.attempts))
        elif status == "pending":
            # Quiet hours, pacing and a platform's retry-after are no failure of the row:
            # they do not count towards MAX_ATTEMPTS.
            row.due_at = skip.due or now
            row.attempts = max(row.attempts - 1, 0)
        row.status = status
        if status in ("failed", "cancelled", "skipped"):
            log.info("outbox row %s %s: %s", row.id, status, skip.reason)
        if (
            lead is None
            or row.kind != sequences.STEP
            or status not in ("cancelled", "skipped", "failed")
        ):
            return
        run = await uow.sequences.get(lead.id, row.payload["sequence"])
        if run is None or run.status != "active":
            return
        if skip.queue_next:
            await sequences.queue_next(uow, s, lead, run, row.payload, now, now)
        else:
            # Nothing more can come of this chain (no consent, blocked, failed): end it, so it
            # is not left "active" with nothing queued.
            run.status, run.stopped_at, run.stop_reason = "stopped", now, skip.reason[:128]


def _minutes(waited: timedelta) -> str:
    minutes = int(waited.total_seconds() // 60)
    return f"{minutes // 60} ч {minutes % 60} мин" if minutes >= 60 else f"{minutes} мин"


def _no_value(name: str) -> str:
    if name == REFERRAL_LINK:
        return "placeholder {referral_link} has no value: the scenario has no referral:"
    return f"placeholder {{{name}}} has no value"
