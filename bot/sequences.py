"""Warm-up sequences: enrolment, the outbox row of each next step, stop and start conditions.

One step is queued at a time: when it is sent (or skipped) the next one is queued from that
moment (`after_from: previous`, the default) or from the chain's start (`after_from: start`).
Rows name the step by its stable id, and the text is rendered when the step is sent, so an
edited scenario applies to steps not yet sent and a removed step is cancelled.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from bot.scenario.model import Scenario, Sequence, StartOn, Step
from bot.timing import step_due, zone_of
from storage.models import Lead, SequenceRun
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

STEP = "step"  # outbox kind


def step_key(lead_id: int, sequence: str, step_id: str) -> str:
    """The idempotency key of a step: a lead gets each step of a chain at most once."""
    return f"step:{lead_id}:{sequence}:{step_id}"


def variant_of(lead_id: int, sequence: str, step: Step) -> str:
    """The A/B variant of a step for a lead: "a" is the step's text, others its `variants`.
    A hash, not a coin: the same lead always gets the same variant, on any worker."""
    names = ["a", *sorted(step.variants)]
    digest = hashlib.sha256(f"{lead_id}:{sequence}:{step.id}".encode()).digest()
    return names[int.from_bytes(digest[:4], "big") % len(names)]


def step_text(step: Step, variant: str) -> str | None:
    return step.variants.get(variant, step.text) if variant != "a" else step.text


async def lead_channel(uow: UnitOfWork, lead_id: int) -> str:
    """The messenger the lead used last: that is where their next message goes."""
    identity = await uow.leads.latest_identity(lead_id)
    return identity.channel if identity is not None else "none"


async def queue_step(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    run: SequenceRun,
    index: int,
    base: datetime,
    now: datetime,
) -> bool:
    """Queue step `index` of the run's chain, due `after` from `base`; finish the run after
    the last step. False when nothing was queued."""
    sequence = scenario.sequences.get(run.sequence)
    steps = sequence.steps if sequence is not None else []
    # A step this lead already had (the scenario's steps were reordered) is passed over.
    while index < len(steps):
        step = steps[index]
        due = step_due(
            base,
            step.after,
            step.at,
            zone_of(lead.timezone, scenario.settings.timezone),
            scenario.settings.quiet_hours,
        )
        key = step_key(lead.id, run.sequence, step.id)
        row = await uow.outbox.enqueue(
            idempotency_key=key,
            channel=await lead_channel(uow, lead.id),
            kind=STEP,
            due_at=max(due, now),
            now=now,
            lead_id=lead.id,
            payload={"sequence": run.sequence, "step": step.id, "index": index, "run": run.id},
        )
        if row is not None or await uow.outbox.status_of(key) in ("pending", "sending"):
            return True
        index += 1
    run.status, run.stopped_at = "finished", now
    return False


async def start(
    uow: UnitOfWork, scenario: Scenario, lead: Lead, sequence_id: str, now: datetime
) -> SequenceRun | None:
    """Enrol the lead and queue the first step; None if it was in this chain before."""
    run = await uow.sequences.start(lead.id, sequence_id, now=now)
    if run is None:
        return None
    await uow.session.flush()  # the run's id goes into the step's row
    await queue_step(uow, scenario, lead, run, 0, now, now)
    return run


async def queue_next(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    run: SequenceRun,
    payload: dict[str, Any],
    sent_at: datetime,
    now: datetime,
) -> None:
    """After a step was sent or skipped, queue the one that follows it."""
    sequence = scenario.sequences.get(run.sequence)
    if sequence is None:
        run.status, run.stopped_at, run.stop_reason = "stopped", now, "sequence removed"
        return
    index = next_index(sequence, payload)
    base = run.started_at if sequence.after_from == "start" else sent_at
    await queue_step(uow, scenario, lead, run, index, base, now)


def next_index(sequence: Sequence, payload: dict[str, Any]) -> int:
    ids = [step.id for step in sequence.steps]
    if payload.get("step") in ids:
        return ids.index(payload["step"]) + 1
    # The step was removed from the scenario: what now stands at its place comes next.
    return int(payload.get("index", 0))


async def stop_runs(
    uow: UnitOfWork, lead_id: int, now: datetime, reason: str, sequences: set[str] | None = None
) -> list[str]:
    """Stop the lead's active chains (all, or those named) and cancel their queued steps."""
    stopped = []
    for run in await uow.sequences.for_lead(lead_id):
        if run.status == "active" and (sequences is None or run.sequence in sequences):
            run.status, run.stopped_at, run.stop_reason = "stopped", now, reason[:128]
            stopped.append(run.sequence)
    if stopped:
        await uow.outbox.cancel_steps(lead_id, stopped, reason=reason)
    return stopped


async def react(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    now: datetime,
    events: list[tuple[str, dict[str, Any]]],
    stages: set[str],
) -> list[str]:
    """Apply `stop_on` and `start_on` to what happened in one transaction; the chains started."""
    triggers = {name for name, _ in events} | stages
    to_stop = {seq_id for seq_id, seq in scenario.sequences.items() if triggers & set(seq.stop_on)}
    if to_stop:
        stopped = await stop_runs(uow, lead.id, now, f"stop_on: {sorted(triggers)}", to_stop)
        if stopped:
            log.info("lead %s: chains %s stopped", lead.id, stopped)
    started = []
    for seq_id, seq in scenario.sequences.items():
        trigger = seq.start_on
        if trigger is None or seq_id in to_stop:
            continue
        if fired(trigger, events, stages) and await start(uow, scenario, lead, seq_id, now):
            started.append(seq_id)
    return started


def fired(trigger: StartOn, events: list[tuple[str, dict[str, Any]]], stages: set[str]) -> bool:
    """A `start_on` (or a promo's `issue_on`) against what happened: a stage reached, or an
    event whose details match `where:` (compared as text: `product: crm_license`)."""
    if trigger.stage is not None:
        return trigger.stage in stages
    return any(
        name == trigger.event
        and all(str(payload.get(key)) == str(value) for key, value in trigger.where.items())
        for name, payload in events
    )
