"""Slot questions in the chat: the free times as buttons, a press that books one, and the
booking moved or cancelled (/booking, or the buttons under it). Managers hear of each move
and cancellation, as of any request."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from bot import booking
from bot.answers import ParsedAnswer
from bot.engine import offers
from bot.engine.turn import Turn
from bot.messages import Button
from bot.render import render
from bot.scenario.model import Question
from bot.sequences import SLOT_BOOKED, SLOT_CANCELLED
from storage.bookings import BOOKED
from storage.models import Booking

TIME, BOOKING = "s", "bk"  # s:<question>:<minutes> books, s:<question>:+<minutes> pages on


def _minutes(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


async def fill_times(turn: Turn) -> None:
    """Put the free times under each slot question this turn asked (read at the end of the
    turn, as the codes are); with none free, say so and ask the managers to call."""
    s, m = turn.s, turn.s.messages
    zone = booking.lead_zone(s, turn.lead)
    for message, question_id, question, after in turn.with_slots:
        index = next(i for i, sent in enumerate(turn.reply.messages) if sent is message)
        assert question.calendar is not None
        # One more than a page: whether "Другое время" leads anywhere.
        free = await booking.free_times(
            turn.uow, s, question.calendar, turn.now, after=after, limit=booking.PAGE + 1
        )
        if not free and after is not None:  # an old "Другое время": from the first time on
            after = None
            free = await booking.free_times(
                turn.uow, s, question.calendar, turn.now, limit=booking.PAGE + 1
            )
        later, free = free[booking.PAGE :], free[: booking.PAGE]
        times = [
            Button(booking.button_text(f.start, zone), f"{TIME}:{question_id}:{_minutes(f.start)}")
            for f in free
        ]
        # Two a row: with "Другое время" and the way out, VK's inline keyboard (6 rows, 10
        # buttons) still holds them under the message.
        rows = [tuple(times[i : i + 2]) for i in range(0, len(times), 2)]
        if later:
            page = f"{TIME}:{question_id}:+{_minutes(free[-1].start)}"
            rows.append((Button(m.slot_more, action=page),))
        if not free:
            text = m.no_slots
            event = turn.record("slot_unavailable", calendar=question.calendar)
            turn.requests.append(
                (f"нет свободного времени: {s.slots[question.calendar].title}", event)
            )
        else:
            label = booking.zone_label(turn.now, zone)
            text = f"{message.text}\n{render(m.slot_zone, {'zone': label})}"
        buttons = (*rows, *message.buttons)
        turn.reply.messages[index] = dataclasses.replace(message, text=text, buttons=buttons)
    turn.with_slots = []


async def press_time(turn: Turn, rest: str, awaiting: dict[str, Any]) -> bool:
    """A time pressed under the question the lead is asked: booked, or the next page."""
    question_id, _, when = rest.partition(":")
    question = turn.s.questions.get(question_id)
    digits = when.removeprefix("+")
    if (
        awaiting.get("question") != question_id
        or question is None
        or question.calendar is None
        or not (digits.isascii() and digits.isdigit() and len(digits) <= 9)
    ):
        return False
    moment = datetime.fromtimestamp(int(digits) * 60, UTC)
    if when.startswith("+"):
        turn.question_message(question_id, question, after=moment)
        return True
    m = turn.s.messages
    # Only bookings to come are moved: a meeting that took place stays as it was.
    coming = await turn.uow.bookings.standing(turn.lead.id, question.calendar, after=turn.now)
    held = next((b for b in coming if b.starts_at == moment), None)
    if held is not None:  # the time the lead has already: nothing to change
        await _settled(turn, question_id, question, held, awaiting, m.slot_already)
        return True
    if not booking.offered(turn.s, question.calendar, moment, turn.now):
        turn.say(m.stale_question)  # a time gone by, or no longer in the calendar's hours
        turn.question_message(question_id, question)
        return True
    made = await booking.book(
        turn.uow, turn.s, turn.lead, question.calendar, question_id, moment, turn.now
    )
    if made is None:
        turn.say(m.slot_taken)
        turn.question_message(question_id, question)
        return True
    details: dict[str, Any] = {
        "calendar": made.calendar,
        "start": made.starts_at.isoformat(),
        "booking": made.id,
    }
    if coming:
        details["moved_from"] = coming[0].starts_at.isoformat()
    event = turn.record(SLOT_BOOKED, **details)
    if coming:
        line = booking.booking_line(turn.s, made, booking.lead_zone(turn.s, turn.lead))
        turn.requests.append((f"перенёс запись: {line}", event))
    said = m.slot_moved if coming and "move" in awaiting else m.slot_booked
    await _settled(turn, question_id, question, made, awaiting, said)
    return True


async def _settled(
    turn: Turn,
    question_id: str,
    question: Question,
    held: Booking,
    awaiting: dict[str, Any],
    said: str,
) -> None:
    """The lead has `held`: the answer says when; a move ends here, an offer goes on."""
    when = booking.when_text(held.starts_at, booking.lead_zone(turn.s, turn.lead))
    turn.answers[question_id] = await turn.uow.leads.set_answer(
        turn.lead.id, question_id, when, score=0, now=turn.now
    )
    if "move" in awaiting:
        turn.lead.awaiting = None
        turn.say(render(said, {"when": when}), buttons=turn.back_to_menu())
        return
    turn.say(render(said, {"when": when}))
    answer = ParsedAnswer(when)
    await offers.accept_answer(turn, question_id, question, answer, awaiting.get("offer"))


async def show(turn: Turn) -> None:
    """/booking: the lead's bookings to come, each with moving and cancelling."""
    m = turn.s.messages
    zone = booking.lead_zone(turn.s, turn.lead)
    coming = await turn.uow.bookings.standing(turn.lead.id, after=turn.now)
    if not coming:
        turn.say(m.no_booking, buttons=turn.menu_buttons(turn.s.start.buttons))
        return
    for item in coming:
        what = booking.booking_line(turn.s, item, zone, who=False)
        turn.say(
            render(m.your_booking, {"what": what}),
            buttons=[
                [
                    Button(m.booking_move, action=f"{BOOKING}:m:{item.id}"),
                    Button(m.booking_cancel, action=f"{BOOKING}:c:{item.id}"),
                ]
            ],
        )


async def press_booking(turn: Turn, rest: str) -> bool:
    """`bk:m:<id>` offers the free times to move to; `bk:c:<id>` cancels. Only the lead's
    own booking that still stands and is to come: anything else is a stale button."""
    what, _, number = rest.partition(":")
    if what not in ("m", "c") or not (number.isascii() and number.isdigit() and len(number) < 19):
        return False
    item = await turn.uow.bookings.get(int(number))
    if (
        item is None
        or item.lead_id != turn.lead.id
        or item.status != BOOKED
        or item.starts_at <= turn.now
    ):
        return False
    question_id = _question_for(turn, item)
    if what == "m" and question_id is not None:
        turn.lead.awaiting = {"question": question_id, "move": item.id}
        turn.question_message(question_id, turn.s.questions[question_id])
        return True
    if what == "m":
        return False  # the scenario no longer asks for this calendar
    zone = booking.lead_zone(turn.s, turn.lead)
    line = booking.booking_line(turn.s, item, zone)
    turn.uow.bookings.release(item, "cancelled", turn.now)
    if (turn.lead.awaiting or {}).get("move") == item.id:
        turn.lead.awaiting = None  # the times offered to move it to are for nothing now
    if item.question in turn.s.questions:
        # Unanswered again: the offer asks for a time next time, and the card shows none.
        await turn.uow.leads.forget_answer(turn.lead.id, item.question)
        turn.answers.pop(item.question, None)
    details = {"calendar": item.calendar, "start": item.starts_at.isoformat(), "booking": item.id}
    event = turn.record(SLOT_CANCELLED, **details)
    turn.requests.append((f"отменил запись: {line}", event))
    when = booking.when_text(item.starts_at, zone)
    turn.say(render(turn.s.messages.slot_cancelled, {"when": when}), buttons=turn.back_to_menu())
    return True


def _question_for(turn: Turn, item: Booking) -> str | None:
    """The question that booked it, or another asking for the same calendar."""
    questions = turn.s.questions
    if item.question in questions and questions[item.question].calendar == item.calendar:
        return item.question
    return next(
        (q for q, question in questions.items() if question.calendar == item.calendar), None
    )
