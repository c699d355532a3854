"""Warm-up sequences: enrolment, the outbox row of each next step, stop and start conditions.

One step is queued at a time: when it is sent (or skipped) the next one is queued. Its `after`
counts from the chain's start (`after_from: start`) or, by default, from the last step of the
chain that was actually sent (the start while none was): a skipped step adds no time, so
alternatives (`if:` steps with the same `after`) take one slot, not one each.
Rows name the step by its stable id, and the text is rendered when the step is sent, so an
edited scenario applies to steps not yet sent and a removed step is cancelled.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.rule_facts import load_facts, reads
from bot.rules import evaluate
from bot.scenario.model import Scenario, Sequence, StartOn, Step, StepButton
from bot.timing import earlier_by, step_due, zone_of
from storage.models import ExperimentDecision, Lead, OutboxRow, SequenceRun
from storage.repositories import NOT_YET_SENT, outbox_row
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

STEP = "step"  # outbox kind
SLOT_BOOKED, SLOT_CANCELLED = "slot_booked", "slot_cancelled"  # events of bot/booking.py


def step_key(lead_id: int, sequence: str, step_id: str, run_no: int = 1) -> str:
    """The idempotency key of a step: a lead gets each step of a chain at most once a run
    (the first run's keys are those of chains from before runs repeated). The run goes by
    the chain's name, not at the end, where a message's parts add ":1", ":2"."""
    chain = sequence if run_no == 1 else f"{sequence}#{run_no}"
    return f"step:{lead_id}:{chain}:{step_id}"


def run_of(payload: dict[str, Any]) -> int:
    """The run number an outbox row of a step belongs to (rows from before: the first)."""
    return int(payload.get("round", 1))


def current(run: Any, payload: dict[str, Any]) -> bool:
    """Whether a step's row belongs to the chain's run now going (a `SequenceRun` or a row of
    its fields): a row of an earlier run, still on the wire when the chain ran again, neither
    goes out nor queues a step of the new run."""
    return run.status == "active" and run_of(payload) == run.run_no


def variant_of(lead_id: int, sequence: str, step: Step, winner: str | None = None) -> str:
    """The A/B variant of a step for a lead: "a" is the step's text, others its `variants`.
    A hash, not a coin: the same lead always gets the same variant, on any worker; `weights`
    split the hash's range (equal shares by default). Once the step's test is decided,
    `winner` (the caller has it only for a lead the step was not sent to yet) is the answer,
    unless the scenario has since dropped that variant."""
    names = step.variant_names
    if winner in names:
        return winner
    shares = [step.weights.get(name, 1) for name in names] if step.weights else [1] * len(names)
    digest = hashlib.sha256(f"{lead_id}:{sequence}:{step.id}".encode()).digest()
    point = int.from_bytes(digest[:4], "big") % sum(shares)
    for name, share in zip(names, shares, strict=True):
        if point < share:
            return name
        point -= share
    raise AssertionError("unreachable: point < sum(shares)")


async def decided(
    uow: UnitOfWork, s: Scenario, payloads: list[dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """(sequence, step) -> the winner, for the decided A/B tests among the steps these outbox
    rows name. The delivery worker reads this once per batch rather than caching it: one read
    of a table of a few rows by its key costs little beside the batch's other reads, and every
    worker sees a decision the moment it is committed, with no cache to keep in step."""
    tested = {
        (str(payload["sequence"]), step.id)
        for payload in payloads
        if (step := step_of(s, payload)) is not None and step.variants
    }
    if not tested:
        return {}
    query = select(
        ExperimentDecision.sequence, ExperimentDecision.step, ExperimentDecision.winner
    ).where(ExperimentDecision.sequence.in_(sorted({seq for seq, _ in tested})))
    found = await uow.session.execute(query)
    return {(seq, step): winner for seq, step, winner in found if (seq, step) in tested}


def button_place(s: Scenario, matches: Callable[[StepButton], bool]) -> dict[str, str]:
    """The message a pressed button or opened link belongs to, as event details: {sequence,
    step} or {broadcast}; empty unless exactly one step or broadcast has such a button (two
    places with the same button cannot be told apart, and a wrong guess is worse than none:
    the A/B report counts these as the step's clicks)."""
    places: set[tuple[str, ...]] = set()
    for path, button in s.step_buttons():
        if not matches(button):
            continue
        if path[0] == "sequences":
            seq_id, index = str(path[1]), int(path[3])
            places.add((seq_id, s.sequences[seq_id].steps[index].id))
        else:
            places.add((str(path[1]),))
    if len(places) != 1:
        return {}
    [place] = places
    return {"sequence": place[0], "step": place[1]} if len(place) == 2 else {"broadcast": place[0]}


def step_text(step: Step, variant: str) -> str | None:
    return step.variants.get(variant, step.text) if variant != "a" else step.text


NO_CHANNEL = "none"  # a lead with no messenger account (its rows are cancelled when due)


async def lead_channel(uow: UnitOfWork, lead_id: int) -> str:
    """The messenger the lead used last: that is where their next message goes."""
    identity = await uow.leads.latest_identity(lead_id)
    return identity.channel if identity is not None else NO_CHANNEL


# What the delivery worker reads of a lead's runs, as plain rows.
RUN_FIELDS = (
    SequenceRun.id,
    SequenceRun.lead_id,
    SequenceRun.sequence,
    SequenceRun.status,
    SequenceRun.started_at,
    SequenceRun.run_no,
    SequenceRun.occasion,
)


async def load_runs(uow: UnitOfWork, lead_ids: list[int]) -> dict[tuple[int, str], Any]:
    """The leads' runs by (lead, chain), one statement."""
    query = select(*RUN_FIELDS).where(SequenceRun.lead_id.in_(lead_ids))
    return {(r.lead_id, r.sequence): r for r in await uow.session.execute(query)}


@dataclass(frozen=True)
class NextStep:
    """A step to queue: number `index` of the chain `sequence` (the lead's run `run_id`),
    due `after` from `base`, to `channel` (the messenger the lead used last)."""

    lead_id: int
    timezone: str | None  # the lead's
    run_id: int
    sequence: str
    index: int
    base: datetime
    channel: str
    run_no: int = 1
    anchor: datetime | None = None  # a slot chain's booked time (`before:` steps)


async def queue_steps(
    uow: UnitOfWork, scenario: Scenario, wanted: list[NextStep], now: datetime
) -> list[NextStep]:
    """Queue each wanted step; a few statements for any number of leads (the delivery worker
    queues the next step of every lead it sent to). Returns those past their chain's last
    step: the caller finishes their runs.

    A step the lead already had (the scenario's steps were reordered) is passed over: its key
    exists, so the step after it is tried."""
    zone_default = scenario.settings.timezone
    finished: list[NextStep] = []
    while wanted:
        rows, by_key, passed = [], {}, []
        for item in wanted:
            sequence = scenario.sequences.get(item.sequence)
            steps = sequence.steps if sequence is not None else []
            if item.index >= len(steps):
                finished.append(item)
                continue
            step = steps[item.index]
            if step.before is not None:
                # A reminder of a booking: its time, not quiet hours (the person chose the
                # hour); passed by when the booking came later than it.
                zone = zone_of(item.timezone, zone_default)
                due = (
                    earlier_by(item.anchor, step.before, zone) if item.anchor is not None else now
                )
                if item.anchor is None or due < now:
                    passed.append(replace(item, index=item.index + 1))
                    continue
            else:
                due = step_due(
                    item.base,
                    step.after,
                    step.at,
                    zone_of(item.timezone, zone_default),
                    scenario.settings.quiet_hours,
                )
            key = step_key(item.lead_id, item.sequence, step.id, item.run_no)
            payload = {
                "sequence": item.sequence,
                "step": step.id,
                "index": item.index,
                "run": item.run_id,
                "round": item.run_no,
            }
            rows.append(
                outbox_row(key, item.channel, STEP, max(due, now), now, item.lead_id, payload)
            )
            by_key[key] = item
        if not rows and not passed:
            break
        inserted = {key for _, key in await uow.outbox.enqueue_many(rows)} if rows else set()
        existing = [key for key in by_key if key not in inserted]
        live = await uow.outbox.keys_with_status(existing, NOT_YET_SENT) if existing else set()
        wanted = passed + [
            replace(by_key[key], index=by_key[key].index + 1)
            for key in existing
            if key not in live
        ]
    return finished


async def queue_step(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    run: SequenceRun,
    index: int,
    base: datetime,
    now: datetime,
) -> None:
    """Queue step `index` of the run's chain, due `after` from `base`; finish the run after
    the last step."""
    channel = await lead_channel(uow, lead.id)
    wanted = NextStep(
        lead.id,
        lead.timezone,
        run.id,
        run.sequence,
        index,
        base,
        channel,
        run.run_no,
        anchor_of(run),
    )
    if await queue_steps(uow, scenario, [wanted], now):
        run.status, run.stopped_at = "finished", now


async def start(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    sequence_id: str,
    now: datetime,
    occasion: str | None = None,
) -> SequenceRun | None:
    """Enrol the lead and queue the first step; None if it was in this chain before (and
    the chain does not repeat, or may not run again yet). `occasion` names what a time
    trigger started it for: one run per occasion."""
    run = await uow.sequences.get(lead.id, sequence_id)
    if run is None:
        run = uow.sequences.add(lead.id, sequence_id, now=now, occasion=occasion)
    else:
        sequence = scenario.sequences.get(sequence_id)
        if sequence is None or not may_run_again(sequence, run, now, occasion):
            return None
        run.run_no += 1
        run.status, run.started_at, run.occasion = "active", now, occasion
        run.stopped_at = run.stop_reason = None
    await uow.session.flush()  # the run's id goes into the step's row
    await queue_step(uow, scenario, lead, run, 0, now, now)
    return run


def may_run_again(
    sequence: Sequence, run: SequenceRun, now: datetime, occasion: str | None
) -> bool:
    """A chain the lead was in runs again when it repeats, its last run is over, the runs
    are under `max_runs`, `min_gap` has passed since the last start and, for a time trigger,
    the occasion is a new one."""
    if not sequence.repeats or run.status == "active":
        return False
    if sequence.max_runs is not None and run.run_no >= sequence.max_runs:
        return False
    if sequence.min_gap is not None and now - run.started_at < sequence.min_gap:
        return False
    return occasion is None or occasion != run.occasion


async def queue_next(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    run: SequenceRun,
    payload: dict[str, Any],
    sent_at: datetime,
    now: datetime,
) -> None:
    """After a step was sent at `sent_at`, queue the one that follows it. After a skipped
    step, `sent_at` is when the chain last sent one (`last_sent`), or its start."""
    sequence = scenario.sequences.get(run.sequence)
    if sequence is None:
        run.status, run.stopped_at, run.stop_reason = "stopped", now, "sequence removed"
        return
    await queue_step(
        uow,
        scenario,
        lead,
        run,
        next_index(sequence, payload),
        next_base(sequence, run, sent_at),
        now,
    )


def next_base(sequence: Sequence, run: Any, sent_at: datetime) -> datetime:
    """What the next step's `after` counts from, given when the chain last sent a step (a
    `SequenceRun` or a row of its fields)."""
    return run.started_at if sequence.after_from == "start" else sent_at


async def last_sent(
    uow: UnitOfWork, chains: set[tuple[int, str]]
) -> dict[tuple[int, str], datetime]:
    """When each (lead, chain) last had a step sent, read from the outbox: what the step after
    a skipped one counts from. Read, not remembered, so a crash between the skip and the next
    step loses nothing; one statement for any number of chains."""
    if not chains:
        return {}
    query = select(OutboxRow.lead_id, OutboxRow.payload, OutboxRow.sent_at).where(
        OutboxRow.lead_id.in_(sorted({lead_id for lead_id, _ in chains})),
        OutboxRow.kind == STEP,
        OutboxRow.status == "sent",
    )
    found: dict[tuple[int, str], datetime] = {}
    for lead_id, payload, sent_at in await uow.session.execute(query):
        key = (lead_id, payload.get("sequence"))
        if key in chains and sent_at is not None and (key not in found or sent_at > found[key]):
            found[key] = sent_at
    return found


def step_of(scenario: Scenario, payload: dict[str, Any]) -> Step | None:
    """The step an outbox row names, if the scenario still has it."""
    sequence = scenario.sequences.get(payload.get("sequence", ""))
    if sequence is None:
        return None
    return next((st for st in sequence.steps if st.id == payload.get("step")), None)


def service_follows(scenario: Scenario, payload: dict[str, Any]) -> bool:
    """A `service:` step comes later in the row's chain (so an advertising step before it is
    passed by, not the end of the chain, for a lead without advertising consent)."""
    sequence = scenario.sequences.get(payload.get("sequence", ""))
    ids = [st.id for st in sequence.steps] if sequence is not None else []
    if payload.get("step") not in ids:
        return False
    assert sequence is not None
    return any(st.service for st in sequence.steps[ids.index(payload["step"]) + 1 :])


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
    # A booking moved or cancelled ends the chain of the booking it was (a new one starts).
    calendars = {p.get("calendar") for name, p in events if name in (SLOT_BOOKED, SLOT_CANCELLED)}
    to_stop |= {
        seq_id
        for seq_id, seq in scenario.sequences.items()
        if seq.start_on is not None and seq.start_on.slot in calendars
    }
    if to_stop:
        stopped = await stop_runs(uow, lead.id, now, f"stop_on: {sorted(triggers)}", to_stop)
        if stopped:
            log.info("lead %s: chains %s stopped", lead.id, stopped)
    started = []
    for seq_id, seq in scenario.sequences.items():
        trigger = seq.start_on
        # A chain its own trigger stops starts again only when it repeats: a restart.
        if trigger is None or (seq_id in to_stop and not seq.repeats):
            continue
        occasion = booked_at(trigger, events) if trigger.slot is not None else None
        if (
            fired(trigger, events, stages)
            and await holds(uow, scenario, lead, trigger, now)
            and await start(uow, scenario, lead, seq_id, now, occasion)
        ):
            started.append(seq_id)
    return started


async def holds(
    uow: UnitOfWork, scenario: Scenario, lead: Lead, trigger: StartOn, now: datetime
) -> bool:
    """Whether the trigger's `if:` holds for the lead now (true without one)."""
    if trigger.if_ is None:
        return True
    facts = await load_facts(
        uow, lead, reads(trigger.if_), now=now, rfm_limits=scenario.settings.rfm
    )
    return evaluate(trigger.if_, facts)


def fired(trigger: StartOn, events: list[tuple[str, dict[str, Any]]], stages: set[str]) -> bool:
    """A `start_on` (or a promo's `issue_on`) against what happened: a stage reached, or an
    event whose details match `where:` (compared as text: `product: crm_license`)."""
    if trigger.timed:
        return False  # the clock starts it (bot/time_triggers.py)
    if trigger.slot is not None:
        return booked_at(trigger, events) is not None
    if trigger.stage is not None:
        return trigger.stage in stages
    return any(matches(trigger, name, payload) for name, payload in events)


def booked_at(trigger: StartOn, events: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The booking of a slot chain's calendar among the events, if one was made, as the
    run's occasion: "<start, ISO>#<booking id>" (a new booking of the same time is another)."""
    return next(
        (
            f"{payload['start']}#{payload.get('booking')}"
            for name, payload in events
            if name == SLOT_BOOKED and payload.get("calendar") == trigger.slot
        ),
        None,
    )


def anchor_of(run: Any) -> datetime | None:
    """The booked time a slot chain's run counts its `before:` steps from (its occasion, as
    `booked_at` wrote it); None for another chain's run."""
    if not run.occasion or "#" not in run.occasion:
        return None  # no booking: a date's or a silence's occasion, or none
    try:
        return datetime.fromisoformat(run.occasion.split("#")[0])
    except ValueError:
        return None


def matches(trigger: StartOn, name: str, payload: dict[str, Any]) -> bool:
    """The event is the trigger's, with the details `where:` asks for (compared as text)."""
    return name == trigger.event and all(
        str(payload.get(key)) == str(value) for key, value in trigger.where.items()
    )
