"""When two leads merge (bot/merge.py): their queued messages and warm-up chains. A chain
both are in runs once, from the one further along; a step the person got in either messenger
is not sent again; what would reach the person twice is cancelled."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bot import scoring, sequences
from bot.scenario.model import Scenario
from storage.models import Lead, OutboxRow, SequenceRun
from storage.unit_of_work import UnitOfWork

# Outbox kinds whose rows would reach the person twice; the key says what is the same.
DUPLICATES = {
    "broadcast": lambda row: (row.payload.get("broadcast"), row.payload.get("occurrence")),
    scoring.CARD: lambda row: (row.payload.get("purpose"), row.channel),
    scoring.CRM_EXPORT: lambda row: row.payload.get("target"),
}
DONE = ("sent", "sending", "skipped", "failed")  # a step the chain is past
HAD = ("sent", "sending")  # a step the person got (or is getting right now)


async def merge_outbox(
    uow: UnitOfWork, s: Scenario, survivor: Lead, gone: Lead, now: datetime
) -> None:
    ours = list(await uow.outbox.for_lead(survivor.id))
    theirs = list(await uow.outbox.for_lead(gone.id))
    _cancel_duplicates(ours, theirs)
    taken = {row.idempotency_key for row in ours}
    for row in theirs:
        if row.kind == sequences.STEP:
            # In the survivor's key space, a step the person got in either messenger is
            # recognised by the key when the chain comes to it: it is passed over.
            key = sequences.step_key(
                survivor.id,
                row.payload["sequence"],
                row.payload["step"],
                sequences.run_of(row.payload),
            )
            if key not in taken:
                row.idempotency_key = key
                taken.add(key)
        row.lead_id = survivor.id
    await uow.session.flush()
    our_runs = {run.sequence: run for run in await uow.sequences.for_lead(survivor.id)}
    for run in await uow.sequences.for_lead(gone.id):
        our_rows = _chain_rows(ours, run.sequence)
        their_rows = _chain_rows(theirs, run.sequence)
        kept = our_runs.get(run.sequence)
        if kept is None:
            run.lead_id = survivor.id
            kept = run
        else:
            _combine_runs(s, kept, our_rows, run, their_rows)
            await uow.session.delete(run)
            await uow.session.flush()
            for row in their_rows:
                row.payload = {**row.payload, "run": kept.id}
        await _settle_chain(uow, s, survivor, kept, our_rows, their_rows, now)


def _cancel_duplicates(ours: list[OutboxRow], theirs: list[OutboxRow]) -> None:
    """A broadcast, a lead card or a CRM export queued for both leads reaches the person
    once: nothing more when one was sent, else the survivor's (or the first) row."""
    groups: dict[tuple[Any, ...], list[OutboxRow]] = {}
    for row in (*ours, *theirs):
        same = DUPLICATES.get(row.kind)
        if same is not None and row.status in ("pending", "sending", "sent"):
            groups.setdefault((row.kind, same(row)), []).append(row)
    theirs_ids = {row.id for row in theirs}
    for rows in groups.values():
        if not any(row.id in theirs_ids for row in rows):
            continue
        pending = [row for row in rows if row.status == "pending"]
        keep = None if any(row.status != "pending" for row in rows) else pending[0]
        for row in pending:
            if row is not keep:
                cancel(row, "merged: the person has this one already")


def _chain_rows(rows: Iterable[OutboxRow], sequence: str) -> list[OutboxRow]:
    return [r for r in rows if r.kind == sequences.STEP and r.payload.get("sequence") == sequence]


def _position(s: Scenario, row: OutboxRow) -> int:
    """The step's place in its chain now (the row's index if the step was removed)."""
    sequence = s.sequences.get(row.payload["sequence"])
    ids = [step.id for step in sequence.steps] if sequence is not None else []
    step = row.payload.get("step")
    return ids.index(step) if step in ids else int(row.payload.get("index", 0))


def _progress(s: Scenario, rows: list[OutboxRow]) -> int:
    """How many steps of the chain are behind (sent, skipped, failed, being sent)."""
    return max((_position(s, row) + 1 for row in rows if row.status in DONE), default=0)


def _combine_runs(
    s: Scenario,
    kept: SequenceRun,
    our_rows: list[OutboxRow],
    other: SequenceRun,
    their_rows: list[OutboxRow],
) -> None:
    """The chain's state for the person, into `kept`: finished or stopped on either side
    stays so (a stop is the person's /stop, a `stop_on`, the end of the chain), except a
    stop because that messenger was blocked; otherwise the one further along goes on."""
    runs = ((kept, our_rows), (other, their_rows))
    ended = [run for run, _ in runs if run.status == "finished"] or [
        run for run, _ in runs if run.status == "stopped" and run.stop_reason != "blocked"
    ]
    if ended:
        kept.status, kept.stopped_at, kept.stop_reason = (
            ended[0].status,
            ended[0].stopped_at,
            ended[0].stop_reason,
        )
        kept.run_no, kept.occasion = max(kept.run_no, other.run_no), ended[0].occasion
        return
    running = [(run, rows) for run, rows in runs if run.status == "active"]
    if not running:
        return  # stopped on both sides because both messengers were blocked
    further, _ = max(running, key=lambda pair: (_progress(s, pair[1]), pair[0] is kept))
    kept.status, kept.stopped_at, kept.stop_reason = "active", None, None
    kept.started_at, kept.run_no, kept.occasion = (
        further.started_at,
        further.run_no,
        further.occasion,
    )


async def _settle_chain(
    uow: UnitOfWork,
    s: Scenario,
    survivor: Lead,
    run: SequenceRun,
    our_rows: list[OutboxRow],
    their_rows: list[OutboxRow],
    now: datetime,
) -> None:
    """One queued step per chain, never one the person had: the pending step furthest on
    stays; when none is left, the next step after the furthest one behind is queued."""
    for row in our_rows + their_rows:
        if row.status == "pending" and sequences.run_of(row.payload) != run.run_no:
            cancel(row, "merged: the chain has run again since")
    # The run now going is what counts (a chain that repeats may be further on one side).
    rows = [r for r in our_rows + their_rows if sequences.run_of(r.payload) == run.run_no]
    pending = [row for row in rows if row.status == "pending"]
    if run.status != "active":
        for row in pending:
            cancel(row, "merged: the chain ended for the person")
        return
    had = {row.payload["step"] for row in rows if row.status in HAD}
    frontier = _progress(s, rows)
    ahead = [r for r in pending if r.payload["step"] not in had and _position(s, r) >= frontier]
    own_key = {
        sequences.step_key(
            survivor.id, run.sequence, r.payload["step"], sequences.run_of(r.payload)
        )
        for r in rows
    }
    keep = max(ahead, key=lambda r: (_position(s, r), r.idempotency_key in own_key), default=None)
    for row in pending:
        if row is not keep:
            cancel(row, "merged: the person had this step, or is further on")
    # A step the survivor's worker is sending now queues the next one when it is out; one
    # the gone lead's was sending does not (the worker finds no chain of that lead).
    if keep is not None or any(row.status == "sending" for row in our_rows):
        return
    sequence = s.sequences.get(run.sequence)
    if sequence is None:
        return
    await uow.session.flush()
    sent = [row.sent_at for row in rows if row.status in HAD and row.sent_at is not None]
    base = run.started_at if sequence.after_from == "start" else max(sent, default=now)
    await sequences.queue_step(uow, s, survivor, run, frontier, base, now)


def cancel(row: OutboxRow, reason: str) -> None:
    row.status, row.last_error = "cancelled", reason
