"""/mydata: everything stored about a person, as one JSON document they can keep."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from storage.models import Lead
from storage.unit_of_work import UnitOfWork


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def personal_data_document(uow: UnitOfWork, lead: Lead) -> bytes:
    identities = await uow.leads.identities(lead.id)
    consents = await uow.leads.consents(lead.id)
    document: dict[str, Any] = {
        "lead": {
            "id": lead.id,
            "created_at": _time(lead.created_at),
            "stage": lead.stage,
            "score": lead.score,
            "first_name": lead.first_name,
            "source": lead.source,
            "last_offer": lead.offer,
            "timezone": lead.timezone,
            "unsubscribed_at": _time(lead.unsubscribed_at),
        },
        "messenger_accounts": [
            {
                "channel": i.channel,
                "id": i.external_id,
                "username": i.username,
                "first_seen": _time(i.created_at),
            }
            for i in identities
        ],
        "contacts": [
            {
                "kind": c.kind,
                "value": c.value,
                "verified": c.verified,
                "channel": c.channel,
                "saved_at": _time(c.created_at),
            }
            for c in await uow.leads.contacts(lead.id)
        ],
        "consents": [
            {
                "kind": c.kind,
                "text_version": c.text_version,
                "channel": c.channel,
                "given_at": _time(c.given_at),
                "withdrawn_at": _time(c.withdrawn_at),
            }
            for c in consents
        ],
        "answers": {
            question: {"value": a.value, "at": _time(a.created_at)}
            for question, a in sorted((await uow.leads.answers(lead.id)).items())
        },
        "tags": sorted(await uow.leads.tags(lead.id)),
        "promo_codes": [
            {
                "promo": c.promo,
                "code": c.code,
                "issued_at": _time(c.issued_at),
                "expires_at": _time(c.expires_at),
            }
            for c in await uow.promos.for_lead(lead.id)
        ],
        "sequences": [
            {"sequence": r.sequence, "status": r.status, "started_at": _time(r.started_at)}
            for r in await uow.sequences.for_lead(lead.id)
        ],
        "events": [
            {"name": e.name, "at": _time(e.created_at), "details": e.payload}
            for e in reversed(await uow.events.for_lead(lead.id, limit=10_000))
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()
