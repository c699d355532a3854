"""The funnel engine: one incoming event in, replies out, all state changed in one transaction."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

from sqlalchemy.exc import DBAPIError

from bot import merge, promos, reactions, referrals, scoring, sequences
from bot.clock import Clock
from bot.engine import stages
from bot.engine.answers import (
    InvalidAnswer,
    ParsedAnswer,
    choice_answer,
    normalize_phone,
    parse_answer,
)
from bot.engine.deeplink import parse_deep_link
from bot.engine.faq import match_faq
from bot.engine.messages import Button, FileRef, Incoming, Kind, Outgoing, Reply
from bot.engine.personal_data import personal_data_document
from bot.engine.render import render
from bot.handoff import post_about_lead
from bot.rules import times
from bot.scenario.active import ActiveScenario
from bot.scenario.checks import placeholders
from bot.scenario.loader import LoadedScenario
from bot.scenario.model import LinkButton, MenuButton, Offer, OfferButton, Question, Scenario
from bot.tracking import track_buttons
from storage.claims import is_write_conflict
from storage.database import Database
from storage.models import Answer, Event, Handoff, Identity, Lead
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

PERSONAL_DATA = "personal_data"
REFERRAL_LINK = "referral_link"
MARKETING = "marketing"
CONTACT_TYPES = ("phone", "email")
# A new identity racing with itself (two first messages at once) loses the unique-key race
# once, and the retry finds the lead the winner created; a PostgreSQL deadlock is retried too.
ATTEMPTS = 3


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
    ) -> None:
        self.db = db
        self.referral_links = referral_links or referrals.ReferralLinks()
        # Where a qualified lead and the questions the FAQ cannot answer go.
        self.routes = routes or scoring.Routes()
        self.link_base = link_base  # URL buttons go through <link_base>/r/<token> when set
        self.scenarios = scenarios
        self.clock = clock
        self.phone_region = phone_region
        self.max_input_length = max_input_length

    async def handle(self, incoming: Incoming) -> Reply:
        """Process one event. Never raises: a failure rolls back and answers with an apology."""
        loaded = self.scenarios.current
        lock_first: set[int] = set()
        try:
            for attempt in range(ATTEMPTS):
                try:
                    return await self._handle_once(incoming, loaded, lock_first)
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
        except Exception:
            log.exception(
                "failed to handle %s event of %s:%s",
                incoming.kind,
                incoming.channel,
                incoming.external_id,
            )
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
            turn = Turn(self, uow, loaded, lead, identity, incoming, new_lead=found is None)
            await turn.run()
            lead = turn.lead  # another lead, if a merge made this one part of it
            lead.updated_at = now
            if lead.erased_at is None:
                identity.last_seen_at = now
                if incoming.first_name and not lead.first_name:
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


class Turn:
    """One event of one lead: the state machine of the conversation."""

    def __init__(
        self,
        funnel: Funnel,
        uow: UnitOfWork,
        loaded: LoadedScenario,
        lead: Lead,
        identity: Identity,
        incoming: Incoming,
        *,
        new_lead: bool = False,
    ) -> None:
        self.funnel = funnel
        self.new_lead = new_lead  # this event created the lead: its very first message
        self.uow = uow
        self.loaded = loaded
        self.s: Scenario = loaded.scenario
        self.lead = lead
        self.identity = identity
        self.incoming = incoming
        self.now = funnel.clock.now()
        self.reply = Reply()
        self.name: str | None = None  # the answer to a `name` question, once known
        self.answers: dict[str, Answer] = {}
        self.reached: set[str] = set()  # stages first reached in this turn
        self.recorded: list[tuple[str, dict[str, Any]]] = []  # events of this turn
        # Replies that show codes or the referral link, with their text and values: the
        # codes are database writes, so they are filled at the end of the turn.
        self.with_promos: list[tuple[Outgoing, str, dict[str, str]]] = []

    # ---- dispatch ----

    async def run(self) -> None:
        await self.load_answers()
        if self.lead.unreachable_at is not None:  # they write again, so they unblocked us
            self.lead.unreachable_at = None
            stages.leave_side_stage(
                self.lead, "blocked", reason="wrote again", now=self.now, events=self.uow.events
            )
        await self.dispatch()
        if self.lead.erased_at is None:
            why = await scoring.qualify(self.uow, self.s, self.lead, self.now, self.funnel.routes)
            if why is not None:
                self.recorded.append(("qualified", {"rule": why}))
                self.reached.add("qualified")
            await reactions.react_and_record(
                self.uow,
                self.s,
                self.lead,
                self.now,
                self.recorded,
                self.reached,
                channel=self.incoming.channel,
            )
        if "contact" in self.reached:
            await self.announce_contact()
        await self.fill_promos()
        if self.lead.erased_at is None:
            self.reply.messages = await track_buttons(
                self.uow, self.lead.id, self.reply.messages, self.funnel.link_base, self.now
            )

    async def dispatch(self) -> None:
        kind = self.incoming.kind
        if kind is Kind.START:
            await self.on_start()
        elif kind is Kind.MENU:
            self.lead.awaiting = None
            await self.show_menu()
        elif kind is Kind.STOP:
            await self.on_stop()
        elif kind is Kind.BUTTON:
            await self.on_button(self.incoming.payload or "")
        elif kind is Kind.CONTACT:
            await self.on_contact()
        elif kind is Kind.TEXT:
            await self.on_text(self.incoming.text or "")
        elif kind is Kind.MY_DATA:
            document = await personal_data_document(self.uow, self.lead)
            self.say(self.s.messages.my_data, file=FileRef(data=document, filename="mydata.json"))
        elif kind is Kind.PROMO:
            await self.show_promos()
        elif kind is Kind.INVITE:
            await self.show_invite()
        elif kind is Kind.DELETE:
            self.lead.awaiting = {"confirm": "delete"}
            m = self.s.messages
            self.say(
                m.delete_confirm,
                buttons=[
                    [Button(m.delete_yes, action="del:y"), Button(m.delete_no, action="del:n")]
                ],
            )
        else:
            self.say(self.s.messages.not_text)
            await self.prompt_again()

    # ---- building blocks ----

    def say(self, text: str, *, buttons: list[list[Button]] | None = None, **kwargs: Any) -> None:
        rows = _rows(buttons or [])
        values = self.values()
        if promos.mentioned([text]) or REFERRAL_LINK in placeholders(text):
            message = Outgoing(text, buttons=rows, **kwargs)
            self.with_promos.append((message, text, values))
        else:
            message = Outgoing(render(text, values), buttons=rows, **kwargs)
        self.reply.say(message)

    async def fill_promos(self) -> None:
        """Issue the codes the replies show and put them in. A promo that gives no code
        (its `until` has passed, the lead had its codes) does not stop the reply (it may
        carry the magnet): `messages.promo_ended` or `promo_used_up` stands where the code
        would, and the log says why."""
        for message, text, values in self.with_promos:
            index = next(i for i, m in enumerate(self.reply.messages) if m is message)
            if REFERRAL_LINK in placeholders(text):
                values = values | {REFERRAL_LINK: await self.referral_link()}
            try:
                values = values | await promos.promo_values(
                    self.uow, self.s, self.lead, [text], self.now
                )
            except promos.NoCode as no_code:
                log.warning("reply to lead %s shows no code: %s", self.lead.id, no_code)
                m = self.s.messages
                ended = isinstance(no_code, promos.PromoEnded)
                instead = m.promo_ended if ended else m.promo_used_up
                values = values | {
                    name: instead for name in placeholders(text) if name.startswith("promo.")
                }
            self.reply.messages[index] = dataclasses.replace(message, text=render(text, values))
        self.with_promos = []

    def values(self) -> dict[str, str]:
        first_name = self.lead.first_name or self.incoming.first_name
        return self.s.placeholder_values(first_name, self.name)

    def record(self, name: str, **payload: Any) -> Event:
        self.recorded.append((name, payload))
        return self.uow.events.add(
            self.lead.id, name, now=self.now, channel=self.incoming.channel, payload=payload
        )

    async def score_event(self, name: str) -> None:
        await scoring.score_event(self.uow, self.s, self.lead, name)

    async def add_tag(self, tag: str) -> None:
        if await self.uow.leads.add_tag(self.lead.id, tag, now=self.now):
            self.lead.score += self.s.scoring.tags.get(tag, 0)

    def advance(self, stage: str, reason: str) -> None:
        if stages.advance(self.lead, stage, reason=reason, now=self.now, events=self.uow.events):
            self.reached.add(stage)

    def menu_buttons(self, buttons: list[MenuButton]) -> list[list[Button]]:
        rows = []
        for button in buttons:
            if isinstance(button, OfferButton):
                rows.append(
                    [Button(self.s.offers[button.offer].title, action=f"o:{button.offer}")]
                )
            elif isinstance(button, LinkButton):
                rows.append([Button(button.text, url=button.url)])
        return rows

    async def show_menu(self) -> None:
        self.say(self.s.start.text, buttons=self.menu_buttons(self.s.start.buttons))

    def back_to_menu(self) -> list[list[Button]]:
        return [[Button(self.s.messages.menu, action="menu")]]

    # ---- commands ----

    async def on_start(self) -> None:
        link = parse_deep_link(self.incoming.payload)
        details: dict[str, Any] = {}
        if self.incoming.payload:
            details["payload"] = self.incoming.payload[:64]
        if not link.valid:
            details["payload_invalid"] = True
        for key in ("source", "referral", "offer"):
            if getattr(link, key):
                details[key] = getattr(link, key)
        if link.source and self.lead.source is None:
            self.lead.source = link.source[:64]  # first touch wins; later ones stay in events
        self.record("start", **details)
        self.lead.awaiting = None
        if link.referral and self.new_lead:
            await self.join_by_referral(link.referral)
        if link.offer and link.offer in self.s.offers:
            await self.take_offer(link.offer, from_link=True)
        else:
            await self.show_menu()

    async def join_by_referral(self, code: str) -> None:
        """A new lead came by a friend's link: attribute it and give the welcome code."""
        referrer = await referrals.attribute(self.uow, self.s, self.lead, code, self.now)
        if referrer is None or self.s.referral is None:
            return
        self.record("referral_joined", referrer=referrer.id)
        promo_id = self.s.referral.invitee_promo
        if promo_id is None or promo_id not in self.s.promos:
            return
        try:
            issued = await promos.issue(self.uow, self.s, self.lead, promo_id, self.now)
        except promos.NoCode as no_code:
            log.warning("invited lead %s gets no welcome code: %s", self.lead.id, no_code)
            return
        welcome = render(self.s.messages.referral_welcome, promos.code_values(self.s, issued))
        self.reply.say(Outgoing(welcome))

    async def show_promos(self) -> None:
        """/promo: the lead's live codes with their expiry."""
        m = self.s.messages
        codes = await promos.live_codes(self.uow, self.s, self.lead, self.now)
        if not codes:
            self.say(m.promo_none, buttons=self.back_to_menu())
            return
        lines = [render(m.promo_list, self.values())]
        lines += [
            render(m.promo_line, {"code": c.code, "discount": c.discount, "until": c.until})
            for c in codes
        ]
        self.reply.say(Outgoing("\n".join(lines), buttons=_rows(self.back_to_menu())))

    async def show_invite(self) -> None:
        """/invite: the referral link and how many friends came; consent comes first, as
        the programme records who brought whom."""
        m = self.s.messages
        if self.s.referral is None:
            self.say(m.invite_off, buttons=self.back_to_menu())
            return
        if await self.uow.leads.active_consent(self.lead.id, PERSONAL_DATA) is None:
            self.ask_consent(None)
            return
        counts = await referrals.counts(self.uow, self.lead.id)
        values = self.values() | {
            REFERRAL_LINK: await self.referral_link(),
            "friends": str(counts.friends),
            "qualified": str(counts.qualified),
        }
        self.reply.say(Outgoing(render(m.invite, values), buttons=_rows(self.back_to_menu())))

    async def referral_link(self) -> str:
        code = await referrals.code_of(self.uow, self.lead)
        return self.funnel.referral_links.link(self.incoming.channel, code)

    async def on_stop(self) -> None:
        await self.uow.leads.withdraw_consent(self.lead.id, MARKETING, now=self.now)
        await sequences.stop_runs(self.uow, self.lead.id, self.now, "unsubscribed")
        if self.lead.unsubscribed_at is None:
            self.lead.unsubscribed_at = self.now
            self.record("unsubscribed")
        if stages.set_side_stage(
            self.lead, "unsubscribed", reason="/stop", now=self.now, events=self.uow.events
        ):
            self.reached.add("unsubscribed")
        self.say(self.s.messages.unsubscribed, buttons=self.back_to_menu())

    # ---- buttons ----

    async def on_button(self, action: str) -> None:
        kind, _, rest = action.partition(":")
        awaiting = self.lead.awaiting or {}
        if action == "menu":
            self.lead.awaiting = None
            await self.show_menu()
        elif kind == "del" and rest in ("y", "n") and awaiting.get("confirm") == "delete":
            await self.erase() if rest == "y" else self.cancel_erasure()
        elif kind == "o" and rest in self.s.offers:
            await self.take_offer(rest)
        elif kind == "c" and rest in ("y", "n") and awaiting.get("consent") == PERSONAL_DATA:
            await self.answer_consent(rest == "y", awaiting.get("offer"))
        elif kind == "m" and rest in ("y", "n") and awaiting.get("consent") == MARKETING:
            await self.answer_marketing(rest == "y", awaiting["offer"])
        elif kind == "a" and await self.press_answer(rest, awaiting):
            pass
        elif kind == "e" and rest in self.s.button_events():
            self.record(rest, button=True)
            await self.score_event(rest)
            self.say(self.s.messages.noted, buttons=self.back_to_menu())
        else:
            log.info(
                "stale or forged button %r from %s:%s",
                action[:64],
                self.incoming.channel,
                self.incoming.external_id,
            )
            self.lead.awaiting = None
            self.say(self.s.messages.stale_button, buttons=self.menu_buttons(self.s.start.buttons))

    async def press_answer(self, rest: str, awaiting: dict[str, Any]) -> bool:
        question_id, _, index = rest.partition(":")
        if awaiting.get("question") != question_id or not index.isdigit():
            return False
        question = self.s.questions.get(question_id)
        if question is None:
            return False
        try:
            parsed = choice_answer(question, int(index))
        except InvalidAnswer:
            return False
        await self.accept_answer(question_id, question, parsed, awaiting.get("offer"))
        return True

    # ---- offers, consent, questions ----

    async def take_offer(self, offer_id: str, *, from_link: bool = False) -> None:
        offer = self.s.offers[offer_id]
        self.record("offer_taken", offer=offer_id)
        await self.score_event("offer_taken")
        self.lead.offer = offer_id
        self.advance("engaged", f"offer:{offer_id}")
        if offer.pitch:
            self.say(f"{offer.title}\n\n{offer.pitch}")
        elif from_link:  # no button was pressed, so say what is being opened
            self.say(offer.title)
        await self.continue_offer(offer_id)

    def consent_version(self) -> str:
        c = self.s.consent
        return hashlib.sha256(f"{c.text}\n{c.policy_url}".encode()).hexdigest()[:16]

    def marketing_version(self) -> str:
        return hashlib.sha256((self.s.consent.marketing or "").encode()).hexdigest()[:16]

    async def continue_offer(self, offer_id: str) -> None:
        """Ask what the offer still needs (consent first), or deliver it."""
        offer = self.s.offers[offer_id]
        missing = [q for q in offer.ask if not await self.known(q)]
        needs_consent = bool(missing) or offer.then.start is not None
        if needs_consent:
            if await self.uow.leads.active_consent(self.lead.id, PERSONAL_DATA) is None:
                self.ask_consent(offer_id)
                return
            if self.s.consent.marketing and not await self.marketing_answered():
                self.ask_marketing(offer_id)
                return
        if missing:
            self.ask_question(missing[0], offer_id)
            return
        await self.deliver(offer_id, offer)

    async def known(self, question_id: str) -> bool:
        question = self.s.questions[question_id]
        if question.type in CONTACT_TYPES:
            contacts = await self.uow.leads.contacts(self.lead.id)
            if any(c.kind == question.type for c in contacts):
                return True
        if question.type == "name":
            return self.name is not None
        return question_id in self.answers

    async def marketing_answered(self) -> bool:
        if await self.uow.leads.active_consent(self.lead.id, MARKETING) is not None:
            return True
        # Asked and declined (or /stop) once is an answer: do not ask at every offer.
        return (
            self.lead.unsubscribed_at is not None
            or await times(self.uow, self.lead, "marketing_consent_declined") > 0
        )

    def ask_consent(self, offer_id: str | None) -> None:
        """Before contacts are stored for an offer, or (no offer) before the referral link."""
        self.lead.awaiting = {"consent": PERSONAL_DATA, "offer": offer_id}
        c = self.s.consent
        self.say(
            c.text, buttons=[[Button(c.accept, action="c:y"), Button(c.decline, action="c:n")]]
        )

    def ask_marketing(self, offer_id: str) -> None:
        self.lead.awaiting = {"consent": MARKETING, "offer": offer_id}
        c = self.s.consent
        assert c.marketing is not None
        self.say(
            c.marketing,
            buttons=[
                [
                    Button(c.marketing_accept, action="m:y"),
                    Button(c.marketing_decline, action="m:n"),
                ]
            ],
        )

    async def answer_consent(self, accepted: bool, offer_id: str | None) -> None:
        if not accepted:
            self.lead.awaiting = None
            self.record("consent_declined", offer=offer_id)
            self.say(
                self.s.messages.consent_declined, buttons=self.menu_buttons(self.s.start.buttons)
            )
            return
        await self.uow.leads.give_consent(
            self.lead.id,
            PERSONAL_DATA,
            text_version=self.consent_version(),
            channel=self.incoming.channel,
            now=self.now,
        )
        self.record("consent_given", kind=PERSONAL_DATA, version=self.consent_version())
        if offer_id is None:
            self.lead.awaiting = None
            await self.show_invite()
        else:
            await self.continue_offer(offer_id)

    async def answer_marketing(self, accepted: bool, offer_id: str) -> None:
        if accepted:
            await self.uow.leads.give_consent(
                self.lead.id,
                MARKETING,
                text_version=self.marketing_version(),
                channel=self.incoming.channel,
                now=self.now,
            )
            self.lead.unsubscribed_at = None
            stages.leave_side_stage(
                self.lead,
                "unsubscribed",
                reason="marketing consent",
                now=self.now,
                events=self.uow.events,
            )
            self.record("marketing_consent_given", version=self.marketing_version())
        else:
            self.record("marketing_consent_declined")
        await self.continue_offer(offer_id)

    def question_message(self, question_id: str, question: Question) -> None:
        buttons, contact_request = question_markup(question_id, question)
        self.say(
            question.text, buttons=[list(row) for row in buttons], contact_request=contact_request
        )

    def ask_question(self, question_id: str, offer_id: str) -> None:
        self.lead.awaiting = {"question": question_id, "offer": offer_id}
        self.question_message(question_id, self.s.questions[question_id])

    async def prompt_again(self) -> None:
        """Repeat what we wait for, so a wrong input never leaves the prospect stuck."""
        awaiting = self.lead.awaiting or {}
        offer_id = awaiting.get("offer")
        if self.waits_for_step_answer(awaiting):
            self.question_message(awaiting["question"], self.s.questions[awaiting["question"]])
        elif awaiting.get("consent") == PERSONAL_DATA and offer_id is None:
            self.ask_consent(None)  # consent for the referral link (/invite)
        elif offer_id not in self.s.offers:  # the scenario changed under a waiting lead
            self.lead.awaiting = None
            await self.show_menu()
        elif awaiting.get("question") in self.s.questions:
            self.question_message(awaiting["question"], self.s.questions[awaiting["question"]])
        elif awaiting.get("consent") == PERSONAL_DATA:
            self.ask_consent(offer_id)
        elif awaiting.get("consent") == MARKETING and self.s.consent.marketing:
            self.ask_marketing(offer_id)
        else:
            await self.continue_offer(offer_id)

    async def on_text(self, text: str) -> None:
        if len(text) > self.funnel.max_input_length:
            self.say(self.s.messages.too_long)
            await self.prompt_again_if_waiting()
            return
        awaiting = self.lead.awaiting or {}
        question_id = awaiting.get("question")
        if question_id in self.s.questions and (
            awaiting.get("offer") in self.s.offers or self.waits_for_step_answer(awaiting)
        ):
            question = self.s.questions[question_id]
            try:
                parsed = parse_answer(question, text, phone_region=self.funnel.phone_region)
            except InvalidAnswer as invalid:
                self.say(getattr(self.s.messages, invalid.message))
                self.question_message(question_id, question)
                return
            await self.accept_answer(question_id, question, parsed, awaiting.get("offer"))
        elif awaiting.get("consent"):
            self.say(self.s.messages.choose_option)
            await self.prompt_again()
        else:
            await self.free_text(text)

    def waits_for_step_answer(self, awaiting: dict[str, Any]) -> bool:
        """A sequence step asked a question (an NPS after a sale, say)."""
        return "sequence" in awaiting and awaiting.get("question") in self.s.questions

    async def prompt_again_if_waiting(self) -> None:
        if self.lead.awaiting:
            await self.prompt_again()

    async def free_text(self, text: str) -> None:
        """FAQ first; what it does not answer goes to the managers' chat. While a manager
        holds the lead, everything the lead writes follows into the chat: a live talk."""
        managers = self.funnel.routes.managers
        handoff = await self.uow.session.get(Handoff, self.lead.id) if managers else None
        held_by = handoff.manager_name if handoff and handoff.status == "claimed" else None
        entry = None if held_by else match_faq(self.s.faq, text)
        if entry is not None:
            self.record("faq_answered", match=entry.match[0])
            self.say(entry.text, buttons=self.menu_buttons(entry.buttons) + self.back_to_menu())
            return
        event = self.record("unmatched_text", text=text[:1000])
        if not managers:
            self.say(self.s.messages.fallback, buttons=self.menu_buttons(self.s.start.buttons))
            return
        await self.uow.session.flush()  # the event's id keys the post: one post per message
        who = self.name or self.lead.first_name or "Без имени"
        where = f"у {held_by}" if held_by else f"стадия {self.lead.stage}"
        await post_about_lead(
            self.uow,
            self.lead.id,
            f"💬 {who} (лид #{self.lead.id}, {where}):\n{text}\n\n"
            "Ответьте на это сообщение — ответ уйдёт клиенту.",
            purpose="question",
            key=f"question:{event.id}",
            managers=managers,
            now=self.now,
        )
        if not held_by:
            self.say(self.s.messages.forwarded, buttons=self.back_to_menu())

    async def on_contact(self) -> None:
        awaiting = self.lead.awaiting or {}
        question_id = awaiting.get("question")
        question = self.s.questions.get(question_id or "")
        if (
            question is None
            or question.type != "phone"
            or (
                awaiting.get("offer") not in self.s.offers
                and not self.waits_for_step_answer(awaiting)
            )
        ):
            # Nobody asked for a phone now; we keep it only with consent, as a known contact.
            if (
                self.incoming.contact_is_own
                and self.incoming.phone
                and (await self.uow.leads.active_consent(self.lead.id, PERSONAL_DATA))
            ):
                await self.store_phone(self.incoming.phone, verified=True)
            await self.prompt_again_if_waiting() if awaiting else await self.show_menu()
            return
        assert question_id is not None
        if not self.incoming.contact_is_own:
            self.say(self.s.messages.foreign_contact)
            self.question_message(question_id, question)
            return
        try:
            parsed = parse_answer(
                question,
                _with_plus(self.incoming.phone or ""),
                phone_region=self.funnel.phone_region,
            )
        except InvalidAnswer:
            self.say(self.s.messages.invalid_phone)
            self.question_message(question_id, question)
            return
        await self.accept_answer(
            question_id, question, parsed, awaiting.get("offer"), verified=True
        )

    async def store_phone(self, phone: str, *, verified: bool) -> None:
        try:
            value = normalize_phone(_with_plus(phone), self.funnel.phone_region)
        except InvalidAnswer:
            return
        await self.uow.leads.add_contact(
            self.lead.id,
            "phone",
            value,
            verified=verified,
            channel=self.incoming.channel,
            now=self.now,
        )
        self.record("contact_shared", kind="phone", verified=verified)
        self.advance("contact", "phone shared")
        await self.merge_on_contact("phone", value, verified=verified)

    async def accept_answer(
        self,
        question_id: str,
        question: Question,
        parsed: ParsedAnswer,
        offer_id: str | None,
        *,
        verified: bool = False,
    ) -> None:
        previous = self.answers.get(question_id)
        self.lead.score += parsed.score - (previous.score if previous else 0)
        self.answers[question_id] = await self.uow.leads.set_answer(
            self.lead.id, question_id, parsed.value, score=parsed.score, now=self.now
        )
        if parsed.tag:
            await self.add_tag(parsed.tag)
        if parsed.zone:
            self.lead.timezone = parsed.zone
        if question.type == "name":
            self.name = parsed.value
        self.record("answered", question=question_id, value=parsed.value[:256])
        if question.type in CONTACT_TYPES:
            await self.uow.leads.add_contact(
                self.lead.id,
                question.type,
                parsed.value,
                verified=verified,
                channel=self.incoming.channel,
                now=self.now,
            )
            self.record("contact_shared", kind=question.type, verified=verified)
            await self.score_event("contact_shared")
            self.advance("contact", f"{question.type} given")
            await self.merge_on_contact(question.type, parsed.value, verified=verified)
        self.lead.awaiting = None
        if offer_id in self.s.offers:
            await self.continue_offer(offer_id)  # type: ignore[arg-type]
        else:  # a question a sequence step asked: the chain goes on by itself
            self.say(self.s.messages.thanks, buttons=self.back_to_menu())

    async def merge_on_contact(self, kind: str, value: str, *, verified: bool) -> None:
        """A verified contact may show the person has a lead in another messenger: one lead
        from now on (bot.merge), and this turn goes on with it."""
        merged = await merge.on_contact(
            self.uow,
            self.s,
            self.lead,
            kind,
            value,
            verified=verified,
            now=self.now,
            managers=self.funnel.routes.managers,
        )
        if merged is not None:
            self.lead = merged
            await self.load_answers()

    async def deliver(self, offer_id: str, offer: Offer) -> None:
        self.lead.awaiting = None
        file = None
        if offer.deliver.file:
            file = FileRef(path=str(self.loaded.file_path(offer.deliver.file).resolve()))
        elif offer.deliver.url:
            file = FileRef(url=offer.deliver.url)
        self.say(offer.deliver.text, buttons=self.back_to_menu(), file=file)
        # What the lead keeps says most leads never had a magnet; only then ask which offer.
        first_time = not await times(self.uow, self.lead, "magnet_delivered") or not (
            await self.uow.events.count(self.lead.id, "magnet_delivered", offer=offer_id)
        )
        self.record("magnet_delivered", offer=offer_id)
        await self.score_event("magnet_delivered")
        then = offer.then
        if then.promo is not None and then.promo in self.s.promos:
            try:
                await promos.issue(self.uow, self.s, self.lead, then.promo, self.now)
            except promos.NoCode as no_code:
                log.info("lead %s gets no %s code: %s", self.lead.id, then.promo, no_code)
        if first_time:  # asking for the same guide twice is not twice the interest
            self.lead.score += then.score
        for tag in then.tag:
            await self.add_tag(tag)
        if then.start is not None and await sequences.start(
            self.uow, self.s, self.lead, then.start, self.now
        ):
            self.record("sequence_started", sequence=then.start, offer=offer_id)
            self.advance("warming", f"sequence:{then.start}")

    async def erase(self) -> None:
        """/delete confirmed: forget the person; anonymous counts stay."""
        await sequences.stop_runs(self.uow, self.lead.id, self.now, "erased")
        await self.uow.outbox.cancel_pending(self.lead.id, reason="erased")
        self.record("erased")
        await self.uow.leads.erase_personal_data(self.lead.id, now=self.now)
        self.name = None
        self.reply.say(Outgoing(self.s.messages.deleted))  # no placeholders: nothing is known

    def cancel_erasure(self) -> None:
        self.lead.awaiting = None
        self.say(self.s.messages.delete_cancelled, buttons=self.back_to_menu())

    async def announce_contact(self) -> None:
        """Tell the managers' chat about a lead who just left contacts."""
        if not self.funnel.routes.managers:
            return
        contacts = await self.uow.leads.contacts(self.lead.id)
        lines = [f"🆕 Новый лид #{self.lead.id} оставил контакты"]
        if self.name or self.lead.first_name:
            lines.append(f"Имя: {self.name or self.lead.first_name}")
        lines += [f"{'Телефон' if c.kind == 'phone' else 'E-mail'}: {c.value}" for c in contacts]
        if self.lead.source:
            lines.append(f"Источник: {self.lead.source}")
        if self.lead.offer in self.s.offers:
            lines.append(f"Оффер: {self.s.offers[self.lead.offer].title}")
        account = (
            f"@{self.identity.username}"
            if self.identity.username
            else (f"id {self.identity.external_id}")
        )
        lines.append(f"{self.identity.channel}: {account}")
        await post_about_lead(
            self.uow,
            self.lead.id,
            "\n".join(lines),
            purpose="notice",
            key=f"contact:{self.lead.id}",
            managers=self.funnel.routes.managers,
            now=self.now,
        )

    async def load_answers(self) -> None:
        self.answers = dict(await self.uow.leads.answers(self.lead.id))
        self.name = self.s.name_answer({q: a.value for q, a in self.answers.items()})


def question_buttons(question_id: str, question: Question) -> tuple[tuple[Button, ...], ...]:
    """The buttons of a choice or scale question; presses come back as `a:<question>:<n>`."""
    if question.type == "choice":
        return tuple(
            (Button(o.text, action=f"a:{question_id}:{i}"),)
            for i, o in enumerate(question.options)
        )
    if question.type == "scale":
        numbers = [Button(str(n), action=f"a:{question_id}:{n}") for n in range(11)]
        return (tuple(numbers[:6]), tuple(numbers[6:]))
    return ()


def question_markup(
    question_id: str, question: Question
) -> tuple[tuple[tuple[Button, ...], ...], str | None]:
    """The buttons of a question and, for a phone, the share-contact button's label."""
    contact_request = (question.button or "📱") if question.type == "phone" else None
    return question_buttons(question_id, question), contact_request


def _rows(buttons: list[list[Button]]) -> tuple[tuple[Button, ...], ...]:
    return tuple(tuple(row) for row in buttons)


def _with_plus(phone: str) -> str:
    # Telegram sends shared phones without "+"; they are always international.
    phone = phone.strip()
    return phone if phone.startswith("+") else f"+{phone}"
