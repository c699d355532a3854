"""A lead asks for a person's time (a `handoff:` button or offer): the lead goes to the
managers, as a card if it was never handed over, else as a post about the request to those
who already work it, and the answer says what happens next."""

from __future__ import annotations

from bot import scoring, sequences
from bot.engine.turn import Turn
from bot.handoff import post_about_lead
from bot.lead_card import contact_line
from bot.scenario.model import HandoffRequest, StepButton
from storage.models import Event, Handoff

CLOSED = {"won": "сделка закрыта", "lost": "был отказ", "not_fit": "был «не наш клиент»"}


async def press(turn: Turn, button: StepButton) -> None:
    """A sequence or broadcast button that records an event."""
    assert button.event is not None  # event_button finds buttons by their event
    # The step or broadcast the button belongs to: the A/B report counts it as its click.
    place = sequences.button_place(
        turn.s, lambda b: b.event == button.event and not b.url and b.action == button.action
    )
    event = turn.record(button.event, button=True, **place)
    await turn.score_event(button.event)
    if button.handoff:
        turn.requests.append((request_note(button.handoff, button.text), event))
    m = turn.s.messages
    turn.say(
        button.reply or (m.handed_over if button.handoff else m.noted),
        buttons=turn.back_to_menu(),
    )


async def take_to_managers(turn: Turn) -> None:
    """Each request of this turn: a handoff for a lead never handed over, else a post."""
    for why, event in turn.requests:
        if await scoring.hand_over(turn.uow, turn.lead, turn.now, turn.funnel.routes, why):
            turn.recorded.append(("qualified", {"rule": why}))
            turn.reached.add("qualified")
        elif turn.funnel.routes.managers:
            await _post(turn, why, event)
    turn.requests = []


def request_note(handoff: HandoffRequest, label: str) -> str:
    """What the managers read: the scenario's note, or the label the lead pressed."""
    return handoff if isinstance(handoff, str) else f"просит: «{label}»"


async def _post(turn: Turn, why: str, event: Event) -> None:
    lead = turn.lead
    handoff = await turn.uow.session.get(Handoff, lead.id)
    if handoff is not None and handoff.status == "claimed":
        where = f"у {handoff.manager_name}"
    elif handoff is not None and handoff.status in CLOSED:
        where = CLOSED[handoff.status]
    else:
        where = "карточка ещё не взята"
    lines = [f"🔔 {turn.name or lead.first_name or 'Без имени'} (лид #{lead.id}, {where})"]
    lines.append(why)
    lines += [contact_line(contact) for contact in await turn.uow.leads.contacts(lead.id)]
    lines.append("Ответьте на это сообщение — ответ уйдёт клиенту.")
    await turn.uow.session.flush()  # the event's id keys the post: one post per request
    await post_about_lead(
        turn.uow,
        lead.id,
        "\n".join(lines),
        purpose="request",
        key=f"request:{event.id}",
        managers=turn.funnel.routes.managers,
        now=turn.now,
    )
