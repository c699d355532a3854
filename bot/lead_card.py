"""The lead card managers see: who the lead is, why they qualified, where the deal stands.
Rendered from the database each time it is posted or edited, so it always shows the present."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.booking import booking_line
from bot.crm import CrmLead
from bot.messages import Button
from bot.scenario.model import Scenario
from storage.models import Contact, Handoff, Identity, Lead
from storage.unit_of_work import UnitOfWork

Rows = tuple[tuple[Button, ...], ...]
EVENTS_SHOWN = 5
# Bookkeeping events managers do not need to read on a card.
QUIET_EVENTS = frozenset({"step_sent", "broadcast_sent", "answered", "sequence_started"})
STATUS = {
    "open": "🟢 Ждёт менеджера",
    "claimed": "🤝 Взял: {manager}",
    "won": "✅ Сделка: {amount} (закрыл {manager})",
    "lost": "❌ Отказ: {reason} ({manager})",
    "not_fit": "🚫 Не наш клиент ({manager})",
}


def chat_link(identity: Identity) -> str:
    """Where a manager opens a chat with the lead, where the platform allows it."""
    if identity.channel == "telegram":
        if identity.username:
            return f"Telegram: https://t.me/{identity.username}"
        return f"Telegram: tg://user?id={identity.external_id}"
    if identity.channel == "vk":
        return f"VK: https://vk.com/id{identity.external_id}"
    return f"{identity.channel}: {identity.external_id}"


def card_buttons(lead_id: int, status: str) -> Rows:
    if status == "open":
        return (
            (
                Button("✋ Взял", action=f"h:claim:{lead_id}"),
                Button("🚫 Не наш клиент", action=f"h:nofit:{lead_id}"),
            ),
        )
    if status == "claimed":
        return (
            (
                Button("✅ Сделка", action=f"h:won:{lead_id}"),
                Button("❌ Отказ", action=f"h:lost:{lead_id}"),
            ),
        )
    return ()


def contact_line(contact: Contact) -> str:
    """📞 +79991234567 ✔ (the messenger verified it) or ✉️ name@company.ru."""
    icon = "📞" if contact.kind == "phone" else "✉️"
    return f"{icon} {contact.value}" + (" ✔" if contact.verified else "")


async def render_card(
    uow: UnitOfWork, s: Scenario, lead: Lead, handoff: Handoff | None, *, headline: str = ""
) -> tuple[str, Rows]:
    """The card's text and buttons; `headline` goes on top (a reminder says why it is back)."""
    zone = ZoneInfo(s.settings.timezone)
    answers = await uow.leads.answers(lead.id)
    name = s.name_answer({q: a.value for q, a in answers.items()}) or lead.first_name
    lines = [headline] if headline else []
    lines.append(f"🔥 Лид #{lead.id}" + (f" — {name}" if name else ""))
    if lead.erased_at is not None:
        lines.append("Данные удалены по просьбе клиента.")
    lines += [contact_line(contact) for contact in await uow.leads.contacts(lead.id)]
    for identity in await uow.leads.identities(lead.id):
        lines.append(chat_link(identity))
    details = []
    if lead.source:
        details.append(f"Источник: {lead.source}")
    if lead.offer:
        offer = s.offers.get(lead.offer)
        details.append(f"Оффер: {offer.title if offer else lead.offer}")
    if details:
        lines.append(" · ".join(details))
    lines.append(f"Баллы: {lead.score} · Стадия: {lead.stage}")
    if handoff is not None:
        lines.append(f"Почему: {handoff.rule}")
    if answers:
        lines.append("Ответы:")
        for question_id, answer in answers.items():
            question = s.questions.get(question_id)
            label = _short(question.text, 60) if question else question_id
            lines.append(f"• {label} — {_short(answer.value, 200)}")
    for booked in await uow.bookings.standing(lead.id):
        lines.append(f"📅 Запись: {booking_line(s, booked, zone)}")
    events = [
        e for e in await uow.events.for_lead(lead.id, limit=50) if e.name not in QUIET_EVENTS
    ]
    if events:
        lines.append("Последние события:")
        for event in events[:EVENTS_SHOWN]:
            lines.append(f"• {_local(event.created_at, zone)} {event.name}")
    status = handoff.status if handoff is not None else "open"
    if handoff is not None:
        lines.append(
            STATUS[status].format(
                manager=handoff.manager_name or "—",
                amount=handoff.amount or "—",
                reason=handoff.reason or "—",
            )
        )
    # A lead never handed over (shown by /lead) has no deal to claim or close.
    buttons = card_buttons(lead.id, status) if handoff is not None else ()
    return "\n".join(lines)[:4000], buttons


async def crm_lead(uow: UnitOfWork, s: Scenario, lead: Lead) -> CrmLead:
    """What the CRM export carries: the card's facts, as fields."""
    answers = await uow.leads.answers(lead.id)
    contacts = await uow.leads.contacts(lead.id)
    identity = await uow.leads.latest_identity(lead.id)
    handoff = await uow.session.get(Handoff, lead.id)
    name = s.name_answer({q: a.value for q, a in answers.items()}) or lead.first_name
    offer = s.offers[lead.offer].title if lead.offer in s.offers else lead.offer
    channel = identity.channel if identity else None
    utm = {"utm_source": lead.source, "utm_medium": channel, "utm_campaign": lead.offer}
    messenger = chat_link(identity) if identity else ""
    return CrmLead(
        lead_id=lead.id,
        title=f"Лид #{lead.id} из бота: {name or 'без имени'}" + (f" ({offer})" if offer else ""),
        name=name,
        phones=tuple(c.value for c in contacts if c.kind == "phone"),
        emails=tuple(c.value for c in contacts if c.kind == "email"),
        source=lead.source,
        utm={key: value for key, value in utm.items() if value},
        offer=offer,
        stage=lead.stage,
        score=lead.score,
        qualified_by=handoff.rule if handoff else None,
        answers=tuple(
            (s.questions[q].text if q in s.questions else q, a.value) for q, a in answers.items()
        ),
        messenger=messenger,
        created_at=lead.created_at,
    )


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%d.%m %H:%M")


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
