"""The offer and its questions: take an offer, ask what it still needs (consent first),
accept an answer, deliver the magnet and start what follows it."""

from __future__ import annotations

import logging

from bot import promos, sequences
from bot.answers import CONTACT_TYPES, ParsedAnswer
from bot.engine import contacts, requests
from bot.engine.turn import Turn
from bot.messages import FileRef
from bot.rule_facts import times
from bot.scenario.model import Offer, Question

log = logging.getLogger(__name__)


async def take(turn: Turn, offer_id: str, *, from_link: bool = False) -> None:
    offer = turn.s.offers[offer_id]
    turn.record("offer_taken", offer=offer_id)
    await turn.score_event("offer_taken")
    turn.lead.offer = offer_id
    turn.advance("engaged", f"offer:{offer_id}")
    if offer.pitch:
        turn.say(f"{offer.title}\n\n{offer.pitch}")
    elif from_link:  # no button was pressed, so say what is being opened
        turn.say(offer.title)
    await resume(turn, offer_id)


async def resume(turn: Turn, offer_id: str) -> None:
    """Ask what the offer still needs (consent first), or deliver it."""
    offer = turn.s.offers[offer_id]
    passed = skipped(turn, offer_id)
    missing = [q for q in offer.ask if q not in passed and not await known(turn, q)]
    if missing or offer.then.start is not None:
        consent = await contacts.consent_to_ask(turn)
        if consent is not None:
            contacts.ask(turn, consent, offer_id)
            return
    if missing:
        ask(turn, missing[0], offer_id)
        return
    await deliver(turn, offer_id, offer)


async def known(turn: Turn, question_id: str) -> bool:
    question = turn.s.questions[question_id]
    if question.type in CONTACT_TYPES and await turn.uow.leads.has_contact(
        turn.lead.id, question.type
    ):
        return True
    if question.type == "name":
        return turn.name is not None
    return question_id in turn.answers


def skipped(turn: Turn, offer_id: str | None) -> set[str]:
    """The optional questions of this offer the lead passed by: kept in `awaiting` while
    the offer runs, so they are not asked again until the offer is taken anew."""
    awaiting = turn.lead.awaiting or {}
    if offer_id is None or awaiting.get("offer") != offer_id:
        return set()
    return {q for q in awaiting.get("skipped", []) if isinstance(q, str)}


def carry_skipped(passed: set[str]) -> dict[str, list[str]]:
    return {"skipped": sorted(passed)} if passed else {}


def ask(turn: Turn, question_id: str, offer_id: str) -> None:
    passed = skipped(turn, offer_id)
    turn.lead.awaiting = {"question": question_id, "offer": offer_id, **carry_skipped(passed)}
    turn.question_message(question_id, turn.s.questions[question_id])


async def accept_answer(
    turn: Turn,
    question_id: str,
    question: Question,
    parsed: ParsedAnswer,
    offer_id: str | None,
    *,
    verified: bool = False,
) -> None:
    passed = skipped(turn, offer_id)
    previous = turn.answers.get(question_id)
    turn.lead.score += parsed.score - (previous.score if previous else 0)
    turn.answers[question_id] = await turn.uow.leads.set_answer(
        turn.lead.id, question_id, parsed.value, score=parsed.score, now=turn.now
    )
    if parsed.tag:
        await turn.add_tag(parsed.tag)
    if parsed.zone:
        turn.lead.timezone = parsed.zone
    if parsed.date is not None:
        when = (parsed.date.month, parsed.date.day, parsed.date.year)
        await turn.uow.leads.set_date(turn.lead.id, question_id, when, now=turn.now)
    if question.type == "name":
        turn.name = parsed.value
    turn.record("answered", question=question_id, value=parsed.value[:256])
    if question.type in CONTACT_TYPES:
        await contacts.add(turn, question.type, parsed.value, verified=verified)
        await turn.score_event("contact_shared")
        turn.advance("contact", f"{question.type} given")
        await contacts.merge_on(turn, question.type, parsed.value, verified=verified)
    turn.lead.awaiting = {"offer": offer_id, **carry_skipped(passed)} if passed else None
    if offer_id in turn.s.offers:
        await resume(turn, offer_id)  # type: ignore[arg-type]
    else:  # a question a sequence step asked: the chain goes on by itself
        turn.say(turn.s.messages.thanks, buttons=turn.back_to_menu())


async def deliver(turn: Turn, offer_id: str, offer: Offer) -> None:
    turn.lead.awaiting = None
    file = None
    if offer.deliver.file:
        file = FileRef(path=str(turn.loaded.file_path(offer.deliver.file).resolve()))
    elif offer.deliver.url:
        file = FileRef(url=offer.deliver.url)
    turn.say(offer.deliver.text, buttons=turn.back_to_menu(), file=file)
    lead = turn.lead
    # What the lead keeps says most leads never had a magnet; only then ask which offer.
    first_time = not await times(turn.uow, lead, "magnet_delivered") or not (
        await turn.uow.events.count(lead.id, "magnet_delivered", offer=offer_id)
    )
    delivered = turn.record("magnet_delivered", offer=offer_id)
    await turn.score_event("magnet_delivered")
    then = offer.then
    if then.handoff:
        turn.requests.append((requests.request_note(then.handoff, offer.title), delivered))
    if then.promo is not None and then.promo in turn.s.promos:
        try:
            await promos.issue(turn.uow, turn.s, lead, then.promo, turn.now)
        except promos.NoCode as no_code:
            log.info("lead %s gets no %s code: %s", lead.id, then.promo, no_code)
    if first_time:  # asking for the same guide twice is not twice the interest
        lead.score += then.score
    for tag in then.tag:
        await turn.add_tag(tag)
    if then.start is not None and await sequences.start(
        turn.uow, turn.s, lead, then.start, turn.now
    ):
        turn.record("sequence_started", sequence=then.start, offer=offer_id)
        turn.advance("warming", f"sequence:{then.start}")
