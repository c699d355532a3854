"""A lead's facts kept on its row (`leads.facts`), so the rules (`scoring.qualify`, a step's
`if:`, a segment) read them with the lead instead of counting its events, tags and contacts
again after every event.

Kept: how many times each event happened, the tags, the contact kinds left ("phone",
"email") and the offers taken. Answers are not kept: they are personal data with a table of
their own, read only when a rule reads them. NULL means "not known": computed from the tables
the next time a rule needs it, then kept. Whatever changes these facts in a way that is not
counted here (a merge, an erasure, an event for a lead this session has not loaded) makes
them NULL, so a kept value is never wrong, at worst computed again.

The counting happens as a row is added (`EventRepository.add`, `add_tag`, `add_contact`),
for a lead this transaction holds, in a working copy that goes on the lead's row at commit:
no statement of its own. A lead made in this transaction starts with empty facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import Contact, Event, Lead, Tag

OFFER_TAKEN = "offer_taken"
# session.info keys. WORKING: lead id -> the lead and its facts as counted so far in this
# transaction (the object held: the session's identity map would let it go), put on its row
# at commit (with the update every turn makes of the lead anyway, not
# in a statement of their own at each flush). STALE: leads whose facts could not be counted
# here (not loaded): NULLed at commit, and computed again if a rule reads them before.
WORKING = "kept_facts_working"
STALE = "kept_facts_stale"


def counted(
    facts: Mapping[str, Any] | None, name: str, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The facts after one more `name` event (None stays None)."""
    if facts is None:
        return None
    events = dict(facts.get("events", {}))
    events[name] = events.get(name, 0) + 1
    changed = {**facts, "events": events}
    offer = payload.get("offer") if name == OFFER_TAKEN else None
    if isinstance(offer, str) and offer and offer not in facts.get("offers", []):
        changed["offers"] = sorted([*facts.get("offers", []), offer])
    return changed


def current(session: AsyncSession | Session, lead: Lead) -> dict[str, Any] | None:
    """The lead's facts as this transaction knows them (None: not known)."""
    if lead.id in session.info.get(STALE, ()):
        return None
    held = session.info.get(WORKING, {}).get(lead.id)
    return held[1] if held is not None else lead.facts


def keep(session: AsyncSession | Session, lead: Lead, facts: dict[str, Any]) -> None:
    """These are the lead's facts now (put on its row at commit)."""
    session.info.setdefault(WORKING, {})[lead.id] = (lead, facts)
    session.info.get(STALE, set()).discard(lead.id)


def _loaded(session: Session, lead_id: int) -> Lead | None:
    found = session.identity_map.get(session.identity_key(Lead, lead_id))  # type: ignore[arg-type]
    return found if isinstance(found, Lead) else None


def _change(session: Session, lead_id: int, how: Any) -> None:
    lead = _loaded(session, lead_id)
    if lead is None:
        session.info.setdefault(STALE, set()).add(lead_id)
        return
    facts = current(session, lead)
    if facts is not None:
        keep(session, lead, how(facts))


def on_event(session: Session, lead_id: int, name: str, payload: Mapping[str, Any]) -> None:
    _change(session, lead_id, lambda facts: counted(facts, name, payload))


def _with(kind: str, value: str) -> Any:
    def add(facts: dict[str, Any]) -> dict[str, Any]:
        values = facts.get(kind, [])
        return facts if value in values else {**facts, kind: sorted([*values, value])}

    return add


def on_tag(session: Session, lead_id: int, tag: str) -> None:
    _change(session, lead_id, _with("tags", tag))


def on_contact(session: Session, lead_id: int, kind: str) -> None:
    _change(session, lead_id, _with("contacts", kind))


def holds(session: Session, lead_id: int, kind: str, value: str) -> bool | None:
    """Whether the lead has this tag (`kind` "tags") or a contact of this kind ("contacts"),
    as far as its kept facts say; None when this transaction does not know them."""
    lead = _loaded(session, lead_id)
    facts = None if lead is None else current(session, lead)
    return None if facts is None else value in facts.get(kind, [])


def empty() -> dict[str, Any]:
    """The facts of a new lead: it has done nothing yet."""
    return {"events": {}, "tags": [], "contacts": [], "offers": []}


def rolled_back(session: Session, _previous: Any = None) -> None:
    """A savepoint rolled back: what was counted since may be undone; computed again."""
    working = session.info.pop(WORKING, {})
    session.info.setdefault(STALE, set()).update(working)


async def forget(session: AsyncSession, lead_ids: Iterable[int]) -> None:
    """These leads' facts changed in a way not counted (a merge, an erasure): NULL, in this
    session's objects too, so they are computed again when next read."""
    ids = sorted(set(lead_ids))
    if not ids:
        return
    working = session.info.get(WORKING, {})
    for lead_id in ids:
        working.pop(lead_id, None)
    await session.execute(
        update(Lead).where(Lead.id.in_(ids)).values(facts=None),
        execution_options={"synchronize_session": "fetch"},
    )


async def settle(session: AsyncSession) -> None:
    """At commit: the counted facts go on the leads' rows; the stale ones are NULLed."""
    for lead, facts in session.info.pop(WORKING, {}).values():
        if lead.facts != facts:
            lead.facts = facts
    stale = session.info.pop(STALE, None)
    if stale:
        await forget(session, stale)


async def compute(session: AsyncSession, lead_id: int) -> dict[str, Any]:
    """The facts from the tables (after a flush of what this transaction added)."""
    await session.flush()
    counts = await session.execute(
        select(Event.name, func.count()).where(Event.lead_id == lead_id).group_by(Event.name)
    )
    tags = await session.execute(select(Tag.tag).where(Tag.lead_id == lead_id))
    contacts = await session.execute(
        select(Contact.kind).where(Contact.lead_id == lead_id).distinct()
    )
    offers = await session.execute(
        select(Event.payload["offer"].as_string())
        .where(Event.lead_id == lead_id, Event.name == OFFER_TAKEN)
        .distinct()
    )
    return {
        "events": dict(counts.all()),  # type: ignore[arg-type]
        "tags": sorted(tags.scalars()),
        "contacts": sorted(contacts.scalars()),
        "offers": sorted(offer for offer in offers.scalars() if offer),
    }
