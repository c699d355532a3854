"""The commands a prospect can give at any time: /start (with a deep link), /stop, /promo,
/invite, /mydata and /delete."""

from __future__ import annotations

import logging
from typing import Any

from bot import promos, referrals, sequences, stages
from bot.consent import MARKETING, PERSONAL_DATA
from bot.engine import contacts, offers
from bot.engine.deeplink import parse_deep_link
from bot.engine.personal_data import personal_data_document
from bot.engine.turn import Turn, rows_of
from bot.messages import Button, FileRef, Outgoing
from bot.render import render

log = logging.getLogger(__name__)


async def start(turn: Turn) -> None:
    link = parse_deep_link(turn.incoming.payload)
    details: dict[str, Any] = {}
    if turn.incoming.payload:
        details["payload"] = turn.incoming.payload[:64]
    if not link.valid:
        details["payload_invalid"] = True
    for key in ("source", "referral", "offer"):
        if getattr(link, key):
            details[key] = getattr(link, key)
    if link.source and turn.lead.source is None:
        turn.lead.source = link.source[:64]  # first touch wins; later ones stay in events
    turn.record("start", **details)
    turn.lead.awaiting = None
    if link.referral and turn.new_lead:
        await join_by_referral(turn, link.referral)
    if link.offer and link.offer in turn.s.offers:
        await offers.take(turn, link.offer, from_link=True)
    else:
        turn.show_menu()


async def join_by_referral(turn: Turn, code: str) -> None:
    """A new lead came by a friend's link: attribute it and give the welcome code."""
    s = turn.s
    referrer = await referrals.attribute(turn.uow, s, turn.lead, code, turn.now)
    if referrer is None or s.referral is None:
        return
    turn.record("referral_joined", referrer=referrer.id)
    promo_id = s.referral.invitee_promo
    if promo_id is None or promo_id not in s.promos:
        return
    try:
        issued = await promos.issue(turn.uow, s, turn.lead, promo_id, turn.now)
    except promos.NoCode as no_code:
        log.warning("invited lead %s gets no welcome code: %s", turn.lead.id, no_code)
        return
    turn.reply.say(Outgoing(render(s.messages.referral_welcome, promos.code_values(s, issued))))


async def show_promos(turn: Turn) -> None:
    """/promo: the lead's live codes with their expiry."""
    m = turn.s.messages
    codes = await promos.live_codes(turn.uow, turn.s, turn.lead, turn.now)
    if not codes:
        turn.say(m.promo_none, buttons=turn.back_to_menu())
        return
    lines = [render(m.promo_list, turn.values())]
    lines += [
        render(m.promo_line, {"code": c.code, "discount": c.discount, "until": c.until})
        for c in codes
    ]
    turn.reply.say(Outgoing("\n".join(lines), buttons=rows_of(turn.back_to_menu())))


async def show_invite(turn: Turn) -> None:
    """/invite: the referral link and how many friends came; consent comes first, as the
    programme records who brought whom."""
    m = turn.s.messages
    if turn.s.referral is None:
        turn.say(m.invite_off, buttons=turn.back_to_menu())
        return
    if await turn.uow.leads.active_consent(turn.lead.id, PERSONAL_DATA) is None:
        contacts.ask(turn, PERSONAL_DATA, None)
        return
    counts = await referrals.counts(turn.uow, turn.lead.id)
    values = turn.values() | {
        referrals.REFERRAL_LINK: await turn.referral_link(),
        "friends": str(counts.friends),
        "qualified": str(counts.qualified),
    }
    text = render(m.invite, values).rstrip()
    if counts.friends:  # "пришли: 0" tells a new referrer nothing
        text += "\n\n" + render(m.invite_counts, values)
    turn.reply.say(Outgoing(text, buttons=rows_of(turn.back_to_menu())))


async def stop(turn: Turn) -> None:
    lead = turn.lead
    await turn.uow.leads.withdraw_consent(lead.id, MARKETING, now=turn.now)
    await sequences.stop_runs(turn.uow, lead.id, turn.now, "unsubscribed")
    if lead.unsubscribed_at is None:
        lead.unsubscribed_at = turn.now
        turn.record("unsubscribed")
    if stages.set_side_stage(
        lead, "unsubscribed", reason="/stop", now=turn.now, events=turn.uow.events
    ):
        turn.reached.add("unsubscribed")
    turn.say(turn.s.messages.unsubscribed, buttons=turn.back_to_menu())


async def my_data(turn: Turn) -> None:
    document = await personal_data_document(turn.uow, turn.lead)
    turn.say(turn.s.messages.my_data, file=FileRef(data=document, filename="mydata.json"))


def ask_to_delete(turn: Turn) -> None:
    turn.lead.awaiting = {"confirm": "delete"}
    m = turn.s.messages
    turn.say(
        m.delete_confirm,
        buttons=[[Button(m.delete_yes, action="del:y"), Button(m.delete_no, action="del:n")]],
    )


async def erase(turn: Turn) -> None:
    """/delete confirmed: forget the person; anonymous counts stay."""
    lead_id = turn.lead.id
    await sequences.stop_runs(turn.uow, lead_id, turn.now, "erased")
    await turn.uow.outbox.cancel_pending(lead_id, reason="erased")
    turn.record("erased")
    await turn.uow.leads.erase_personal_data(lead_id, now=turn.now)
    turn.name = None
    turn.reply.say(Outgoing(turn.s.messages.deleted))  # no placeholders: nothing is known


def keep_data(turn: Turn) -> None:
    turn.lead.awaiting = None
    turn.say(turn.s.messages.delete_cancelled, buttons=turn.back_to_menu())
