"""The managers' side of a handoff: claim, not a fit, won (with the amount), lost (with the
reason), replies relayed to the prospect, posts about a lead, and reminders for cards nobody
claimed. Channel-neutral: a `ManagersChat` per channel does the posting and editing."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, update

from bot import reactions, stages
from bot.analytics.managers_stats import StatsAnswer, managers_figures, stats_answer
from bot.answers import InvalidAnswer, normalize_email, normalize_phone
from bot.booking import day_text
from bot.clock import Clock
from bot.lead_card import Rows, render_card
from bot.scenario.active import ActiveScenario
from bot.scenario.model import Scenario
from bot.scoring import queue_cards
from bot.transport import ManagersChat
from storage.claims import singleton_lock
from storage.database import Database
from storage.models import Handoff, Lead, ManagerMessage
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

MANAGERS_POST = "managers_post"  # outbox kinds: a post about a lead in the managers' chat
RELAY = "manager_reply"  # ... and a manager's answer on its way to the prospect
CARD_ACTION = re.compile(r"^h:(claim|nofit|won|lost):(\d{1,18})$")


@dataclass(frozen=True)
class Manager:
    """Who pressed or wrote, in the managers' chat of `channel`."""

    channel: str
    user_id: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.user_id}"


async def post_about_lead(
    uow: UnitOfWork,
    lead_id: int | None,
    text: str,
    *,
    purpose: str,
    key: str,
    managers: tuple[str, ...],
    now: datetime,
) -> None:
    """Queue a post in every managers' chat; a manager's reply to it reaches the lead. With
    no lead (an A/B test decided), the post is about none and no reply goes anywhere."""
    for channel in managers:
        await uow.outbox.enqueue(
            idempotency_key=f"{key}:{channel}",
            channel=channel,
            kind=MANAGERS_POST,
            due_at=now,
            now=now,
            lead_id=lead_id,
            payload={"purpose": purpose, "text": text[:4000]},
        )


def parse_amount(text: str) -> Decimal | None:
    """ "150 000", "150000.50", "150 000 ₽" -> the amount; None when it is not a number."""
    cleaned = re.sub(r"[\s ₽руб.]+$", "", text.strip().lower()).replace(" ", "")
    cleaned = cleaned.replace(" ", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value >= Decimal("1e12"):
        return None
    value = value.quantize(Decimal("0.01")).normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral() else value  # no 2.5E+5


class ManagerDesk:
    """What managers do with leads. One transaction per press or reply; the cards are edited
    after the commit, so a card never shows a state that was rolled back."""

    def __init__(
        self,
        db: Database,
        scenarios: ActiveScenario,
        clock: Clock,
        chats: Mapping[str, ManagersChat],
    ) -> None:
        self.db = db
        self.scenarios = scenarios
        self.clock = clock
        self.chats = chats

    # ---- buttons on a card ----

    async def press(self, manager: Manager, action: str) -> str:
        """Apply a card button; the answer is the short text the manager sees."""
        matched = CARD_ACTION.match(action)
        if matched is None:
            return "Эта кнопка устарела."
        verb, lead_id = matched.group(1), int(matched.group(2))
        s = self.scenarios.current.scenario
        now = self.clock.now()
        prompt: str | None = None
        async with self.db.unit_of_work() as uow:
            lead = await uow.leads.get(lead_id, lock=True)
            handoff = await _handoff(uow, lead_id)
            if lead is None or handoff is None:
                return f"Лид #{lead_id} не найден."
            holder = handoff.manager_id
            if handoff.status in ("won", "lost", "not_fit"):
                answer = f"Лид #{lead_id} уже закрыт."
            elif verb == "claim":
                if handoff.status == "claimed":
                    answer = (
                        "Вы уже взяли этого лида."
                        if holder == manager.key
                        else f"Лида уже взял {handoff.manager_name}."
                    )
                else:
                    await self._claim(uow, s, lead, handoff, manager, now)
                    answer = f"Лид #{lead_id} ваш."
            elif handoff.status == "claimed" and holder != manager.key:
                answer = f"Лидом занимается {handoff.manager_name}."
            elif verb == "nofit":
                await self._close(uow, s, lead, handoff, manager, "not_fit", now, reason=None)
                answer = f"Лид #{lead_id}: не наш клиент."
            elif handoff.status != "claimed":
                answer = "Сначала возьмите лида кнопкой «Взял»."
            elif verb == "won":
                prompt = "amount"
                answer = "Ответьте на сообщение в чате суммой сделки."
            else:
                prompt = "reason"
                answer = "Ответьте на сообщение в чате причиной отказа."
            await uow.commit()
        if prompt is not None:
            await self._ask(manager.channel, lead_id, prompt)
        await self.refresh_cards(lead_id)
        return answer

    async def _claim(
        self,
        uow: UnitOfWork,
        s: Scenario,
        lead: Lead,
        handoff: Handoff,
        manager: Manager,
        now: datetime,
    ) -> None:
        # A conditional update, so two presses at once cannot both win on any database.
        result = await uow.session.execute(
            update(Handoff)
            .where(Handoff.lead_id == lead.id, Handoff.status == "open")
            .values(
                status="claimed",
                manager_id=manager.key,
                manager_name=manager.name[:128],
                claimed_at=now,
            )
            .execution_options(synchronize_session="fetch")
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return
        uow.events.add(lead.id, "claimed", now=now, payload={"manager": manager.name[:128]})
        reached = set()
        if stages.advance(
            lead,
            "handed_off",
            reason=f"claimed by {manager.name}"[:128],
            now=now,
            events=uow.events,
        ):
            reached.add("handed_off")
        await reactions.react_and_record(uow, s, lead, now, [("claimed", {})], reached)

    async def _close(
        self,
        uow: UnitOfWork,
        s: Scenario,
        lead: Lead,
        handoff: Handoff,
        manager: Manager,
        status: str,
        now: datetime,
        *,
        reason: str | None,
        amount: Decimal | None = None,
    ) -> None:
        handoff.status, handoff.closed_at = status, now
        handoff.manager_id = handoff.manager_id or manager.key
        handoff.manager_name = handoff.manager_name or manager.name[:128]
        handoff.reason = reason
        recorded: list[tuple[str, dict[str, object]]] = []
        reached: set[str] = set()
        if status == "won":
            handoff.amount = f"{amount}" if amount is not None else None
            details = {"amount": float(amount) if amount is not None else 0.0, "by": "manager"}
            uow.events.add(lead.id, "purchase", now=now, payload=details)
            recorded.append(("purchase", details))
            if stages.advance(lead, "customer", reason="deal won", now=now, events=uow.events):
                reached.add("customer")
        else:
            name = "lost" if status == "lost" else "not_fit"
            uow.events.add(lead.id, name, now=now, payload={"reason": (reason or "")[:500]})
            recorded.append((name, {}))
            why = f"{name}: {reason}" if reason else name
            if stages.set_side_stage(lead, "lost", reason=why[:128], now=now, events=uow.events):
                reached.add("lost")
        await reactions.react_and_record(uow, s, lead, now, recorded, reached)

    async def _ask(self, channel: str, lead_id: int, prompt: str) -> None:
        text = (
            f"💰 Сумма сделки по лиду #{lead_id}? Ответьте на это сообщение числом, "
            "например 150000."
            if prompt == "amount"
            else f"❓ Почему лид #{lead_id} отказался? Ответьте на это сообщение."
        )
        chat = self.chats.get(channel)
        if chat is None:
            return
        reference = await chat.post_to_managers(text, expect_reply=True)
        if reference is not None:
            await self.remember(channel, reference, lead_id, prompt)

    async def remember(self, channel: str, reference: str, lead_id: int, kind: str) -> None:
        async with self.db.unit_of_work() as uow:
            await remember_message(uow, channel, reference, lead_id, kind, self.clock.now())
            await uow.commit()

    # ---- replies in the managers' chat ----

    async def reply(
        self, manager: Manager, replied_to: str, message_ref: str, text: str
    ) -> str | None:
        """A manager answered one of our posts: an amount, a reason, or words for the lead.
        The answer is what the chat should be told; None when the post is not ours."""
        s = self.scenarios.current.scenario
        now = self.clock.now()
        async with self.db.unit_of_work() as uow:
            post = await _message(uow, manager.channel, replied_to)
            if post is None:
                return None
            lead_id, deal = post.lead_id, post.kind in ("amount", "reason")
            lead = await uow.leads.get(lead_id, lock=True)
            handoff = await _handoff(uow, lead_id)
            if lead is None:
                return None
            if deal:
                answer = await self._finish_deal(uow, s, lead, handoff, manager, post.kind, text)
            else:
                answer = await self._relay(uow, lead, manager, message_ref, text, now)
            await uow.commit()
        if deal:
            await self.refresh_cards(lead_id)
        return answer

    async def _finish_deal(
        self,
        uow: UnitOfWork,
        s: Scenario,
        lead: Lead,
        handoff: Handoff | None,
        manager: Manager,
        kind: str,
        text: str,
    ) -> str:
        now = self.clock.now()
        if handoff is None or handoff.status != "claimed":
            return f"Лид #{lead.id} уже не в работе."
        if handoff.manager_id != manager.key:
            return f"Лидом занимается {handoff.manager_name}."
        if kind == "amount":
            amount = parse_amount(text)
            if amount is None:
                return "Не понял сумму. Ответьте на вопрос числом, например 150000."
            await self._close(
                uow, s, lead, handoff, manager, "won", now, reason=None, amount=amount
            )
            return f"✅ Лид #{lead.id}: сделка на {amount}."
        reason = " ".join(text.split())[:500] or "без причины"
        await self._close(uow, s, lead, handoff, manager, "lost", now, reason=reason)
        return f"Лид #{lead.id} закрыт: {reason}."

    async def _relay(
        self,
        uow: UnitOfWork,
        lead: Lead,
        manager: Manager,
        message_ref: str,
        text: str,
        now: datetime,
    ) -> str | None:
        if lead.erased_at is not None:
            return f"Лид #{lead.id} удалил свои данные: ответ не отправлен."
        if lead.unreachable_at is not None:
            return f"Лид #{lead.id} заблокировал бота: ответ не отправлен."
        identity = await uow.leads.latest_identity(lead.id)
        if identity is None:
            return f"У лида #{lead.id} нет аккаунта в мессенджере: ответ не отправлен."
        await uow.outbox.enqueue(
            # The manager's message id: a redelivered update cannot send the answer twice.
            idempotency_key=f"relay:{manager.channel}:{message_ref}",
            channel=identity.channel,
            kind=RELAY,
            due_at=now,
            now=now,
            lead_id=lead.id,
            payload={"text": text[:4000], "manager": manager.name[:128]},
        )
        uow.events.add(lead.id, "manager_replied", now=now, payload={"manager": manager.name})
        return None

    # ---- cards ----

    async def refresh_cards(self, lead_id: int) -> None:
        """Rewrite every posted card of the lead to show where the deal stands now."""
        s = self.scenarios.current.scenario
        async with self.db.unit_of_work() as uow:
            lead = await uow.leads.get(lead_id)
            if lead is None:
                return
            handoff = await _handoff(uow, lead_id)
            text, buttons = await render_card(uow, s, lead, handoff)
            query = select(ManagerMessage.channel, ManagerMessage.message_ref).where(
                ManagerMessage.lead_id == lead_id, ManagerMessage.kind == "card"
            )
            cards = (await uow.session.execute(query)).all()
        for channel, reference in cards:
            chat = self.chats.get(channel)
            if chat is None:
                continue
            try:
                await chat.edit_in_managers(reference, text, buttons)
            except Exception:  # an old card that cannot be edited must not stop the others
                log.exception("could not update card %s of lead %s", reference, lead_id)

    async def card_for(self, query: str, *, phone_region: str) -> tuple[int, str, Rows] | None:
        """`/lead <id|phone|email>`: the lead's number and card, or None when nobody matches."""
        s = self.scenarios.current.scenario
        async with self.db.unit_of_work() as uow:
            lead = await find_lead(uow, query, phone_region)
            if lead is None:
                return None
            text, buttons = await render_card(uow, s, lead, await _handoff(uow, lead.id))
            return lead.id, text, buttons

    async def today(self) -> str:
        """`/today`: the day's bookings, by time, with whom and how to reach them."""
        async with self.db.unit_of_work() as uow:
            return await day_text(uow, self.scenarios.current.scenario, self.clock.now())

    async def stats(self) -> StatsAnswer:
        """`/stats`: the funnel today, for 7 and for 30 days, by stage and source, and the
        30 days' funnel as a picture with its key figures. Read in a short read-only
        transaction; the picture is drawn after it, in a thread."""
        async with self.db.reading() as session:
            s = self.scenarios.current.scenario
            figures = await managers_figures(session, s, now=self.clock.now())
        return await stats_answer(figures)


async def find_lead(uow: UnitOfWork, query: str, phone_region: str) -> Lead | None:
    """`/lead`: a lead by its number (`12`, `#12`), phone (any common spelling) or e-mail."""
    query = query.strip()
    number = query.lstrip("#")
    if number.isascii() and number.isdigit() and len(number) <= 9:  # not "²": int() refuses it
        return await uow.leads.get(int(number))
    kind = "email" if "@" in query else "phone"
    return await lead_by_contact(uow, kind, query, phone_region)


async def lead_by_contact(uow: UnitOfWork, kind: str, text: str, phone_region: str) -> Lead | None:
    """The lead with this phone or e-mail as typed anywhere; None when it is not one."""
    try:
        value = normalize_email(text) if kind == "email" else normalize_phone(text, phone_region)
    except InvalidAnswer:
        return None
    ids = await uow.leads.find_by_contact(kind, value)
    return await uow.leads.get(ids[0]) if ids else None


async def remember_message(
    uow: UnitOfWork, channel: str, reference: str, lead_id: int, kind: str, now: datetime
) -> None:
    uow.session.add(
        ManagerMessage(
            channel=channel, message_ref=reference, lead_id=lead_id, kind=kind, created_at=now
        )
    )


async def _handoff(uow: UnitOfWork, lead_id: int) -> Handoff | None:
    return await uow.session.get(Handoff, lead_id, populate_existing=True)


async def _message(uow: UnitOfWork, channel: str, reference: str) -> ManagerMessage | None:
    query = select(ManagerMessage).where(
        ManagerMessage.channel == channel, ManagerMessage.message_ref == reference
    )
    return (await uow.session.execute(query)).scalar_one_or_none()


# ---- reminders ----


async def remind_unclaimed(
    db: Database, scenarios: ActiveScenario, clock: Clock, managers: tuple[str, ...]
) -> int:
    """The periodic job: re-announce cards nobody claimed after `remind_after`, escalate after
    `escalate_after`. Through the outbox, under a lock that one process holds at a time."""
    if not managers:
        return 0
    handoff_rules = scenarios.current.scenario.handoff
    now = clock.now()
    queued = 0
    async with db.unit_of_work() as uow:
        if not await singleton_lock(uow.session, "handoff-reminders"):
            return 0
        for purpose, after, column in (
            ("escalation", handoff_rules.escalate_after, Handoff.escalated_at),
            ("reminder", handoff_rules.remind_after, Handoff.reminded_at),
        ):
            due = (
                (
                    await uow.session.execute(
                        select(Handoff)
                        .where(
                            Handoff.status == "open",
                            Handoff.qualified_at <= now - after,
                            column.is_(None),
                        )
                        .order_by(Handoff.qualified_at)
                        .limit(500)
                    )
                )
                .scalars()
                .all()
            )
            for handoff in due:
                if purpose == "escalation":
                    handoff.escalated_at = now
                    handoff.reminded_at = handoff.reminded_at or now  # no reminder after it
                else:
                    handoff.reminded_at = now
                queued += await queue_cards(uow, handoff.lead_id, purpose, managers, now)
        await uow.commit()
    if queued:
        log.info("%d reminders about unclaimed leads queued", queued)
    return queued
