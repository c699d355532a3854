"""One event of one lead: what is known, what this event did, and what is said back. The
flows (`understand`, `offers`, `contacts`, `commands`, `talk`, `consequences`) act on it."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bot import promos, referrals, scoring, stages
from bot.answers import question_markup
from bot.logs import about_lead
from bot.messages import Button, Incoming, Outgoing, Reply
from bot.render import render
from bot.scenario.checks import placeholders
from bot.scenario.loader import LoadedScenario
from bot.scenario.model import LinkButton, MenuButton, OfferButton, Question, Scenario
from bot.timing import zone_of
from storage.models import Answer, Event, Identity, Lead
from storage.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from bot.engine.funnel import Funnel


class Turn:
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
        about_lead(lead.id)  # the rest of this event's log lines carry the lead's id
        self.identity = identity
        self.incoming = incoming
        self.now = funnel.clock.now()
        self.reply = Reply()
        self.name: str | None = None  # the answer to a `name` question, once known
        self.answers: dict[str, Answer] = {}
        self.reached: set[str] = set()  # stages first reached in this turn
        self.recorded: list[tuple[str, dict[str, Any]]] = []  # events of this turn
        # Requests of a person's time (`handoff:`): what is asked, as managers read it, and
        # the event that recorded the request. `consequences.follow` takes them to managers.
        self.requests: list[tuple[str, Event]] = []
        # Replies that show codes or the referral link, with their text and values: the
        # codes are database writes, so they are filled at the end of the turn.
        self.with_promos: list[tuple[Outgoing, str, dict[str, str]]] = []
        # Slot questions asked, with the moment their times start after: filled at the end.
        self.with_slots: list[tuple[Outgoing, str, Question, datetime | None]] = []

    @property
    def today(self) -> date:
        """The lead's date now, in their zone (what "сегодня" in an answer means)."""
        zone = zone_of(self.lead.timezone, self.s.settings.timezone)
        return self.now.astimezone(zone).date()

    async def load_answers(self) -> None:
        self.answers = dict(await self.uow.leads.answers(self.lead.id))
        self.name = self.s.name_answer({q: a.value for q, a in self.answers.items()})

    # ---- saying ----

    def say(self, text: str, *, buttons: list[list[Button]] | None = None, **kwargs: Any) -> None:
        rows = rows_of(buttons or [])
        values = self.values()
        if promos.mentioned([text]) or referrals.REFERRAL_LINK in placeholders(text):
            message = Outgoing(text, buttons=rows, **kwargs)
            self.with_promos.append((message, text, values))
        else:
            message = Outgoing(render(text, values), buttons=rows, **kwargs)
        self.reply.say(message)

    def values(self) -> dict[str, str]:
        first_name = self.lead.first_name or self.incoming.first_name
        return self.s.placeholder_values(first_name, self.name)

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

    def show_menu(self) -> None:
        self.say(self.s.start.text, buttons=self.menu_buttons(self.s.start.buttons))

    def back_to_menu(self) -> list[list[Button]]:
        return [[Button(self.s.messages.menu, action="menu")]]

    def question_message(
        self, question_id: str, question: Question, *, after: datetime | None = None
    ) -> None:
        """Ask the question; a slot question's times (those after `after`) are read at the
        end of the turn (`engine.slots.fill_times`)."""
        buttons, contact_request = question_markup(question_id, question)
        rows = [list(row) for row in buttons]
        awaiting = self.lead.awaiting or {}
        # An offer's question shows the way out, so nobody is trapped in it; a question a
        # sequence step asked holds nothing up and is left as it is.
        if awaiting.get("question") == question_id and awaiting.get("offer") in self.s.offers:
            rows.append(self.way_out(question_id, question))
        elif awaiting.get("question") == question_id and "move" in awaiting:
            rows += self.back_to_menu()  # moving a booking: keep it as it is
        self.say(question.text, buttons=rows, contact_request=contact_request)
        if question.type == "slot":
            self.with_slots.append((self.reply.messages[-1], question_id, question, after))

    def way_out(self, question_id: str, question: Question) -> list[Button]:
        """Skip (an optional question) and back to the menu, in one row under the answers."""
        m = self.s.messages
        skip = [Button(m.skip, action=f"skip:{question_id}")] if question.optional else []
        return [*skip, Button(m.menu, action="menu")]

    async def referral_link(self) -> str:
        code = await referrals.code_of(self.uow, self.lead)
        return self.funnel.referral_links.link(self.incoming.channel, code)

    # ---- recording ----

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


def rows_of(buttons: list[list[Button]]) -> tuple[tuple[Button, ...], ...]:
    return tuple(tuple(row) for row in buttons)
