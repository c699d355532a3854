"""The scenario's `settings.ad_limit`: at most `max` advertising messages to a lead in any
`per`. A message over the limit is not dropped: it waits until the window frees.

What counts is what the database says was sent (outbox rows of the advertising kinds, status
`sent`, within the window) plus what is on its way (status `sending`: claimed by a worker,
perhaps on the wire now), read once per batch in the transaction that prepares it. That
transaction holds the batch's leads locked, so two workers preparing messages for one lead
take turns, and the second sees what the first let through (`sending`) or put off
(`pending` again). A row on its way counts as sent now: should it not go after all, the one
it held back waited for nothing, which is the safe side of the promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from bot import sequences
from bot.delivery.outcomes import ADVERTISING, Prepared, Skip
from bot.scenario.model import Scenario
from bot.scenario.settings import AdLimit, ScenarioSettings
from bot.timing import out_of_quiet_hours, zone_of
from storage.models import OutboxRow
from storage.unit_of_work import UnitOfWork


@dataclass
class AdLog:
    """The advertising each lead of a batch had within the window, as send moments."""

    limit: AdLimit
    sent: dict[int, list[datetime]] = field(default_factory=dict)

    def free_at(self, lead_id: int, now: datetime) -> datetime | None:
        """None if one more may go now, else the moment the window lets it out: when the
        oldest of the last `max` sends is `per` old."""
        moments = sorted(self.sent.get(lead_id, ()))
        if len(moments) < self.limit.max:
            return None
        return max(moments[len(moments) - self.limit.max] + self.limit.per, now)

    def check(
        self, lead_id: int, timezone: str | None, settings: ScenarioSettings, now: datetime
    ) -> None:
        """Raise a Skip that puts the message off to the moment the window frees (and out of
        quiet hours, so it is not claimed only to wait again)."""
        free_at = self.free_at(lead_id, now)
        if free_at is None:
            return
        zone = zone_of(timezone, settings.timezone)
        raise Skip(
            "pending",
            f"ad_limit: {self.limit.max} in {_span(self.limit.per)} reached",
            due=out_of_quiet_hours(free_at, zone, settings.quiet_hours),
        )

    def count(self, lead_id: int, now: datetime) -> None:
        """A message of this batch is let through: later ones of the batch count it."""
        self.sent.setdefault(lead_id, []).append(now)


def _span(length: timedelta) -> str:
    """A length as the scenario writes it (7d, 36h, 90m), for the row's `last_error`."""
    minutes = int(length.total_seconds() // 60)
    for unit, size in (("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


async def load_ad_log(
    uow: UnitOfWork, scenario: Scenario, rows: Sequence[Prepared], now: datetime
) -> AdLog | None:
    """One read for the whole batch (none without a limit or advertising). The batch's own
    rows are `sending` too, but they are still being decided: each counts once it is let
    through (`AdLog.count`). `service:` steps are no advertising and do not count."""
    limit = scenario.settings.ad_limit
    lead_ids = sorted({item.lead_id for item in rows if item.kind in ADVERTISING})
    if limit is None or not lead_ids:
        return None
    fields = (OutboxRow.id, OutboxRow.lead_id, OutboxRow.kind, OutboxRow.payload)
    query = select(*fields, OutboxRow.status, OutboxRow.sent_at).where(
        OutboxRow.lead_id.in_(lead_ids),
        OutboxRow.kind.in_(sorted(ADVERTISING)),
        or_(
            OutboxRow.status == "sending",
            (OutboxRow.status == "sent") & (OutboxRow.sent_at > now - limit.per),
        ),
    )
    batch_rows = {item.row_id for item in rows}
    log = AdLog(limit)
    for row_id, lead_id, kind, payload, status, sent_at in await uow.session.execute(query):
        step = sequences.step_of(scenario, payload) if kind == sequences.STEP else None
        if row_id not in batch_rows and not (step is not None and step.service):
            log.count(lead_id, sent_at if status == "sent" and sent_at is not None else now)
    return log
