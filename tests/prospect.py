"""A scripted prospect for engine tests: presses buttons by their label, as a person would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot.engine.funnel import Funnel
from bot.messages import Incoming, Kind, Outgoing, Reply
from storage.database import Database
from storage.models import Event


class Prospect:
    def __init__(
        self,
        funnel: Funnel,
        external_id: str = "1001",
        *,
        channel: str = "telegram",
        first_name: str = "Анна",
    ) -> None:
        self.funnel = funnel
        self.external_id = external_id
        self.channel = channel
        self.first_name = first_name
        self.last: list[Outgoing] = []
        self.reply = Reply()

    async def send(self, kind: Kind, **fields: object) -> list[Outgoing]:
        incoming = Incoming(
            channel=self.channel,
            external_id=self.external_id,
            kind=kind,
            first_name=self.first_name,
            **fields,
        )  # type: ignore[arg-type]
        self.reply = await self.funnel.handle(incoming)
        self.last = self.reply.messages
        return self.last

    async def start(self, payload: str | None = None) -> list[Outgoing]:
        return await self.send(Kind.START, payload=payload)

    async def say(self, text: str) -> list[Outgoing]:
        return await self.send(Kind.TEXT, text=text)

    async def share(self, phone: str, *, own: bool = True) -> list[Outgoing]:
        return await self.send(Kind.CONTACT, phone=phone, contact_is_own=own)

    async def press(self, label: str) -> list[Outgoing]:
        """Press the button with this label in the bot's last reply."""
        for message in self.last:
            for row in message.buttons:
                for button in row:
                    if button.text == label and button.action:
                        return await self.send(Kind.BUTTON, payload=button.action)
        raise AssertionError(f"no button {label!r} in {self.labels()}")

    def texts(self) -> str:
        return "\n".join(m.text for m in self.last)

    def labels(self) -> list[str]:
        return [b.text for m in self.last for row in m.buttons for b in row]


async def snapshot(db: Database, external_id: str, channel: str = "telegram") -> LeadState:
    """Everything stored about one prospect, read in a fresh transaction."""
    async with db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity(channel, external_id)
        assert found is not None, f"no lead for {channel}:{external_id}"
        lead, _ = found
        return LeadState(
            lead_id=lead.id,
            stage=lead.stage,
            funnel_stage=lead.funnel_stage,
            score=lead.score,
            source=lead.source,
            offer=lead.offer,
            awaiting=lead.awaiting,
            tags=await uow.leads.tags(lead.id),
            answers={q: a.value for q, a in (await uow.leads.answers(lead.id)).items()},
            contacts={(c.kind, c.value, c.verified) for c in await uow.leads.contacts(lead.id)},
            consents={
                kind
                for kind in ("personal_data", "marketing")
                if await uow.leads.active_consent(lead.id, kind)
            },
            events=[e.name for e in reversed(await uow.events.for_lead(lead.id))],
            sequences={r.sequence: r.status for r in await uow.sequences.for_lead(lead.id)},
            stages=[c.to_stage for c in await uow.events.stage_history(lead.id)],
        )


@dataclass
class LeadState:
    lead_id: int
    stage: str
    funnel_stage: str
    score: int
    source: str | None
    offer: str | None
    awaiting: dict[str, Any] | None
    tags: set[str]
    answers: dict[str, str]
    contacts: set[tuple[str, str, bool]]
    consents: set[str]
    events: list[str]
    sequences: dict[str, str]
    stages: list[str]


async def events_of(db: Database, lead_id: int, name: str) -> list[dict[str, Any]]:
    """The details of the lead's events of this name, oldest first."""
    async with db.unit_of_work() as uow:
        query = select(Event.payload).where(Event.lead_id == lead_id, Event.name == name)
        return list((await uow.session.execute(query.order_by(Event.id))).scalars())
