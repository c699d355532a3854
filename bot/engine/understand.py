"""Understanding the input: which flow an event belongs to, given what the lead was asked
last (`lead.awaiting`), and asking again when the input fits nothing."""

from __future__ import annotations

import logging
from typing import Any

from bot import stages
from bot.answers import InvalidAnswer, choice_answer, parse_answer
from bot.consent import MARKETING, PERSONAL_DATA
from bot.engine import commands, contacts, inside_question, offers, requests, slots, talk
from bot.engine.turn import Turn
from bot.messages import Kind

log = logging.getLogger(__name__)


async def route(turn: Turn) -> None:
    lead = turn.lead
    if lead.unreachable_at is not None:  # they write again, so they unblocked us
        lead.unreachable_at = None
        stages.leave_side_stage(
            lead, "blocked", reason="wrote again", now=turn.now, events=turn.uow.events
        )
    kind = turn.incoming.kind
    if kind is Kind.START:
        await commands.start(turn)
    elif kind is Kind.MENU:
        lead.awaiting = None
        turn.show_menu()
    elif kind is Kind.STOP:
        await commands.stop(turn)
    elif kind is Kind.BUTTON:
        await on_button(turn, turn.incoming.payload or "")
    elif kind is Kind.CONTACT:
        await on_contact(turn)
    elif kind is Kind.TEXT:
        await on_text(turn, turn.incoming.text or "")
    elif kind is Kind.MY_DATA:
        await commands.my_data(turn)
    elif kind is Kind.PROMO:
        await commands.show_promos(turn)
    elif kind is Kind.INVITE:
        await commands.show_invite(turn)
    elif kind is Kind.BOOKING:
        await slots.show(turn)
    elif kind is Kind.DELETE:
        commands.ask_to_delete(turn)
    else:
        turn.say(turn.s.messages.not_text)
        await prompt_again(turn)


async def on_button(turn: Turn, action: str) -> None:
    kind, _, rest = action.partition(":")
    awaiting = turn.lead.awaiting or {}
    if action == "menu":
        turn.lead.awaiting = None
        turn.show_menu()
    elif kind == "del" and rest in ("y", "n") and awaiting.get("confirm") == "delete":
        await commands.erase(turn) if rest == "y" else commands.keep_data(turn)
    elif kind == "o" and rest in turn.s.offers:
        await offers.take(turn, rest)
    elif kind == "c" and rest in ("y", "n") and awaiting.get("consent") == PERSONAL_DATA:
        offer_id = awaiting.get("offer")
        if not await contacts.answer_personal_data(turn, rest == "y", offer_id):
            pass
        elif offer_id is None:  # the consent /invite asked for
            turn.lead.awaiting = None
            await commands.show_invite(turn)
        else:
            await offers.resume(turn, offer_id)
    elif kind == "m" and rest in ("y", "n") and awaiting.get("consent") == MARKETING:
        await contacts.answer_marketing(turn, rest == "y")
        await offers.resume(turn, awaiting["offer"])
    elif await _answering(turn, kind, rest, awaiting):
        pass
    elif kind == "e" and (button := turn.s.event_button(*_event_and_digest(rest))):
        await requests.press(turn, button)
    elif not await inside_question.press_skip(turn, action):
        log.info(
            "stale or forged button %r from %s:%s",
            action[:64],
            turn.incoming.channel,
            turn.incoming.external_id,
        )
        # An old button pressed mid-question must not throw the lead out of the question.
        if inside_question.open_question(turn) is not None or awaiting.get("consent"):
            turn.say(turn.s.messages.stale_question)
            await prompt_again(turn)
        else:
            turn.lead.awaiting = None
            turn.say(turn.s.messages.stale_button, buttons=turn.menu_buttons(turn.s.start.buttons))


async def _answering(turn: Turn, kind: str, rest: str, awaiting: dict[str, Any]) -> bool:
    """A press that answers: a choice or scale button, a time to book, a booking's buttons."""
    if kind == "a":
        return await press_answer(turn, rest, awaiting)
    if kind == slots.TIME:
        return await slots.press_time(turn, rest, awaiting)
    return kind == slots.BOOKING and await slots.press_booking(turn, rest)


async def press_answer(turn: Turn, rest: str, awaiting: dict[str, Any]) -> bool:
    question_id, _, index = rest.partition(":")
    if awaiting.get("question") != question_id or not _number(index):
        return False
    question = turn.s.questions.get(question_id)
    if question is None:
        return False
    try:
        parsed = choice_answer(question, int(index))
    except InvalidAnswer:
        return False
    await offers.accept_answer(turn, question_id, question, parsed, awaiting.get("offer"))
    return True


async def on_text(turn: Turn, text: str) -> None:
    s = turn.s
    if len(text) > turn.funnel.max_input_length:
        turn.say(s.messages.too_long)
        if turn.lead.awaiting:
            await prompt_again(turn)
        return
    awaiting = turn.lead.awaiting or {}
    open_question = inside_question.open_question(turn)
    if open_question is not None:
        await inside_question.answer_text(turn, open_question, text)
    elif awaiting.get("consent"):
        turn.say(s.messages.choose_option)
        await prompt_again(turn)
    else:
        await talk.free_text(turn, text)


async def on_contact(turn: Turn) -> None:
    awaiting = turn.lead.awaiting or {}
    incoming = turn.incoming
    question_id = awaiting.get("question")
    question = turn.s.questions.get(question_id or "")
    if (
        question is None
        or question.type != "phone"
        or (
            awaiting.get("offer") not in turn.s.offers
            and not waits_for_step_answer(turn, awaiting)
        )
    ):
        # Nobody asked for a phone now; we keep it only with consent, as a known contact.
        if (
            incoming.contact_is_own
            and incoming.phone
            and (await turn.uow.leads.active_consent(turn.lead.id, PERSONAL_DATA))
        ):
            await contacts.store_shared_phone(turn, incoming.phone)
        if awaiting:
            await prompt_again(turn)
        else:
            turn.show_menu()
        return
    assert question_id is not None
    if not incoming.contact_is_own:
        turn.say(turn.s.messages.foreign_contact)
        turn.question_message(question_id, question)
        return
    try:
        parsed = parse_answer(
            question,
            contacts.with_plus(incoming.phone or ""),
            phone_region=turn.funnel.phone_region,
        )
    except InvalidAnswer:
        turn.say(turn.s.messages.invalid_phone)
        turn.question_message(question_id, question)
        return
    await offers.accept_answer(
        turn, question_id, question, parsed, awaiting.get("offer"), verified=True
    )


def _event_and_digest(rest: str) -> tuple[str, str]:
    event, _, digest = rest.partition(":")  # no digest: a message sent before labels had one
    return event, digest


def _number(text: str) -> bool:
    # str.isdigit() is true of "²" and "١", which int() refuses or reads as another digit.
    return text.isascii() and text.isdigit() and len(text) <= 3


def waits_for_step_answer(turn: Turn, awaiting: dict[str, Any]) -> bool:
    """A question outside an offer: a sequence step's (an NPS after a sale, say), or the
    times to move a booking to."""
    outside = "sequence" in awaiting or "move" in awaiting
    return outside and awaiting.get("question") in turn.s.questions


async def prompt_again(turn: Turn) -> None:
    """Repeat what we wait for, so a wrong input never leaves the prospect stuck."""
    s = turn.s
    awaiting = turn.lead.awaiting or {}
    offer_id = awaiting.get("offer")
    if waits_for_step_answer(turn, awaiting):
        turn.question_message(awaiting["question"], s.questions[awaiting["question"]])
    elif awaiting.get("consent") == PERSONAL_DATA and offer_id is None:
        contacts.ask(turn, PERSONAL_DATA, None)  # consent for the referral link (/invite)
    elif offer_id not in s.offers:  # the scenario changed under a waiting lead
        turn.lead.awaiting = None
        turn.show_menu()
    elif awaiting.get("question") in s.questions:
        turn.question_message(awaiting["question"], s.questions[awaiting["question"]])
    elif awaiting.get("consent") == PERSONAL_DATA:
        contacts.ask(turn, PERSONAL_DATA, offer_id)
    elif awaiting.get("consent") == MARKETING and s.consent.marketing:
        contacts.ask(turn, MARKETING, offer_id)
    else:
        await offers.resume(turn, offer_id)
