"""Events from outside the chat: the website or CRM reporting what a lead did (the events
API), and clicks on tracked links. Scored, qualified and reacted to like events in the chat,
in one transaction each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from bot import reactions, scoring, sequences, stages
from bot.engine.funnel import Funnel
from bot.handoff import lead_by_contact
from bot.scenario.model import Scenario
from bot.scoring import Routes
from bot.tracking import with_lead_token
from storage.models import Lead, TrackedLink
from storage.unit_of_work import UnitOfWork


class Refused(Exception):
    """The request cannot be applied; the message says why (for a 400 or 404 answer)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class LeadRef:
    """How the caller names the lead: its number, a phone, an e-mail or a tracking token."""

    lead_id: int | None = None
    phone: str | None = None
    email: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class Recorded:
    lead_id: int
    score: int
    stage: str
    qualified: bool  # this event made the lead qualify
    duplicate: bool = False


class OutsideEvents:
    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel

    async def record(
        self,
        ref: LeadRef,
        name: str,
        *,
        amount: Decimal | None = None,
        details: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Recorded:
        """Record event `name` for the lead; `key` (the caller's id of the event) makes a
        retried request count once."""
        s = self.funnel.scenarios.current.scenario
        if name not in s.known_events():
            raise Refused(400, f"unknown event {name!r}: declare it under events: in the scenario")
        now = self.funnel.clock.now()
        payload: dict[str, Any] = {**(details or {}), "via": "api"}
        if amount is not None:
            payload["amount"] = float(amount)
        async with self.funnel.db.unit_of_work() as uow:
            lead = await lead_named(uow, ref, self.funnel.phone_region)
            if key and not await uow.inbound.first_time(f"api:{key}"[:96], now=now):
                return Recorded(lead.id, lead.score, lead.stage, False, duplicate=True)
            qualified = await apply_event(uow, s, lead, name, payload, **self._context())
            await uow.commit()
        return Recorded(lead.id, lead.score, lead.stage, qualified)

    async def click(self, token: str) -> str | None:
        """A tracked link was opened: the URL to redirect to (None: unknown). The first click
        is recorded, with the button's event; opening it again only redirects, so a link
        requested over and over (a bot, a preview, a person) scores once."""
        s = self.funnel.scenarios.current.scenario
        async with self.funnel.db.unit_of_work() as uow:
            link = await uow.session.get(TrackedLink, token)
            if link is None:
                return None
            first = await uow.leads.first_click(token, now=self.funnel.clock.now())
            lead = await uow.leads.get(link.lead_id, lock=True) if first else None
            if lead is not None and lead.erased_at is None:
                context = self._context()
                # The step or broadcast whose button this is: the A/B report's click.
                target, recorded = link.url, link.event or ""
                place = sequences.button_place(
                    s, lambda b: b.url == target and (b.event or "") == recorded
                )
                clicked = {"url": link.url, **place}
                await apply_event(uow, s, lead, "link_clicked", clicked, **context)
                if link.event:
                    details = {"via": "link", **place}
                    await apply_event(uow, s, lead, link.event, details, **context)
            url = link.url
            await uow.commit()
        return with_lead_token(url, token)

    def _context(self) -> dict[str, Any]:
        return {"now": self.funnel.clock.now(), "routes": self.funnel.routes}


async def lead_named(uow: UnitOfWork, ref: LeadRef, phone_region: str) -> Lead:
    """The lead the caller names, locked; `Refused` (404) when there is none."""
    lead: Lead | None = None
    if ref.lead_id is not None:
        lead = await uow.leads.get(ref.lead_id)
    elif ref.token:
        link = (
            await uow.session.execute(
                select(TrackedLink.lead_id).where(TrackedLink.token == ref.token)
            )
        ).scalar_one_or_none()
        lead = await uow.leads.get(link) if link is not None else None
    elif ref.phone or ref.email:
        kind = "phone" if ref.phone else "email"
        text = ref.phone or ref.email or ""
        lead = await lead_by_contact(uow, kind, text, phone_region)
    if lead is None or lead.erased_at is not None:
        raise Refused(404, "no such lead")
    locked = await uow.leads.get(lead.id, lock=True)
    assert locked is not None
    return locked


async def apply_event(
    uow: UnitOfWork,
    s: Scenario,
    lead: Lead,
    name: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    routes: Routes,
) -> bool:
    """Record an event that did not come through the chat and do what the chat would: score
    it, move a buyer to `customer`, check the qualify rules, react. The caller holds the
    lead's lock. True when this event made the lead qualify."""
    uow.events.add(lead.id, name, now=now, payload=payload)
    await scoring.score_event(uow, s, lead, name)
    reached: set[str] = set()
    recorded = [(name, payload)]
    if name == "purchase" and stages.advance(
        lead, "customer", reason="purchase reported", now=now, events=uow.events
    ):
        reached.add("customer")
    why = await scoring.qualify(uow, s, lead, now, routes)
    if why is not None:
        recorded.append(("qualified", {"rule": why}))
        reached.add("qualified")
    await reactions.react_and_record(uow, s, lead, now, recorded, reached)
    lead.updated_at = now
    return why is not None
