"""Consent and contacts: asking for consent and recording the answer, storing a phone or an
e-mail, one lead when a contact shows the person is known, and the managers' notice."""

from __future__ import annotations

from bot import merge, stages
from bot.answers import InvalidAnswer, normalize_phone
from bot.consent import MARKETING, PERSONAL_DATA, marketing_version, personal_data_version
from bot.engine.turn import Turn
from bot.handoff import post_about_lead
from bot.logs import about_lead
from bot.messages import Button
from bot.rule_facts import times


async def consent_to_ask(turn: Turn) -> str | None:
    """The consent an offer's questions and chain wait for: personal data, then (when the
    scenario asks it) advertising; None when both are answered."""
    if await turn.uow.leads.active_consent(turn.lead.id, PERSONAL_DATA) is None:
        return PERSONAL_DATA
    if turn.s.consent.marketing and not await marketing_answered(turn):
        return MARKETING
    return None


async def marketing_answered(turn: Turn) -> bool:
    if await turn.uow.leads.active_consent(turn.lead.id, MARKETING) is not None:
        return True
    # Asked and declined (or /stop) once is an answer: do not ask at every offer.
    return (
        turn.lead.unsubscribed_at is not None
        or await times(turn.uow, turn.lead, "marketing_consent_declined") > 0
    )


def ask(turn: Turn, kind: str, offer_id: str | None) -> None:
    """Personal data before contacts are stored for an offer, or (no offer) before the
    referral link; advertising before an offer's chain."""
    if kind == MARKETING:
        ask_marketing(turn, offer_id)
        return
    turn.lead.awaiting = {"consent": PERSONAL_DATA, "offer": offer_id}
    c = turn.s.consent
    turn.say(c.text, buttons=[[Button(c.accept, action="c:y"), Button(c.decline, action="c:n")]])


def ask_marketing(turn: Turn, offer_id: str | None) -> None:
    turn.lead.awaiting = {"consent": MARKETING, "offer": offer_id}
    c = turn.s.consent
    assert c.marketing is not None
    turn.say(
        c.marketing,
        buttons=[
            [Button(c.marketing_accept, action="m:y"), Button(c.marketing_decline, action="m:n")]
        ],
    )


async def answer_personal_data(turn: Turn, accepted: bool, offer_id: str | None) -> bool:
    """Record the answer; True when what waited for it goes on."""
    if not accepted:
        turn.lead.awaiting = None
        turn.record("consent_declined", offer=offer_id)
        turn.say(turn.s.messages.consent_declined, buttons=turn.menu_buttons(turn.s.start.buttons))
        return False
    version = personal_data_version(turn.s.consent)
    await turn.uow.leads.give_consent(
        turn.lead.id,
        PERSONAL_DATA,
        text_version=version,
        channel=turn.incoming.channel,
        now=turn.now,
    )
    turn.record("consent_given", kind=PERSONAL_DATA, version=version)
    return True


async def answer_marketing(turn: Turn, accepted: bool) -> None:
    """Either answer lets the offer go on: advertising is never a condition of the magnet."""
    if not accepted:
        turn.record("marketing_consent_declined")
        return
    version = marketing_version(turn.s.consent)
    await turn.uow.leads.give_consent(
        turn.lead.id, MARKETING, text_version=version, channel=turn.incoming.channel, now=turn.now
    )
    turn.lead.unsubscribed_at = None
    stages.leave_side_stage(
        turn.lead, "unsubscribed", reason="marketing consent", now=turn.now, events=turn.uow.events
    )
    turn.record("marketing_consent_given", version=version)


async def add(turn: Turn, kind: str, value: str, *, verified: bool) -> None:
    """A contact the lead gave (an answer, or a shared phone)."""
    await turn.uow.leads.add_contact(
        turn.lead.id, kind, value, verified=verified, channel=turn.incoming.channel, now=turn.now
    )
    turn.record("contact_shared", kind=kind, verified=verified)


async def store_shared_phone(turn: Turn, phone: str) -> None:
    """A phone shared when nobody asked: kept (with consent) as a verified contact."""
    try:
        value = normalize_phone(with_plus(phone), turn.funnel.phone_region)
    except InvalidAnswer:
        return
    await add(turn, "phone", value, verified=True)
    turn.advance("contact", "phone shared")
    await merge_on(turn, "phone", value, verified=True)


async def merge_on(turn: Turn, kind: str, value: str, *, verified: bool) -> None:
    """A verified contact may show the person has a lead in another messenger: one lead
    from now on (bot.merge), and this turn goes on with it."""
    merged = await merge.on_contact(
        turn.uow,
        turn.s,
        turn.lead,
        kind,
        value,
        verified=verified,
        now=turn.now,
        managers=turn.funnel.routes.managers,
    )
    if merged is not None:
        turn.lead = merged
        about_lead(merged.id)  # the event goes on as the merged lead's
        await turn.load_answers()


async def announce(turn: Turn) -> None:
    """Tell the managers' chat about a lead who just left contacts."""
    if not turn.funnel.routes.managers:
        return
    lead, identity = turn.lead, turn.identity
    contacts = await turn.uow.leads.contacts(lead.id)
    lines = [f"🆕 Новый лид #{lead.id} оставил контакты"]
    if turn.name or lead.first_name:
        lines.append(f"Имя: {turn.name or lead.first_name}")
    lines += [f"{'Телефон' if c.kind == 'phone' else 'E-mail'}: {c.value}" for c in contacts]
    if lead.source:
        lines.append(f"Источник: {lead.source}")
    if lead.offer in turn.s.offers:
        lines.append(f"Оффер: {turn.s.offers[lead.offer].title}")
    account = f"@{identity.username}" if identity.username else f"id {identity.external_id}"
    lines.append(f"{identity.channel}: {account}")
    await post_about_lead(
        turn.uow,
        lead.id,
        "\n".join(lines),
        purpose="notice",
        key=f"contact:{lead.id}",
        managers=turn.funnel.routes.managers,
        now=turn.now,
    )


def with_plus(phone: str) -> str:
    # Telegram sends shared phones without "+"; they are always international.
    phone = phone.strip()
    return phone if phone.startswith("+") else f"+{phone}"
