"""Cohorts (`bot.analytics.cohorts`) on SQLite and PostgreSQL: leads by calendar week of
arrival and the share that reached qualified and customer within 0, 1, 2, 4 and 8 weeks,
checked against the generated history of test_sources (recomputed here from the Python-side
plan) and against a few leads written by hand at the edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from bot.analytics import cohorts
from bot.analytics.tables import percent
from bot.analytics.window import Window
from bot.scenario.fields import FUNNEL_STAGES
from storage.database import Database
from storage.models import Lead, StageChange
from tests.analytics.test_sources import NOW, History, scenario, write_history

OFFSETS = (0, 1, 2, 4, 8)
GOALS = {
    "qualified": FUNNEL_STAGES[FUNNEL_STAGES.index("qualified") :],
    "customers": FUNNEL_STAGES[FUNNEL_STAGES.index("customer") :],
}
MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


def monday_before(moment: datetime, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone).date()
    return datetime.combine(local - timedelta(days=local.weekday()), time(), tzinfo=zone)


def expected(history: History, w: Window) -> dict[str, Any]:
    """The cohort grid from the plan: weeks are whole 7-day spans from the local Monday."""
    origin = monday_before(w.since, w.zone).astimezone(UTC)
    span = timedelta(weeks=1)
    count = (w.until - timedelta(microseconds=1) - origin) // span + 1
    leads = [0] * count
    reached = {goal: [[0] * len(OFFSETS) for _ in range(count)] for goal in GOALS}
    for lead in history.leads:
        if not w.since <= lead.created_at < w.until:
            continue
        week = (lead.created_at - origin) // span
        leads[week] += 1
        for goal, stages in GOALS.items():
            moments = [at for stage, at in lead.changes if stage in stages and at <= w.now]
            for n, k in enumerate(OFFSETS):
                if moments and min(moments) - lead.created_at < (k + 1) * span:
                    reached[goal][week][n] += 1
    grid = {
        goal: tuple(
            tuple(
                None
                if w.now - (origin + week * span) < k * span or not leads[week]
                else percent(reached[goal][week][n], leads[week])
                for n, k in enumerate(OFFSETS)
            )
            for week in range(count)
        )
        for goal in GOALS
    }
    first = monday_before(w.since, w.zone).date()
    return {
        "weeks": tuple(first + timedelta(weeks=n) for n in range(count)),
        "leads": tuple(leads),
        **grid,
    }


def local(day: date, hour: int, zone: ZoneInfo = MOSCOW) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zone)


WINDOWS = {
    # From a Wednesday morning to now: week 0 starts on the Monday before.
    "to_now": Window(local(date(2026, 9, 30), 10), NOW, NOW, MOSCOW),
    # As seen twelve days ago: later stage changes do not count, young cells are blank.
    "earlier": Window(
        local(date(2026, 10, 5), 0), NOW - timedelta(days=12), NOW - timedelta(days=12), MOSCOW
    ),
    # Berlin leaves summer time on 2026-10-25: the weeks are still the same 7-day spans.
    "berlin": Window(local(date(2026, 10, 12), 0, BERLIN), NOW, NOW, BERLIN),
}


@pytest.mark.parametrize("name", list(WINDOWS))
async def test_the_cohort_grid_matches_the_history(db: Database, name: str) -> None:
    history = await write_history(db, seed=21, count=360)
    w = WINDOWS[name]
    async with db.unit_of_work() as uow:
        got = await cohorts.figures(uow.session, scenario(), w)
    want = expected(history, w)
    assert got.offsets == OFFSETS
    assert got.weeks == want["weeks"]
    assert all(week.weekday() == 0 for week in got.weeks)
    assert got.leads == want["leads"]
    assert sum(got.leads) == sum(1 for x in history.leads if w.since <= x.created_at < w.until)
    assert got.qualified == want["qualified"]
    assert got.customers == want["customers"]
    # The history is rich enough for the check to mean something.
    known = [c for row in got.qualified for c in row if c is not None]
    assert any(c > 0 for c in known)
    assert any(c is None for row in got.qualified for c in row)
    for q_row, c_row in zip(got.qualified, got.customers, strict=True):
        for q, c in zip(q_row, c_row, strict=True):  # a customer has reached qualified too
            assert (q is None) == (c is None)
            assert q is None or c is None or c <= q


async def test_the_edges_of_a_cohort_cell(db: Database) -> None:
    """Leads written by hand: qualified a second before and after seven days; a customer that
    skipped `qualified`; a stage change after `now`; a side stage; a week with no lead."""
    monday = datetime.combine(date(2026, 11, 2), time(), tzinfo=MOSCOW).astimezone(UTC)
    now = monday + timedelta(weeks=2, days=1)
    arrive = monday + timedelta(hours=10)
    day = timedelta(days=1)
    plans = {
        1: [("qualified", arrive + 7 * day - timedelta(seconds=1))],  # week 0
        2: [("qualified", arrive + 7 * day + timedelta(seconds=1))],  # week 1
        3: [("warming", arrive + day), ("customer", arrive + 2 * day)],  # skipped qualified
        4: [("qualified", now + timedelta(minutes=1))],  # after now: not yet
        5: [("lost", arrive + day)],
        6: [("handed_off", arrive + 3 * day), ("advocate", arrive + 9 * day)],
    }
    leads = [
        {
            "id": n,
            "created_at": arrive,
            "updated_at": arrive,
            "stage": "new",
            "funnel_stage": "new",
        }
        for n in plans
    ]
    changes = [
        {"lead_id": n, "to_stage": stage, "reason": "test", "created_at": at}
        for n, rows in plans.items()
        for stage, at in rows
    ]
    async with db.unit_of_work() as uow:
        await uow.session.execute(insert(Lead), leads)
        await uow.session.execute(insert(StageChange), changes)
        await uow.commit()
    w = Window(monday, now, now, MOSCOW)
    async with db.unit_of_work() as uow:
        got = await cohorts.figures(uow.session, scenario(), w)
    assert got.weeks == (date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16))
    assert got.leads == (6, 0, 0)
    six = len(plans)
    # qualified: 1, 3 (as a customer), 6 (handed off) in week 0; 2 and 6's advocate later.
    assert got.qualified[0] == (
        percent(3, six), percent(4, six), percent(4, six), None, None
    )  # fmt: skip
    assert got.customers[0] == (
        percent(1, six), percent(2, six), percent(2, six), None, None
    )  # fmt: skip
    assert got.qualified[1] == got.customers[1] == (None,) * 5  # no lead that week
    assert got.qualified[2] == (None,) * 5


async def test_the_tables_keep_blank_cells_blank(db: Database) -> None:
    history = await write_history(db, seed=5, count=150)
    w = WINDOWS["earlier"]
    async with db.unit_of_work() as uow:
        got = await cohorts.figures(uow.session, scenario(), w)
    qualified, customers = cohorts.tables(got)
    assert qualified.columns == (
        "Неделя",
        "Лиды",
        "0 нед.",
        "1 нед.",
        "2 нед.",
        "4 нед.",
        "8 нед.",
    )
    assert "квалификации" in qualified.title
    assert "клиентами" in customers.title
    assert [row[0] for row in qualified.rows] == [f"{week:%d.%m.%Y}" for week in got.weeks]
    assert [row[1] for row in customers.rows] == list(expected(history, w)["leads"])
    assert [tuple(row[2:]) for row in qualified.rows] == list(got.qualified)
    assert qualified.rows[-1][-1] is None  # the last week is too young for 8 weeks
