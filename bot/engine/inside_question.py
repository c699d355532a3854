"""Inside an open question: what is not an answer still gets somewhere. A question to us is
answered from the FAQ and the question follows; a refusal skips an optional question or, for
a required one, says why it is needed and leaves the offer; the skip and menu buttons (or
their labels typed, as Telegram's keyboard under a phone question sends them) are a way out.

Which texts try the FAQ first: a choice option's own text is always an answer; otherwise a
message ending with "?" that the FAQ matches is a question to us, for every type, since a
`text` or `name` question would take almost anything as an answer; any other message tries
the FAQ only when it does not parse as an answer ("цена" at the phone question)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.answers import InvalidAnswer, ParsedAnswer, parse_answer
from bot.engine import offers
from bot.engine.faq import match_faq
from bot.engine.refusals import is_refusal
from bot.engine.small_talk import without_greeting
from bot.engine.turn import Turn
from bot.scenario.model import Question


@dataclass(frozen=True)
class OpenQuestion:
    """The question the lead was asked last; `offer` is None for a sequence step's."""

    id: str
    question: Question
    offer: str | None


def open_question(turn: Turn) -> OpenQuestion | None:
    awaiting = turn.lead.awaiting or {}
    question_id = awaiting.get("question")
    if not isinstance(question_id, str) or question_id not in turn.s.questions:
        return None
    question, offer_id = turn.s.questions[question_id], awaiting.get("offer")
    if offer_id in turn.s.offers:
        return OpenQuestion(question_id, question, offer_id)
    if "sequence" in awaiting or "move" in awaiting:
        return OpenQuestion(question_id, question, None)
    return None  # the scenario lost the offer under a waiting lead


async def answer_text(turn: Turn, open_: OpenQuestion, text: str) -> None:
    """Free text while `open_` waits: an answer, a way out, a refusal or a question to us."""
    question = open_.question
    try:
        parsed: ParsedAnswer | None = parse_answer(
            question, text, phone_region=turn.funnel.phone_region, today=turn.today
        )
        invalid = None
    except InvalidAnswer as wrong:
        parsed, invalid = None, wrong
    if parsed is not None and question.type == "choice":  # an option's text always wins
        await offers.accept_answer(turn, open_.id, question, parsed, open_.offer)
        return
    if await typed_way_out(turn, open_, text):
        return
    if is_refusal(text):
        await refuse(turn, open_)
        return
    if parsed is not None and not text.rstrip().endswith("?"):
        await offers.accept_answer(turn, open_.id, question, parsed, open_.offer)
        return
    entry = match_faq(turn.s.faq, without_greeting(text) or text)
    if entry is not None:
        turn.record("faq_answered", match=entry.match[0], question=open_.id)
        turn.say(entry.text, buttons=turn.menu_buttons(entry.buttons))
        turn.question_message(open_.id, question)
    elif parsed is not None:
        await offers.accept_answer(turn, open_.id, question, parsed, open_.offer)
    else:
        assert invalid is not None
        turn.say(getattr(turn.s.messages, invalid.message))
        turn.question_message(open_.id, question)


async def typed_way_out(turn: Turn, open_: OpenQuestion, text: str) -> bool:
    """The label of a way-out button typed: Telegram shows them under a phone question as
    keyboard buttons, which send their label as text. A sequence step's question shows no
    buttons, but its menu label typed is no answer to it either."""
    typed = text.strip().casefold()
    for button in turn.way_out(open_.id, open_.question):
        if button.text.strip().casefold() != typed or (
            open_.offer is None and button.action != "menu"
        ):
            continue
        if button.action == "menu":
            turn.lead.awaiting = None
            turn.show_menu()
        else:
            await skip(turn, open_)
        return True
    return False


async def press_skip(turn: Turn, action: str) -> bool:
    """`skip:<question>` pressed; False (a stale or forged press) unless that question is
    open, optional and in an offer."""
    kind, _, question_id = action.partition(":")
    open_ = open_question(turn)
    if (
        kind != "skip"
        or open_ is None
        or open_.id != question_id
        or open_.offer is None
        or not open_.question.optional
    ):
        return False
    await skip(turn, open_)
    return True


async def refuse(turn: Turn, open_: OpenQuestion) -> None:
    """An optional question or a sequence step's is passed by; a required one is left, with
    why it is needed and the start buttons, so the lead is never trapped in it."""
    if open_.offer is None or open_.question.optional:
        await skip(turn, open_)
        return
    m = turn.s.messages
    turn.record("question_refused", question=open_.id, offer=open_.offer)
    turn.lead.awaiting = None
    kind = open_.question.type
    why = {"phone": m.refused_phone, "email": m.refused_email, "name": m.refused_name}
    text = why.get(kind, m.refused_required)
    turn.say(text, buttons=turn.menu_buttons(turn.s.start.buttons))


async def skip(turn: Turn, open_: OpenQuestion) -> None:
    """Pass the question by: the offer goes on without it (and will not ask it again)."""
    if open_.offer is None:  # a sequence step's question: its chain goes on by itself
        sequence = (turn.lead.awaiting or {}).get("sequence")
        turn.record("question_skipped", question=open_.id, sequence=sequence)
        turn.lead.awaiting = None
        turn.say(turn.s.messages.skipped, buttons=turn.back_to_menu())
        return
    turn.record("question_skipped", question=open_.id, offer=open_.offer)
    passed = offers.skipped(turn, open_.offer) | {open_.id}
    turn.lead.awaiting = {"offer": open_.offer, **offers.carry_skipped(passed)}
    turn.say(turn.s.messages.skipped)
    await offers.resume(turn, open_.offer)
