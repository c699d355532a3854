"""Free text that answers no question: the FAQ first, and what it does not answer goes to
the managers' chat. While a manager holds the lead, everything the lead writes follows into
the chat: a live talk."""

from __future__ import annotations

from bot.engine import commands
from bot.engine.faq import match_faq
from bot.engine.plain_commands import asks_to_delete, asks_to_stop
from bot.engine.small_talk import is_thanks, without_greeting
from bot.engine.turn import Turn
from bot.handoff import post_about_lead
from storage.models import Handoff


def small_talk(turn: Turn, text: str) -> bool:
    """A greeting alone gets a greeting and the start buttons, thanks alone a polite word:
    neither is a question for the FAQ or the managers. False for anything else."""
    m = turn.s.messages
    if without_greeting(text) == "":
        turn.say(m.greeting, buttons=turn.menu_buttons(turn.s.start.buttons))
        return True
    if is_thanks(text):
        turn.say(m.you_are_welcome, buttons=turn.back_to_menu())
        return True
    return False


async def plain_command(turn: Turn, text: str) -> bool:
    """«стоп», «отпишите меня» do what /stop does, «удалите мои данные» asks as /delete."""
    if asks_to_stop(text):
        await commands.stop(turn)
        return True
    if asks_to_delete(text):
        commands.ask_to_delete(turn)
        return True
    return False


async def free_text(turn: Turn, text: str) -> None:
    lead = turn.lead
    managers = turn.funnel.routes.managers
    handoff = await turn.uow.session.get(Handoff, lead.id) if managers else None
    held_by = handoff.manager_name if handoff and handoff.status == "claimed" else None
    if not held_by and await plain_command(turn, text):
        return
    if not held_by and small_talk(turn, text):
        return
    asked = without_greeting(text) or text  # "привет, сколько стоит?" asks the FAQ its question
    entry = None if held_by else match_faq(turn.s.faq, asked)
    if entry is not None:
        turn.record("faq_answered", match=entry.match[0])
        turn.say(entry.text, buttons=turn.menu_buttons(entry.buttons) + turn.back_to_menu())
        return
    event = turn.record("unmatched_text", text=text[:1000])
    if not managers:
        turn.say(turn.s.messages.fallback, buttons=turn.menu_buttons(turn.s.start.buttons))
        return
    await turn.uow.session.flush()  # the event's id keys the post: one post per message
    who = turn.name or lead.first_name or "Без имени"
    where = f"у {held_by}" if held_by else f"стадия {lead.stage}"
    await post_about_lead(
        turn.uow,
        lead.id,
        f"💬 {who} (лид #{lead.id}, {where}):\n{text}\n\n"
        "Ответьте на это сообщение — ответ уйдёт клиенту.",
        purpose="question",
        key=f"question:{event.id}",
        managers=managers,
        now=turn.now,
    )
    if not held_by:
        turn.say(turn.s.messages.forwarded, buttons=turn.back_to_menu())
