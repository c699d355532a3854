"""What follows from a turn's events once its input is handled: qualification and the
handoff, the scenario's reactions, the managers' notice of new contacts, the codes the
replies show, and tracked links in place of the replies' URLs."""

from __future__ import annotations

import dataclasses
import logging

from bot import promos, reactions, scoring
from bot.engine import contacts, requests, slots
from bot.engine.turn import Turn
from bot.referrals import REFERRAL_LINK
from bot.render import render
from bot.scenario.checks import placeholders
from bot.tracking import track_buttons

log = logging.getLogger(__name__)


async def follow(turn: Turn) -> None:
    lead = turn.lead
    await slots.fill_times(turn)  # first: an empty calendar is a request to the managers
    if lead.erased_at is None:
        await requests.take_to_managers(turn)
        why = await scoring.qualify(turn.uow, turn.s, lead, turn.now, turn.funnel.routes)
        if why is not None:
            turn.recorded.append(("qualified", {"rule": why}))
            turn.reached.add("qualified")
        await reactions.react_and_record(
            turn.uow,
            turn.s,
            lead,
            turn.now,
            turn.recorded,
            turn.reached,
            channel=turn.incoming.channel,
        )
    if "contact" in turn.reached:
        await contacts.announce(turn)
    await fill_promos(turn)
    if lead.erased_at is None:
        turn.reply.messages = await track_buttons(
            turn.uow, lead.id, turn.reply.messages, turn.funnel.link_base, turn.now
        )


async def fill_promos(turn: Turn) -> None:
    """Issue the codes the replies show and put them in. A promo that gives no code (its
    `until` has passed, the lead had its codes) does not stop the reply (it may carry the
    magnet): `messages.promo_ended` or `promo_used_up` stands where the code would, and the
    log says why."""
    for message, text, values in turn.with_promos:
        index = next(i for i, m in enumerate(turn.reply.messages) if m is message)
        if REFERRAL_LINK in placeholders(text):
            values = values | {REFERRAL_LINK: await turn.referral_link()}
        try:
            values = values | await promos.promo_values(
                turn.uow, turn.s, turn.lead, [text], turn.now
            )
        except promos.NoCode as no_code:
            log.warning("reply to lead %s shows no code: %s", turn.lead.id, no_code)
            m = turn.s.messages
            instead = m.promo_ended if isinstance(no_code, promos.PromoEnded) else m.promo_used_up
            values = values | {
                name: instead for name in placeholders(text) if name.startswith("promo.")
            }
        turn.reply.messages[index] = dataclasses.replace(message, text=render(text, values))
    turn.with_promos = []
