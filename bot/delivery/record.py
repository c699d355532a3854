"""Recording what became of rows, a group at a time: every row sent or decided in the last few
milliseconds is written in one transaction of a few statements (a group commit), so a crash
repeats at most the messages that were on the wire, not a whole batch.

A row is recorded only while it is still this worker's: a row taken over by another worker
after its lease ran out is left to that worker. A row the engine cancelled while it was on the
wire is recorded as sent (it was). Leads are locked first, in id order, as everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update

from bot import sequences
from bot.delivery.outcomes import MAX_ATTEMPTS, Outcome, Prepared, Skip, backoff
from bot.delivery.prepare import lock_leads
from bot.handoff import MANAGERS_POST, remember_message
from bot.metrics import Metrics, delivery_outcome
from bot.scenario.active import ActiveScenario
from bot.scenario.model import Scenario
from bot.scoring import CARD, CRM_EXPORT
from storage import kept_facts
from storage.database import Database
from storage.models import Event, Lead, OutboxRow, SequenceRun, UTCDateTime
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# A message of a row of several is out; the rest are not yet.
PROGRESS = Skip("progress", "")

_table = OutboxRow.__table__
_PROGRESS = (
    update(_table).where(_table.c.id == bindparam("row_id")).values(parts_sent=bindparam("parts"))
)
_DECIDED = (
    update(_table)
    .where(_table.c.id == bindparam("row_id"))
    .values(
        status=bindparam("new_status"),
        due_at=bindparam("due", type_=UTCDateTime()),
        attempts=bindparam("tries"),
        parts_sent=bindparam("parts"),
        lease_until=None,
        leased_by=None,
        last_error=bindparam("error"),
    )
)


_FACTS = (
    update(Lead.__table__)
    .where(Lead.__table__.c.id == bindparam("lead"))
    .values(facts=bindparam("kept", type_=Lead.__table__.c.facts.type))
)
# A step's question is now what the lead's next text answers.
_AWAIT = (
    update(Lead.__table__)
    .where(Lead.__table__.c.id == bindparam("lead"))
    .values(awaiting=bindparam("awaits", type_=Lead.__table__.c.awaiting.type))
)
_RUN_ENDED = (
    update(SequenceRun.__table__)
    .where(SequenceRun.__table__.c.id == bindparam("run"))
    .values(
        status=bindparam("new_status"),
        stopped_at=bindparam("at", type_=UTCDateTime()),
        stop_reason=bindparam("reason"),
    )
)


async def still_mine(uow: UnitOfWork, row_ids: Sequence[int], worker: str) -> dict[int, str]:
    """The status of those rows this worker still holds the lease of."""
    if not row_ids:
        return {}
    query = select(OutboxRow.id, OutboxRow.status).where(
        OutboxRow.id.in_(row_ids), OutboxRow.leased_by == worker
    )
    return dict((await uow.session.execute(query)).all())  # type: ignore[arg-type]


class Recorder:
    def __init__(
        self,
        db: Database,
        scenarios: ActiveScenario,
        worker_id: str,
        now: Any,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.scenarios = scenarios
        self.worker_id = worker_id
        self.now = now  # the clock's `now`
        self.metrics = metrics

    async def flush(self, outcomes: list[Outcome]) -> list[None]:
        """The group commit: one transaction for every outcome handed in meanwhile."""
        async with self.db.unit_of_work() as uow:
            # A managers' post may be about no lead (lead_id 0: an A/B test decided).
            lead_ids = [item.lead_id for item, _ in outcomes if item.lead_id]
            leads = await lock_leads(
                uow, lead_ids, (Lead.id, Lead.timezone, Lead.awaiting, Lead.facts)
            )
            await self.apply(uow, self.scenarios.current.scenario, outcomes, leads)
            await uow.commit()
        return [None] * len(outcomes)

    async def apply(
        self,
        uow: UnitOfWork,
        s: Scenario,
        outcomes: Sequence[Outcome],
        leads: dict[int, Row[Any]],
    ) -> None:
        """Write the outcomes; the caller holds the leads' locks and commits."""
        if not outcomes:
            return
        now = self.now()
        sent = await self._mark_sent(uow, [item for item, skip in outcomes if skip is None], now)
        others = [(item, skip) for item, skip in outcomes if skip is not None]
        mine = await still_mine(uow, [item.row_id for item, _ in others], self.worker_id)
        progress: list[Prepared] = []
        decided: list[tuple[Prepared, Skip]] = []
        for item, skip in others:
            status = mine.get(item.row_id)
            if status is None:
                log.warning("outbox row %s was taken over while being sent", item.row_id)
            elif status != "sending":
                continue  # the engine cancelled it; nothing more of it went out
            elif skip is PROGRESS:
                progress.append(item)
            else:
                decided.append((item, skip))
        session = uow.session
        if progress:
            await session.execute(
                _PROGRESS, [{"row_id": i.row_id, "parts": i.parts_sent} for i in progress]
            )
        asked = [skip.status for _, skip in decided]  # `_decision` turns them into statuses
        if decided:
            await session.execute(_DECIDED, [self._decision(i, skip, now) for i, skip in decided])
        if self.metrics is not None:
            # Counted here, every row's fate passing through this one place (the worker's
            # skips at preparation too); a commit failing after this over-counts, rarely.
            for item in sent:
                self.metrics.row_recorded(item.channel, "sent")
                if item.kind == CARD:
                    self.metrics.card_posted(item.channel, item.payload.get("purpose", "card"))
            for (item, skip), before in zip(decided, asked, strict=True):
                self.metrics.row_recorded(item.channel, delivery_outcome(before, skip.status))
        await self._follow_up(uow, s, sent, decided, leads, now)

    async def _mark_sent(
        self, uow: UnitOfWork, items: list[Prepared], now: datetime
    ) -> list[Prepared]:
        """Mark the rows sent, one statement per number of messages a row had (mostly one);
        those still this worker's, even if cancelled meanwhile: they went out."""
        by_parts: dict[int, list[Prepared]] = {}
        for item in items:
            by_parts.setdefault(item.parts_sent, []).append(item)
        recorded: set[int] = set()
        for parts, group in by_parts.items():
            statement = (
                update(_table)
                .where(
                    _table.c.id.in_([item.row_id for item in group]),
                    _table.c.leased_by == self.worker_id,
                )
                .values(status="sent", sent_at=now, lease_until=None, parts_sent=parts)
                .returning(_table.c.id)
            )
            recorded.update((await uow.session.execute(statement)).scalars())
        for item in items:
            if item.row_id not in recorded:
                log.warning("outbox row %s was taken over while being sent", item.row_id)
        return [item for item in items if item.row_id in recorded]

    def _decision(self, item: Prepared, skip: Skip, now: datetime) -> dict[str, Any]:
        status, due, tries = skip.status, now, item.attempts
        if status == "retry":
            status = "failed" if item.attempts >= MAX_ATTEMPTS else "pending"
            due = now + timedelta(seconds=backoff(item.attempts))
        elif status == "pending":
            # Quiet hours, pacing and a platform's retry-after are no failure of the row:
            # they do not count towards MAX_ATTEMPTS.
            due, tries = skip.due or now, max(item.attempts - 1, 0)
        if status in ("failed", "cancelled", "skipped"):
            log.info("outbox row %s %s: %s", item.row_id, status, skip.reason)
        skip.status = status
        return {
            "row_id": item.row_id,
            "new_status": status,
            "due": due,
            "tries": tries,
            "parts": item.parts_sent,
            "error": skip.reason[:500],
        }

    async def _follow_up(
        self,
        uow: UnitOfWork,
        s: Scenario,
        sent: list[Prepared],
        decided: list[tuple[Prepared, Skip]],
        leads: dict[int, Row[Any]],
        now: datetime,
    ) -> None:
        """Events, posts to remember, questions now awaited and the next step of each chain."""
        events: list[dict[str, Any]] = []
        awaiting: list[dict[str, Any]] = []
        for item in sent:
            if item.kind in (CARD, MANAGERS_POST):
                # A reply to a post about no lead has no one to go to: not remembered.
                if item.reference is not None and item.lead_id:
                    kind = "card" if item.kind == CARD else item.details["purpose"]
                    await remember_message(
                        uow, item.channel, item.reference, item.lead_id, kind, now
                    )
            elif item.kind == CRM_EXPORT:
                payload = {"target": item.details["target"], "id": item.reference}
                events.append(_event(item, "crm_exported", now, payload, channel=None))
            elif "broadcast" in item.details:
                events.append(
                    _event(item, "broadcast_sent", now, {"broadcast": item.details["broadcast"]})
                )
            elif item.kind == sequences.STEP:
                details = item.details
                payload = {k: details[k] for k in ("sequence", "step", "variant")}
                events.append(_event(item, "step_sent", now, payload))
                lead = leads.get(item.lead_id)
                # never cut into an offer's questions
                if details.get("ask") and lead is not None and lead.awaiting is None:
                    question = {k: details[k] for k in ("sequence", "step")}
                    awaiting.append(
                        {"lead": item.lead_id, "awaits": {"question": details["ask"], **question}}
                    )
        session = uow.session
        if events:
            await session.execute(insert(Event.__table__), events)
            await _count_events(uow, events, leads)
        if awaiting:
            await session.execute(_AWAIT, awaiting)
        steps_sent = [i for i in sent if i.kind == sequences.STEP]
        steps_ended = [
            (i, skip)
            for i, skip in decided
            if i.kind == sequences.STEP and skip.status in ("cancelled", "skipped", "failed")
        ]
        if not steps_sent and not steps_ended:
            return
        runs = await sequences.load_runs(
            uow, [i.lead_id for i in steps_sent + [i for i, _ in steps_ended]]
        )
        # A step not sent adds no time: the one after it counts from the chain's last send.
        anchors = await sequences.last_sent(
            uow, {(i.lead_id, i.payload["sequence"]) for i, skip in steps_ended if skip.queue_next}
        )
        wanted: list[sequences.NextStep] = []
        ended: list[dict[str, Any]] = []
        for item, skip in [(i, None) for i in steps_sent] + steps_ended:
            lead = leads.get(item.lead_id)
            chain = (item.lead_id, item.payload["sequence"])
            run = runs.get(chain)
            if lead is None or run is None or not sequences.current(run, item.payload):
                continue
            sequence = s.sequences.get(run.sequence)
            if sequence is None:
                ended.append(_ended(run.id, "stopped", now, "sequence removed"))
            elif skip is None or skip.queue_next:
                # (a send of the chain's earlier run is no anchor for this one)
                sent_at = (
                    now
                    if skip is None
                    else max(anchors.get(chain, run.started_at), run.started_at)
                )
                wanted.append(
                    sequences.NextStep(
                        lead.id,
                        lead.timezone,
                        run.id,
                        run.sequence,
                        sequences.next_index(sequence, item.payload),
                        sequences.next_base(sequence, run, sent_at),
                        item.channel,
                        run.run_no,
                        sequences.anchor_of(run),
                    )
                )
            else:
                # Nothing more can come of this chain (no consent, blocked, failed): end it, so
                # it is not left "active" with nothing queued.
                ended.append(_ended(run.id, "stopped", now, skip.reason[:128]))
        if wanted:
            finished = await sequences.queue_steps(uow, s, wanted, now)
            ended += [_ended(step.run_id, "finished", now, None) for step in finished]
        if ended:
            await session.execute(_RUN_ENDED, ended)


async def _count_events(
    uow: UnitOfWork, events: list[dict[str, Any]], leads: dict[int, Row[Any]]
) -> None:
    """The events inserted here counted in their leads' kept facts, one statement for all
    (storage/kept_facts.py); a lead read without them is made to compute them again."""
    counted: dict[int, dict[str, Any] | None] = {}
    unknown: set[int] = set()
    for event in events:
        lead = leads.get(event["lead_id"])
        if lead is None or "facts" not in lead._fields:
            unknown.add(event["lead_id"])
            continue
        facts = counted.get(lead.id, lead.facts)
        counted[lead.id] = kept_facts.counted(facts, event["name"], event["payload"])
    changes = [{"lead": i, "kept": facts} for i, facts in counted.items() if facts is not None]
    if changes:
        await uow.session.execute(_FACTS, changes)
    await kept_facts.forget(uow.session, unknown)


def _ended(run_id: int, status: str, now: datetime, reason: str | None) -> dict[str, Any]:
    return {"run": run_id, "new_status": status, "at": now, "reason": reason}


def _event(
    item: Prepared, name: str, now: datetime, payload: dict[str, Any], *, channel: Any = ...
) -> dict[str, Any]:
    return {
        "lead_id": item.lead_id,
        "name": name,
        "payload": payload,
        "channel": item.channel if channel is ... else channel,
        "created_at": now,
    }
