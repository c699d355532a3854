"""Making a claimed batch ready to send, in one transaction and a handful of statements: the
batch's leads (locked, in id order), their latest accounts, advertising consents, chains,
handoffs, answers, (for steps with `if:`) facts and (with `settings.ad_limit`) the advertising
they had lately are read once for the whole batch, then each row is decided and rendered in
memory.

What is still a statement per row is what writes per lead and is rare: issuing a promo code
a text shows, a referral code, a reward, a lead card or a CRM export's facts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update

from bot import broadcasts, promos, reactions, referrals, sequences
from bot.answers import question_markup
from bot.consent import MARKETING
from bot.delivery.ad_limit import AdLog, load_ad_log
from bot.delivery.outcomes import ADVERTISING, Prepared, Skip, advertises
from bot.handoff import MANAGERS_POST, RELAY
from bot.lead_card import crm_lead, render_card
from bot.messages import SIZES, Button, FileRef, Outgoing, fitted_all
from bot.referrals import REFERRAL_LINK
from bot.render import render
from bot.rule_facts import LeadFacts, Reads, load_facts_many, reads
from bot.rules import evaluate
from bot.scenario.checks import placeholders
from bot.scenario.loader import LoadedScenario
from bot.scenario.model import Scenario, StepButton
from bot.scoring import CARD, CRM_EXPORT
from bot.timing import in_quiet_hours, out_of_quiet_hours, zone_of
from bot.tracking import link_tokens, with_link_tokens
from storage.models import Answer, Handoff, Lead, OutboxRow
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

MANAGERS_CHAT_KEY = "managers"  # the pacer's key of a managers' chat (a group)
# While a manager holds a lead its warm-up waits; the row looks again this much later.
PAUSE_RECHECK = timedelta(minutes=15)


# What a batch reads of a lead, as plain rows (a batch is read once and not changed through
# them; the rare rows that write to a lead load it as an object).
LEAD_FIELDS = (
    Lead.id,
    Lead.first_name,
    Lead.timezone,
    Lead.score,
    Lead.stage,
    Lead.funnel_stage,
    Lead.source,
    Lead.erased_at,
    Lead.unsubscribed_at,
    Lead.unreachable_at,
)


@dataclass
class Batch:
    """What the rows of one claimed batch need to know, read in one go."""

    leads: dict[int, Row[Any]]
    identities: dict[int, Row[Any]]
    consenting: set[int]
    runs: dict[tuple[int, str], Row[Any]]
    handoffs: dict[int, Handoff]
    answers: dict[int, dict[str, str]]
    facts: dict[int, LeadFacts] = field(default_factory=dict)
    ads: AdLog | None = None  # with `settings.ad_limit`: the advertising each lead had
    # (sequence, step) -> the winner of its A/B test, for the batch's steps with variants.
    decisions: dict[tuple[str, str], str] = field(default_factory=dict)


async def lock_leads(
    uow: UnitOfWork, lead_ids: Sequence[int], fields: Sequence[Any] = LEAD_FIELDS
) -> dict[int, Row[Any]]:
    """The leads (those `fields` of them), locked in id order: the engine's order (a lead, then
    its rows), so a worker and the engine never deadlock."""
    if not lead_ids:
        return {}
    query = select(*fields).where(Lead.id.in_(sorted(set(lead_ids)))).order_by(Lead.id)
    return {lead.id: lead for lead in await uow.session.execute(query.with_for_update())}


async def load_batch(
    uow: UnitOfWork, s: Scenario, rows: Sequence[Prepared], now: datetime
) -> Batch:
    lead_ids = sorted({item.lead_id for item in rows if item.lead_id})
    leads = await lock_leads(uow, lead_ids)
    messaging = [i.lead_id for i in rows if i.kind not in (CARD, MANAGERS_POST, CRM_EXPORT)]
    advertising = [i.lead_id for i in rows if i.kind in ADVERTISING]
    steps = [i for i in rows if i.kind == sequences.STEP]
    handoff_leads = [i.lead_id for i in rows if i.kind == CARD]
    if steps and s.handoff.pause_sequences:
        handoff_leads += [i.lead_id for i in steps]
    batch = Batch(
        leads=leads,
        identities=await uow.leads.latest_identities(messaging) if messaging else {},
        consenting=(
            await uow.leads.with_active_consent(advertising, MARKETING) if advertising else set()
        ),
        runs=await sequences.load_runs(uow, [i.lead_id for i in steps]) if steps else {},
        handoffs=await _handoffs(uow, handoff_leads) if handoff_leads else {},
        answers=await _names(uow, s, advertising) if advertising else {},
    )
    conditional = {i.lead_id: sequences.step_of(s, i.payload) for i in steps}
    needs = Reads()
    for step in conditional.values():
        if step is not None and step.if_ is not None:
            needs |= reads(step.if_)
    needing = [
        leads[lead_id]
        for lead_id, step in conditional.items()
        if step is not None and step.if_ is not None and lead_id in leads
    ]
    if needing:
        batch.facts = await load_facts_many(
            uow, needing, needs, now=now, rfm_limits=s.settings.rfm
        )
    batch.decisions = await sequences.decided(uow, s, [i.payload for i in steps])
    return batch


async def _handoffs(uow: UnitOfWork, lead_ids: Sequence[int]) -> dict[int, Handoff]:
    query = select(Handoff).where(Handoff.lead_id.in_(lead_ids))
    return {h.lead_id: h for h in (await uow.session.execute(query)).scalars()}


async def _names(
    uow: UnitOfWork, s: Scenario, lead_ids: Sequence[int]
) -> dict[int, dict[str, str]]:
    """The answers `{name}` shows: those to the scenario's `name` questions."""
    questions = [q for q, question in s.questions.items() if question.type == "name"]
    if not questions:
        return {}
    query = select(Answer.lead_id, Answer.question, Answer.value).where(
        Answer.lead_id.in_(lead_ids), Answer.question.in_(questions)
    )
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for lead_id, question, value in await uow.session.execute(query):
        found[lead_id][question] = value
    return found


class Preparer:
    """Decides and renders the rows of a batch (see the module docstring)."""

    def __init__(self, loaded: LoadedScenario, funnel: Any, now: datetime) -> None:
        self.loaded = loaded
        self.s = loaded.scenario
        self.funnel = funnel  # the engine: its link base and referral links
        self.now = now

    async def prepare(
        self, uow: UnitOfWork, rows: Sequence[Prepared]
    ) -> tuple[list[Prepared], list[tuple[Prepared, Skip]], Batch]:
        """The rows ready to send, those decided otherwise, and what was read for them."""
        batch = await load_batch(uow, self.s, rows, self.now)
        batch.ads = await load_ad_log(uow, self.s, rows, self.now)
        ready: list[Prepared] = []
        skipped: list[tuple[Prepared, Skip]] = []
        for item in rows:
            lead = batch.leads.get(item.lead_id)
            try:
                if lead is None and not (item.kind == MANAGERS_POST and not item.lead_id):
                    raise Skip("cancelled", "lead gone")
                await self._prepare(uow, batch, item, lead)
                if batch.ads is not None and advertises(item):
                    batch.ads.count(lead.id, self.now)
                ready.append(item)
            except Skip as skip:
                skipped.append((item, skip))
            except Exception as exc:  # one bad row must not hold back the batch
                log.exception("preparing outbox row %s failed", item.row_id)
                skipped.append((item, Skip("retry", repr(exc)[:500])))
        await self._track(uow, ready)
        for item in ready:
            # A text that grew past the messenger's limit goes as several messages, each
            # its own part of the row (recorded as it goes out, keyed for VK's random_id).
            item.messages = fitted_all(item.messages, SIZES.get(item.channel))
        return ready, skipped, batch

    async def _prepare(
        self, uow: UnitOfWork, batch: Batch, item: Prepared, lead: Row[Any] | None
    ) -> None:
        if lead is None:  # a managers' post about no lead (an A/B test decided)
            await self._post(uow, batch, item, None)
        elif item.kind == sequences.STEP:
            self._step(batch, item, lead)
            await self._fill(uow, batch, item, lead)
        elif item.kind == broadcasts.BROADCAST:
            self._broadcast(batch, item, lead)
            await self._fill(uow, batch, item, lead)
        elif item.kind in (CARD, MANAGERS_POST):
            await self._post(uow, batch, item, lead)
        elif item.kind == RELAY:
            self._relay(batch, item, lead)
        elif item.kind == referrals.REWARD:
            await self._reward(uow, batch, item, lead)
        elif item.kind == CRM_EXPORT:
            if lead.erased_at:
                raise Skip("cancelled", "the lead was erased")
            item.details = {
                "target": item.payload["target"],
                "lead": await crm_lead(uow, self.s, await _writable(uow, lead.id)),
            }
        else:
            raise Skip("failed", f"unknown outbox kind {item.kind!r}")

    # ---- advertising ----

    def _step(self, batch: Batch, item: Prepared, lead: Row[Any]) -> None:
        s, payload = self.s, item.payload
        sequence = s.sequences.get(payload["sequence"])
        run = batch.runs.get((lead.id, payload["sequence"]))
        if sequence is None or run is None or not sequences.current(run, payload):
            raise Skip("cancelled", "chain stopped or removed")
        step = sequences.step_of(s, payload)
        if step is None:
            raise Skip("cancelled", "step removed from the scenario", queue_next=True)
        # A reminder of a booking goes at its time: the person chose the hour.
        quiet = step.before is None
        if step.service:
            self._service_allowed(lead, quiet=quiet)
        else:
            self._advertising_allowed(
                batch, lead, service_follows=sequences.service_follows(s, payload), quiet=quiet
            )
        if s.handoff.pause_sequences:
            handoff = batch.handoffs.get(lead.id)
            if handoff is not None and handoff.status == "claimed":
                raise Skip("pending", "a manager holds the lead", due=self.now + PAUSE_RECHECK)
        if step.if_ is not None and not evaluate(step.if_, batch.facts[lead.id]):
            raise Skip("skipped", "if: false", queue_next=True)
        if not step.service:  # after `if:`: a step not sent is not held back
            self._within_ad_limit(batch, lead)
        # A row a part of which went out already keeps the variant it started with.
        winner = batch.decisions.get((payload["sequence"], step.id))
        variant = sequences.variant_of(
            lead.id, payload["sequence"], step, winner if item.parts_sent == 0 else None
        )
        text = sequences.step_text(step, variant)
        question = s.questions[step.ask].text if step.ask else None
        item.details = {
            "sequence": payload["sequence"],
            "step": step.id,
            "variant": variant,
            "ask": step.ask,
            # rendered by _fill, once the values are known
            "texts": [text, question],
            "buttons": step.buttons,
            "file": step.file,
            "promo": step.promo,
            "queue_next": True,
            "service": step.service,
        }
        self._address(batch, item, lead)

    def _broadcast(self, batch: Batch, item: Prepared, lead: Row[Any]) -> None:
        broadcast_id = item.payload["broadcast"]
        defined = self.s.broadcasts.get(broadcast_id)
        text = item.payload.get("text") or (defined.text if defined else None)
        if text is None:
            raise Skip("cancelled", "broadcast removed from the scenario")
        self._advertising_allowed(batch, lead)
        self._within_ad_limit(batch, lead)
        item.details = {
            "broadcast": broadcast_id,
            "texts": [text],
            "buttons": defined.buttons if defined else [],
            "file": defined.file if defined else None,
            "promo": None,
            "queue_next": False,
        }
        self._address(batch, item, lead)

    def _advertising_allowed(
        self, batch: Batch, lead: Row[Any], *, service_follows: bool = False, quiet: bool = True
    ) -> None:
        """Checked when the row is prepared, and the flags again right before it is sent.
        Without consent the chain ends here, unless a `service:` step comes later in it."""
        if lead.erased_at or lead.unsubscribed_at or lead.unreachable_at:
            raise Skip("cancelled", "unsubscribed, blocked or erased")
        if lead.id not in batch.consenting:
            if service_follows:
                raise Skip("skipped", "no advertising consent", queue_next=True)
            raise Skip("cancelled", "no advertising consent")
        if quiet:
            self._outside_quiet_hours(lead)

    def _service_allowed(self, lead: Row[Any], *, quiet: bool = True) -> None:
        """A `service:` step: only a block or an erasure stops it (and quiet hours wait)."""
        if lead.erased_at or lead.unreachable_at:
            raise Skip("cancelled", "blocked or erased")
        if quiet:
            self._outside_quiet_hours(lead)

    def _outside_quiet_hours(self, lead: Row[Any]) -> None:
        settings = self.s.settings
        zone = zone_of(lead.timezone, settings.timezone)
        if in_quiet_hours(self.now, zone, settings.quiet_hours):
            raise Skip(
                "pending",
                "quiet hours",
                due=out_of_quiet_hours(self.now, zone, settings.quiet_hours),
            )

    def _within_ad_limit(self, batch: Batch, lead: Row[Any]) -> None:
        """`settings.ad_limit` (bot/delivery/ad_limit.py): over it, the message waits."""
        if batch.ads is not None:
            batch.ads.check(lead.id, lead.timezone, self.s.settings, self.now)

    async def _fill(self, uow: UnitOfWork, batch: Batch, item: Prepared, lead: Row[Any]) -> None:
        """Render the texts: the placeholders' values, and the codes they show (issued here,
        exactly those shown plus the step's `promo:`). A placeholder nothing can fill skips the
        message before any code is issued for it."""
        details = item.details
        texts: list[str | None] = details.pop("texts")
        queue_next = details.pop("queue_next")
        values = self.s.placeholder_values(
            lead.first_name, self.s.name_answer(batch.answers.get(lead.id, {}))
        )
        shown = {name for text in texts for name in placeholders(text or "")}
        if REFERRAL_LINK in shown and self.s.referral is not None:
            code = await referrals.code_of(uow, await _writable(uow, lead.id))
            values[REFERRAL_LINK] = self.funnel.referral_links.link(item.channel, code)
        for name in shown:
            parts = name.split(".")
            known_promo = parts[0] == "promo" and (
                len(parts) == 2 or (len(parts) == 3 and parts[2] == "expires")
            )
            if name not in values and not (known_promo and parts[1] in self.s.promos):
                raise Skip("skipped", _no_value(name), queue_next=queue_next)
        promo = details.pop("promo")
        if promo or any(name.split(".")[0] == "promo" for name in shown):
            try:
                values |= await promos.promo_values(
                    uow, self.s, await _writable(uow, lead.id), texts, self.now, also=[promo]
                )
            except promos.NoCode as ended:
                raise Skip("skipped", str(ended), queue_next=queue_next) from None
        text, question = texts[0], texts[1] if len(texts) > 1 else None
        item.messages = self._messages(
            text, details.pop("buttons"), details.pop("file"), values, queue_next=queue_next
        )
        if question is not None and details.get("ask"):
            item.messages.append(self._question(details["ask"], values))

    def _messages(
        self,
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
                rows.append((Button(button.text, action=button.action),))
        try:
            rendered = render(text, values) if text else None
        except KeyError as missing:  # `_fill` checked the names: this is a bug
            raise Skip("skipped", _no_value(str(missing.args[0])), queue_next=queue_next) from None
        attached = FileRef(path=str(self.loaded.file_path(file).resolve())) if file else None
        if rendered or attached:
            return [Outgoing(rendered or "", buttons=tuple(rows), file=attached)]
        return []

    def _question(self, question_id: str, values: dict[str, str]) -> Outgoing:
        """A question a step asks: its answer is recorded and scored by the engine."""
        question = self.s.questions[question_id]
        buttons, contact_request = question_markup(question_id, question)
        return Outgoing(
            render(question.text, values), buttons=buttons, contact_request=contact_request
        )

    # ---- not advertising ----

    async def _post(
        self, uow: UnitOfWork, batch: Batch, item: Prepared, lead: Row[Any] | None
    ) -> None:
        """A lead card (first post, reminder, escalation) or a post about a lead (or none)."""
        purpose = item.payload.get("purpose", "card")
        if item.kind == MANAGERS_POST:
            item.post = (item.payload["text"], ())
        else:
            assert lead is not None  # only a managers' post may be about no lead
            handoff = batch.handoffs.get(lead.id)
            if handoff is None:
                raise Skip("cancelled", "the lead was never handed over")
            if purpose != "card" and handoff.status != "open":
                raise Skip("cancelled", "claimed before the reminder was due")
            waited = _minutes(self.now - handoff.qualified_at)
            headline = {
                "reminder": f"⏰ Лида никто не взял уже {waited}",
                "escalation": f"🚨 Эскалация: лид ждёт менеджера {waited}",
            }.get(purpose, "")
            writable = await _writable(uow, lead.id)
            item.post = await render_card(uow, self.s, writable, handoff, headline=headline)
        item.external_id = MANAGERS_CHAT_KEY
        item.details = {"purpose": purpose}

    async def _reward(self, uow: UnitOfWork, batch: Batch, item: Prepared, lead: Row[Any]) -> None:
        """A referrer's reward for a friend who counted: granted here, under the referrer's
        lock, once (the text is kept in the row for a retry of the send), then sent like a
        manager's answer. A referrer who blocked the bot keeps the code for /promo."""
        if "text" not in item.payload:
            # A savepoint: a failure half-way leaves no half-granted reward behind.
            async with uow.session.begin_nested():
                referrer = await _writable(uow, lead.id)
                friend = item.payload["friend"]
                reward = await referrals.grant(uow, self.s, referrer, friend, self.now)
                if reward is not None:
                    await reactions.react_and_record(
                        uow, self.s, referrer, self.now, reward.events, reward.reached
                    )
                item.payload = {**item.payload, "text": reward.text if reward else None}
                await uow.session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == item.row_id)
                    .values(payload=item.payload)
                )
        if item.payload["text"] is None:
            raise Skip("skipped", "no reward code: void, max_rewards reached or no reward_promo")
        self._relay(batch, item, lead)

    def _relay(self, batch: Batch, item: Prepared, lead: Row[Any]) -> None:
        """A manager's answer or a referral thank-you: not advertising, so no consent or
        quiet hours apply, but a lead who blocked the bot or was erased gets nothing."""
        if lead.erased_at or lead.unreachable_at:
            raise Skip("cancelled", "the lead blocked the bot or was erased")
        item.messages = [Outgoing(item.payload["text"])]
        self._address(batch, item, lead)

    def _address(self, batch: Batch, item: Prepared, lead: Row[Any]) -> None:
        """To the messenger the lead used last."""
        identity = batch.identities.get(lead.id)
        if identity is None:
            raise Skip("cancelled", "no messenger account")
        item.channel, item.external_id = identity.channel, identity.external_id
        item.last_message_at = identity.last_seen_at

    async def _track(self, uow: UnitOfWork, ready: list[Prepared]) -> None:
        """URL buttons go through `/r/<token>`: the tokens of the whole batch in one read."""
        base = self.funnel.link_base
        if not base:
            return
        wanted = {
            (item.lead_id, button.url, button.event or "")
            for item in ready
            for message in item.messages
            for row in message.buttons
            for button in row
            if button.url
        }
        if not wanted:
            return
        tokens = await link_tokens(uow, wanted, self.now)
        for item in ready:
            item.messages = with_link_tokens(item.messages, item.lead_id, tokens, base)


async def _writable(uow: UnitOfWork, lead_id: int) -> Lead:
    """The lead as an object, for what writes to it (a code, a reward): already locked."""
    lead = await uow.session.get(Lead, lead_id)
    assert lead is not None  # locked by this transaction: it cannot have gone
    return lead


def _minutes(waited: timedelta) -> str:
    minutes = int(waited.total_seconds() // 60)
    return f"{minutes // 60} ч {minutes % 60} мин" if minutes >= 60 else f"{minutes} мин"


def _no_value(name: str) -> str:
    if name == REFERRAL_LINK:
        return "placeholder {referral_link} has no value: the scenario has no referral:"
    return f"placeholder {{{name}}} has no value"
