"""Cohorts: the leads of the window by calendar week of arrival (weeks start on Monday at
local midnight of the window's zone; week 0 starts at `window.first_monday`), and for each
week the share of its leads that reached `qualified` and `customer` within 0, 1, 2, 4 and 8
weeks of arriving.

"Within k weeks" counts from each lead's own arrival: reached before arrival + (k + 1) weeks,
so offset 0 is the first seven days. A lead reaches a stage at its first `stage_changes` row
into that stage or any later funnel stage (a customer that skipped `qualified` has reached
it, at the moment it became a customer). A cell is None, not 0, when the cohort has not
lived that long: `now` minus the start of its week is under the offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics.tables import Table, percent
from bot.analytics.window import WEEK, Window, seconds_between, weeks_since
from bot.scenario.fields import FUNNEL_STAGES
from bot.scenario.model import Scenario
from storage.models import Lead, StageChange

OFFSETS = (0, 1, 2, 4, 8)
QUALIFIED = FUNNEL_STAGES[FUNNEL_STAGES.index("qualified") :]
CUSTOMER = FUNNEL_STAGES[FUNNEL_STAGES.index("customer") :]
GOALS = (("qualified", QUALIFIED), ("customer", CUSTOMER))


@dataclass(frozen=True)
class Cohorts:
    """A heat map's data: a row per week of arrival (`weeks`, the local Monday), a column
    per offset in weeks; a share is a percent of the week's leads, None where the cohort is
    too young for the offset or has no leads."""

    offsets: tuple[int, ...]
    weeks: tuple[date, ...]
    leads: tuple[int, ...]
    qualified: tuple[tuple[float | None, ...], ...]  # [week][offset]
    customers: tuple[tuple[float | None, ...], ...]

    @property
    def week_labels(self) -> tuple[str, ...]:
        return tuple(f"{week:%d.%m.%Y}" for week in self.weeks)

    @property
    def offset_labels(self) -> tuple[str, ...]:
        return tuple(f"{k} нед." for k in self.offsets)


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> Cohorts:
    origin = window.first_monday
    reached = (
        select(
            StageChange.lead_id.label("lead_id"),
            *(
                func.min(case((StageChange.to_stage.in_(stages), StageChange.created_at))).label(
                    goal
                )
                for goal, stages in GOALS
            ),
        )
        .where(StageChange.to_stage.in_(QUALIFIED), StageChange.created_at <= window.now)
        .group_by(StageChange.lead_id)
        .subquery("reached")
    )
    week = weeks_since(session, Lead.created_at, origin).label("week")
    # Seconds from the lead's arrival to the moment it reached the goal (NULL: never). Within
    # k weeks = before (k + 1) whole weeks; compared as seconds, not through `weeks_since`,
    # whose floor() SQLAlchemy gives SQLite as Python's math.floor, which fails on NULL.
    after = {goal: seconds_between(session, reached.c[goal], Lead.created_at) for goal, _ in GOALS}
    cells = [
        func.sum(case((after[goal] < (k + 1) * WEEK, 1), else_=0)).label(f"{goal}_{k}")
        for goal, _ in GOALS
        for k in OFFSETS
    ]
    query = (
        select(week, func.count(Lead.id).label("leads"), *cells)
        .select_from(Lead)
        .outerjoin(reached, reached.c.lead_id == Lead.id)
        .where(Lead.created_at >= window.since, Lead.created_at < window.until)
        .group_by(week)
    )
    found = {row.week: row for row in (await session.execute(query)).all()}
    count = _weeks(window)
    monday = origin.astimezone(window.zone).date()
    leads = tuple(int(found[w].leads) if w in found else 0 for w in range(count))
    shares = {}
    for goal, _ in GOALS:
        shares[goal] = tuple(
            tuple(
                None
                if window.now - (origin + timedelta(weeks=w)) < timedelta(weeks=k)
                or w not in found
                else percent(int(getattr(found[w], f"{goal}_{k}") or 0), leads[w])
                for k in OFFSETS
            )
            for w in range(count)
        )
    return Cohorts(
        offsets=OFFSETS,
        weeks=tuple(monday + timedelta(weeks=w) for w in range(count)),
        leads=leads,
        qualified=shares["qualified"],
        customers=shares["customer"],
    )


def _weeks(window: Window) -> int:
    """Weeks from week 0 to the one holding the window's last moment, counted as SQL counts
    them (`weeks_since`: whole 7-day spans from `first_monday`)."""
    last = window.until - timedelta(microseconds=1)
    return int((last - window.first_monday).total_seconds() // WEEK) + 1


def tables(figures: Cohorts) -> list[Table]:
    offsets = figures.offset_labels
    note = "Неделя 0 — первые 7 дней после прихода лида; «—» — когорта ещё не прожила столько."
    return [
        Table(
            title=f"Когорты по неделе прихода: {what}, % лидов недели",
            columns=("Неделя", "Лиды", *offsets),
            rows=tuple(
                (label, leads, *cells)
                for label, leads, cells in zip(
                    figures.week_labels, figures.leads, grid, strict=True
                )
            ),
            note=note,
        )
        for what, grid in (
            ("дошли до квалификации", figures.qualified),
            ("стали клиентами", figures.customers),
        )
    ]
