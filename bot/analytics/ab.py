"""A/B tests of sequence steps: for each step with `variants`, per variant the leads it was
sent to, and of them those who clicked it, reached its goal, qualified and bought after the
send; a two-proportion z-test of each variant against "a", the probability of each to be
best, and a winner only when the data supports it. The report's `--by variant` view.

Counts are of distinct leads whose `step_sent` of the variant falls in the window; what they
did after it is counted up to the window's end. The decision job (experiments.py) runs the
same figures over all time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from statistics import NormalDist
from typing import Any

from sqlalchemy import Subquery, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics.sends import (
    after,
    click_events,
    joined,
    last_clicks,
    last_of,
    leads_where,
    step_sends,
)
from bot.analytics.tables import Table, percent
from bot.analytics.window import Window
from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES
from bot.scenario.model import Scenario, Step
from storage.models import Event, ExperimentDecision, StageChange

DRAWS = 20_000  # Monte Carlo draws for the probability to be best: ±0.4 % at worst
POWER = 0.8  # for the estimate of the sends still needed


@dataclass(frozen=True)
class VariantFigures:
    variant: str
    share: float  # of new leads, from `weights` (percent)
    sent: int
    clicked: int
    goal: int
    qualified: int
    purchased: int
    p_value: float | None  # against "a"; None for "a" itself or without sends
    best: float | None  # probability to be best on the goal, 0..1


@dataclass(frozen=True)
class Decided:
    winner: str
    decided_at: datetime
    why: dict[str, Any]


@dataclass(frozen=True)
class StepTest:
    sequence: str
    step: str
    goal: str  # as the marketer reads it
    auto: bool
    confidence: float
    min_sent: int
    variants: tuple[VariantFigures, ...]
    winner: str | None  # what the figures support now
    note: str
    decision: Decided | None


@dataclass(frozen=True)
class AbFigures:
    tests: tuple[StepTest, ...]


def tested_steps(scenario: Scenario) -> list[tuple[str, Step]]:
    return [
        (seq_id, step)
        for seq_id, sequence in scenario.sequences.items()
        for step in sequence.steps
        if step.variants
    ]


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> AbFigures:
    tested, clicks = tested_steps(scenario), click_events(scenario)
    decisions = {
        key: replace(d, decided_at=d.decided_at.astimezone(window.zone))
        for key, d in (await _decisions(session, {seq for seq, _ in tested})).items()
    }
    counts = await _counts(session, tested, window, clicks)
    return AbFigures(
        tuple(
            _test(seq, step, counts.get((seq, step.id), {}), decisions.get((seq, step.id)))
            for seq, step in tested
        )
    )


async def step_test(
    session: AsyncSession,
    sequence: str,
    step: Step,
    window: Window,
    decision: Decided | None,
    clicks: Collection[str],
) -> StepTest:
    """One step's test. `clicks`: the events that count as a click (`sends.click_events`)."""
    counts = await _counts(session, [(sequence, step)], window, clicks)
    return _test(sequence, step, counts.get((sequence, step.id), {}), decision)


Counts = dict[str, tuple[int, ...]]  # variant -> sent, clicked, goal, qualified, purchased


async def _counts(
    session: AsyncSession, tested: list[tuple[str, Step]], window: Window, clicks: Collection[str]
) -> dict[tuple[str, str], Counts]:
    """Every tested step's counts per variant in one aggregate query: the sends, and beside
    each the lead's last click of the step, goal, qualification and purchase (one grouped
    pass over each, however many steps are tested)."""
    if not tested:
        return {}
    until = window.until
    pairs = [(seq, step.id) for seq, step in tested]
    sends = step_sends(window.since, until, steps=pairs, by_variant=True)
    clicked = last_clicks(clicks, until)
    qualified, bought = _stage_moments("qualified", until), _event_moments("purchase", until)
    goals = {
        _goal_key(step): _goal_moments(step, until) for _, step in tested if step.goal is not None
    }
    goal = case(
        *(
            (
                and_(sends.c.sequence == seq, sends.c.step == step.id),
                after(goals[_goal_key(step)], sends) if step.goal else after(clicked, sends),
            )
            for seq, step in tested
        ),
    )
    query = (
        select(
            sends.c.sequence,
            sends.c.step,
            sends.c.variant,
            func.count(func.distinct(sends.c.lead_id)),
            leads_where(after(clicked, sends), sends),
            leads_where(goal, sends),
            leads_where(after(qualified, sends), sends),
            leads_where(after(bought, sends), sends),
        )
        .select_from(joined(sends, clicked, qualified, bought, *goals.values()))
        .group_by(sends.c.sequence, sends.c.step, sends.c.variant)
    )
    found: dict[tuple[str, str], Counts] = {}
    for seq, step_id, variant, *figures_ in await session.execute(query):
        found.setdefault((seq, step_id), {})[variant] = tuple(figures_)
    return found


def _goal_key(step: Step) -> tuple[str | None, str | None]:
    assert step.goal is not None
    return step.goal.event, step.goal.stage


def _test(sequence: str, step: Step, counts: Counts, decision: Decided | None) -> StepTest:
    names = step.variant_names
    sent = {v: counts.get(v, (0,))[0] for v in names}
    reached = {v: counts.get(v, (0, 0, 0))[2] for v in names}
    best = probability_best(sent, reached, seed=f"{sequence}:{step.id}")
    total = sum(step.weights.values()) if step.weights else len(names)
    variants = tuple(
        VariantFigures(
            v,
            100 * (step.weights.get(v, 1) if step.weights else 1) / total,
            *(counts.get(v) or (0, 0, 0, 0, 0)),
            p_value=None if v == "a" else p_value(reached["a"], sent["a"], reached[v], sent[v]),
            best=best.get(v),
        )
        for v in names
    )
    winner, note = verdict(step, sent, reached)
    return StepTest(
        sequence,
        step.id,
        goal_label(step),
        step.auto,
        step.confidence,
        step.min_sent,
        variants,
        winner,
        note,
        decision,
    )


def goal_label(step: Step) -> str:
    if step.goal is None:
        return "клик по кнопке шага"
    if step.goal.event is not None:
        return f"событие {step.goal.event}"
    return f"стадия {step.goal.stage}"


def _goal_moments(step: Step, until: datetime) -> Subquery:
    assert step.goal is not None
    if step.goal.event is not None:
        return _event_moments(step.goal.event, until)
    assert step.goal.stage is not None
    return _stage_moments(step.goal.stage, until)


def _event_moments(name: str, until: datetime) -> Subquery:
    """Per lead, its last `name` event before `until`."""
    return last_of(
        select(Event.lead_id, Event.created_at).where(Event.name == name, Event.created_at < until)
    )


def _stage_moments(stage: str, until: datetime) -> Subquery:
    """Per lead, the last time it moved to `stage` or past it before `until`. A funnel stage
    counts when skipped over (from contact straight to customer reaches qualified too), but
    not when the lead only came back from a side stage (unsubscribed, lost) to where it
    already was."""
    if stage in FUNNEL_STAGES:
        target = StageChange.to_stage.in_(FUNNEL_STAGES[FUNNEL_STAGES.index(stage) :])
        fresh = or_(StageChange.from_stage.is_(None), StageChange.from_stage.not_in(SIDE_STAGES))
        conditions = [target, fresh]
    else:
        conditions = [StageChange.to_stage == stage]
    return last_of(
        select(StageChange.lead_id, StageChange.created_at).where(
            StageChange.created_at < until, *conditions
        )
    )


async def _decisions(session: AsyncSession, sequences: set[str]) -> dict[tuple[str, str], Decided]:
    if not sequences:
        return {}
    query = select(ExperimentDecision).where(ExperimentDecision.sequence.in_(sorted(sequences)))
    return {
        (d.sequence, d.step): Decided(d.winner, d.decided_at, dict(d.why or {}))
        for d in (await session.execute(query)).scalars()
    }


# ---- statistics ----


def p_value(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of a two-proportion z-test (pooled normal approximation) of x2/n2
    against x1/n1; None without sends on either side, 1 when neither side varies."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (x2 / n2 - x1 / n1) / spread
    # 2 * (1 - Φ(|z|)) = erfc(|z| / √2): the complement keeps small p-values exact.
    return math.erfc(abs(z) / math.sqrt(2))


def probability_best(sent: dict[str, int], reached: dict[str, int], seed: str) -> dict[str, float]:
    """Each variant's probability to have the highest rate, with a uniform Beta(1, 1) prior:
    a Monte Carlo over the Beta posteriors, seeded by the step so a report is reproducible."""
    names = [v for v in sent if sent[v] > 0]
    if len(names) < 2:
        return {}
    import numpy as np  # here, not at the top: the bot's start need not load numpy

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8]))
    draws = np.column_stack(
        [rng.beta(1 + reached[v], 1 + sent[v] - reached[v], size=DRAWS) for v in names]
    )
    wins = np.bincount(draws.argmax(axis=1), minlength=len(names))
    return {v: float(wins[i]) / DRAWS for i, v in enumerate(names)}


def verdict(step: Step, sent: dict[str, int], reached: dict[str, int]) -> tuple[str | None, str]:
    """The winner the figures support and a note for the marketer (why not, if not). The
    leader must beat every other variant at p < 1 - confidence, each having `min_sent`."""
    alpha = 1 - step.confidence
    short = step.min_sent - min(sent.values())
    if short > 0:
        return None, f"победителя пока нет: нужно ещё ~{short} отправок на вариант"
    rates = {v: reached[v] / sent[v] for v in sent}
    top = max(rates.values())
    leaders = [v for v, rate in rates.items() if rate == top]
    if len(leaders) > 1:
        return None, "победителя пока нет: у лучших вариантов одинаковый результат"
    leader = leaders[0]
    others = {v: p_value(reached[v], sent[v], reached[leader], sent[leader]) for v in sent}
    del others[leader]
    runner_up = max(others, key=lambda v: others[v] or 0.0)
    worst = others[runner_up] or 1.0
    if worst < alpha:
        ahead, behind = share_text(rates[leader]), share_text(rates[runner_up])
        return leader, (
            f"победитель: {leader} ({ahead} против {behind} у {runner_up}, "
            f"p = {p_text(worst)} при уверенности {share_text(step.confidence)})"
        )
    note = f"победителя пока нет: разница не значима, p = {p_text(worst)}"
    more = sends_needed(rates[leader], rates[runner_up], alpha) - min(sent.values())
    if more > 0:
        note += f"; при такой разнице нужно ещё ~{more} отправок на вариант"
    return None, note


def sends_needed(rate1: float, rate2: float, alpha: float) -> int:
    """Sends per variant for a difference this size to show at `alpha` with 80 % power."""
    if rate1 == rate2:
        return 0
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(POWER)
    spread = rate1 * (1 - rate1) + rate2 * (1 - rate2)
    return math.ceil(z * z * spread / (rate1 - rate2) ** 2)


def p_text(value: float) -> str:
    if value < 0.001:
        return "< 0,001"
    digits = 3 if value < 0.01 else 2
    return f"{value:.{digits}f}".replace(".", ",")


def share_text(rate: float) -> str:
    """A rate (0..1) as a marketer reads it in a note: «12,5 %»."""
    return f"{100 * rate:.1f}".replace(".", ",") + " %"


# ---- tables ----

COLUMNS = (
    "Вариант",
    "Доля, %",
    "Отправлено",
    "Кликнули",
    "% кликов",
    "Цель",
    "% цели",
    "Квалиф.",
    "% квалиф.",
    "Покупки",
    "% покупок",
    "p против a",
    "Шанс быть лучшим, %",
)


def tables(figures: AbFigures) -> list[Table]:
    return [_table(test) for test in figures.tests]


def _table(test: StepTest) -> Table:
    rows = tuple(
        (
            v.variant,
            v.share,
            v.sent,
            v.clicked,
            percent(v.clicked, v.sent),
            v.goal,
            percent(v.goal, v.sent),
            v.qualified,
            percent(v.qualified, v.sent),
            v.purchased,
            percent(v.purchased, v.sent),
            p_text(v.p_value) if v.p_value is not None else None,
            100 * v.best if v.best is not None else None,
        )
        for v in test.variants
    )
    title = f"A/B: цепочка {test.sequence}, шаг {test.step} (цель: {test.goal})"
    return Table(title, COLUMNS, rows if any(v.sent for v in test.variants) else (), _note(test))


def _note(test: StepTest) -> str:
    decision = test.decision
    if decision is None:
        auto = " (auto: решение примет бот)" if test.auto and test.winner is None else ""
        return test.note + auto
    why = decision.why
    reason = why.get("reason") or f"p = {p_text(float(why.get('p_value', 1.0)))}"
    return (
        f"решено {decision.decided_at:%Y-%m-%d %H:%M}: победил {decision.winner} — "
        f"{reason}; новые лиды получают вариант {decision.winner}"
    )
