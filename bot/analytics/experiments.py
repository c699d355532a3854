"""Experiments that finish themselves: every 10 minutes (the heartbeat) each `auto: true`
step not yet decided is measured over all time, and once its figures name a winner at the
step's confidence the decision is recorded and announced in the managers' chat. From then on
the delivery worker gives the winner to every lead the step was not sent to yet
(bot/sequences.variant_of); a lead who had the step keeps what it had.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics.ab import StepTest, p_text, p_value, share_text, step_test, tested_steps
from bot.analytics.sends import click_events
from bot.analytics.window import Window
from bot.clock import Clock
from bot.handoff import post_about_lead
from bot.scenario.active import ActiveScenario
from bot.scenario.model import Scenario, Step
from bot.scoring import Routes
from bot.timing import zone_of
from storage.claims import singleton_lock
from storage.database import Database
from storage.models import ExperimentDecision
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

LOCK = "experiment-decisions"
PURPOSE = "experiment"  # of the managers' post that announces a decision
ALL_TIME = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Decision:
    sequence: str
    step: str
    winner: str
    decided_at: datetime
    why: dict[str, Any]


async def decide(
    db: Database, scenario: ActiveScenario | Scenario, clock: Clock, routes: Routes
) -> list[Decision]:
    """Record and announce the A/B tests whose winner the data now supports; those decided.

    The figures are read outside the write transaction (on SQLite a write transaction holds
    the one write lock that incoming messages wait for). The write runs under the periodic
    jobs' advisory lock, and the decision's primary key settles a race anyway: the insert of
    a process that comes second is skipped (ON CONFLICT DO NOTHING on both databases), and
    so is its announcement."""
    s = scenario.current.scenario if isinstance(scenario, ActiveScenario) else scenario
    auto = [(seq, step) for seq, step in tested_steps(s) if step.auto]
    if not auto:
        return []
    clicks = click_events(s)
    now = clock.now()
    # `until` just past now: what was recorded at this very moment counts too.
    window = Window(
        ALL_TIME, now + timedelta(microseconds=1), now, zone_of(None, s.settings.timezone)
    )
    found: list[tuple[str, Step, StepTest]] = []
    async with db.reading() as session:
        decided = await _decided(session, {seq for seq, _ in auto})
        for seq, step in auto:
            if (seq, step.id) in decided:
                continue
            test = await step_test(session, seq, step, window, None, clicks)
            if test.winner is not None:
                found.append((seq, step, test))
    if not found:
        return []
    made: list[Decision] = []
    async with db.unit_of_work() as uow:
        if not await singleton_lock(uow.session, LOCK):
            return []  # another process is deciding right now
        for seq, step, test in found:
            assert test.winner is not None
            why = reasons(step, test)
            if not await _insert(uow.session, seq, step.id, test.winner, now, why):
                continue
            made.append(Decision(seq, step.id, test.winner, now, why))
            await announce(uow, made[-1], routes, now)
        await uow.commit()
    for decision in made:
        log.info(
            "A/B test of %s/%s decided: variant %s (%s)",
            decision.sequence,
            decision.step,
            decision.winner,
            decision.why["reason"],
        )
    return made


def reasons(step: Step, test: StepTest) -> dict[str, Any]:
    """What the decision rests on, kept with it for the report."""
    winner = test.winner
    sent = {v.variant: v.sent for v in test.variants}
    reached = {v.variant: v.goal for v in test.variants}
    against = {
        v: p_value(reached[v], sent[v], reached[winner], sent[winner]) or 1.0
        for v in sent
        if v != winner
    }
    runner_up = max(against, key=lambda v: against[v])
    rate = {v: reached[v] / sent[v] for v in sent}
    counts = ", ".join(f"{v} {sent[v]}" for v in sent)
    reason = (
        f"{test.goal}: {share_text(rate[winner])} против "
        f"{share_text(rate[runner_up])} у {runner_up}, "
        f"p = {p_text(against[runner_up])} при уверенности {share_text(step.confidence)}; "
        f"отправок: {counts}"
    )
    return {
        "reason": reason,
        "goal": test.goal,
        "confidence": step.confidence,
        "min_sent": step.min_sent,
        "p_value": against[runner_up],
        "runner_up": runner_up,
        "sent": sent,
        "reached": reached,
        "best": {v.variant: v.best for v in test.variants},
    }


async def announce(uow: UnitOfWork, decision: Decision, routes: Routes, now: datetime) -> None:
    """A post in every managers' chat, through the outbox like posts about leads (this one is
    about none; its key makes it one post per decision)."""
    if not routes.managers:
        log.info("no managers' chat to announce the A/B decision of %s", decision.step)
        return
    text = (
        f"🏁 A/B-тест завершён: цепочка {decision.sequence}, шаг {decision.step}.\n"
        f"Победил вариант {decision.winner} — {decision.why['reason']}.\n"
        f"Новые лиды теперь получают вариант {decision.winner}; кто уже получил шаг, "
        "остаётся при своём."
    )
    key = f"experiment:{decision.sequence}:{decision.step}"
    await post_about_lead(
        uow, None, text, purpose=PURPOSE, key=key, managers=routes.managers, now=now
    )


async def _decided(session: AsyncSession, sequences: set[str]) -> set[tuple[str, str]]:
    query = select(ExperimentDecision.sequence, ExperimentDecision.step).where(
        ExperimentDecision.sequence.in_(sorted(sequences))
    )
    return {(seq, step) for seq, step in await session.execute(query)}


async def _insert(
    session: AsyncSession, sequence: str, step: str, winner: str, now: datetime, why: Any
) -> bool:
    """Insert the decision unless the step has one; True when this one is recorded."""
    table = ExperimentDecision.__table__
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(sequence=sequence, step=step, winner=winner, decided_at=now, why=why)
        .on_conflict_do_nothing(index_elements=[table.c.sequence, table.c.step])
        .returning(table.c.step)
    )
    return (await session.execute(statement)).first() is not None
