"""Drop-off inside offers on both databases: leads of a generated history take the test
funnel's offers and stop at known steps; the test counts what it planned."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bot.analytics import conversation
from bot.analytics.window import Window
from bot.scenario.loader import load_scenario
from bot.scenario.model import Scenario
from storage.database import Database
from storage.models import Event, Lead
from tests.conftest import FIXTURE_SCENARIO

SINCE = datetime(2026, 10, 5, tzinfo=UTC)
UNTIL = datetime(2026, 11, 2, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
MSK = ZoneInfo("Europe/Moscow")
# What a lead does at a step, and which column of the report it lands in.
OUTCOME = {
    "answer": "answered",
    "skip": "skipped",
    "known": "known",
    "refuse": "refused",
    "leave": "left",
}
CONSENT = {"answer": 0.8, "refuse": 0.08, "leave": 0.06, "known": 0.06}
MARKETING = {"answer": 0.6, "refuse": 0.25, "leave": 0.05, "known": 0.1}
QUESTION = {"answer": 0.66, "skip": 0.08, "refuse": 0.07, "leave": 0.1, "known": 0.09}


@dataclass
class Taker:
    offer: str
    took: datetime
    in_window: bool
    actions: list[tuple[str, str]] = field(default_factory=list)  # (step, action)
    delivered: bool = False
    lead_id: int = 0


def steps_of(scenario: Scenario, offer: str) -> list[str]:
    o = scenario.offers[offer]
    consent = ["consent", "marketing"] if o.ask or o.then.start else []
    return consent + list(o.ask)


def plan(scenario: Scenario, rng: random.Random, offer: str, took: datetime) -> Taker:
    taker = Taker(offer, took, SINCE <= took < UNTIL)
    for step in steps_of(scenario, offer):
        odds = {"consent": CONSENT, "marketing": MARKETING}.get(step, QUESTION)
        action = rng.choices(list(odds), list(odds.values()))[0]
        taker.actions.append((step, action))
        # Declining the advertising lets the offer go on; the rest of the refusals end it.
        if action == "leave" or (action == "refuse" and step != "marketing"):
            return taker
    taker.delivered = bool(taker.actions) or rng.random() < 0.8
    return taker


def rows_of(scenario: Scenario, t: Taker) -> list[dict[str, object]]:
    """The events the engine leaves for this plan (bot.engine.offers, contacts,
    inside_question), with the moments in order after taking the offer."""
    at = t.took
    rows: list[dict[str, object]] = []

    def event(name: str, when: datetime, **payload: object) -> None:
        rows.append({"lead_id": t.lead_id, "name": name, "payload": payload, "created_at": when})

    event("offer_taken", at, offer=t.offer)
    earlier = t.took - timedelta(days=3)
    for step, action in t.actions:
        at += timedelta(minutes=2)
        if step == "consent":
            if action == "answer":
                event("consent_given", at, kind="personal_data", version="v1")
            elif action == "refuse":
                event("consent_declined", at, offer=t.offer)
            elif action == "known":
                event("consent_given", earlier, kind="personal_data", version="v1")
        elif step == "marketing":
            if action == "answer":
                event("marketing_consent_given", at, version="v1")
            elif action == "refuse":
                event("marketing_consent_declined", at)
            elif action == "known":
                event("marketing_consent_declined", earlier)
        else:
            kind = scenario.questions[step].type
            if action == "answer":
                event("answered", at, question=step, value="x")
                if kind in ("phone", "email"):
                    event("contact_shared", at, kind=kind, verified=False)
            elif action == "skip":
                event("question_skipped", at, question=step, offer=t.offer)
            elif action == "refuse":
                event("question_refused", at, question=step, offer=t.offer)
            elif action == "known" and kind in ("phone", "email"):
                event("contact_shared", earlier, kind=kind, verified=True)  # a shared phone
            elif action == "known":
                event("answered", earlier, question=step, value="y")
    if t.delivered:
        event("magnet_delivered", at + timedelta(seconds=1), offer=t.offer)
    # Noise that must change nothing: the same offer taken again later, another offer's
    # refusal, a chain's question answered.
    if t.in_window:  # (taken again after the window opened, it would count)
        event("offer_taken", at + timedelta(days=1), offer=t.offer)
    event("consent_declined", at + timedelta(days=1), offer="other")
    event("answered", at + timedelta(days=2), question="nps", value="9")
    return rows


async def generate(db: Database, scenario: Scenario, seed: int, people: int = 300) -> list[Taker]:
    rng = random.Random(seed)
    takers = []
    for _ in range(people):
        # Some took the offer in the week before the window: they are not counted.
        took = SINCE - timedelta(days=7) + timedelta(minutes=rng.randrange(35 * 24 * 60))
        offer = rng.choices(("audit", "guide", "quick"), (5, 4, 1))[0]
        takers.append(plan(scenario, rng, offer, took))
    async with db.unit_of_work() as uow:
        leads = [Lead(created_at=t.took, updated_at=t.took) for t in takers]
        uow.session.add_all(leads)
        await uow.session.flush()
        rows = []
        for taker, lead in zip(takers, leads, strict=True):
            taker.lead_id = lead.id
            rows += rows_of(scenario, taker)
        await uow.session.execute(insert(Event), rows)
        await uow.commit()
    return takers


def expected(
    scenario: Scenario, takers: list[Taker], offer: str
) -> tuple[int, int, list[tuple[object, ...]]]:
    mine = [t for t in takers if t.offer == offer and t.in_window]
    table = []
    for step in steps_of(scenario, offer):
        outcomes = [dict(t.actions).get(step) for t in mine]
        reached = [o for o in outcomes if o is not None]
        columns = [sum(OUTCOME[o] == c for o in reached) for c in OUTCOME.values()]
        table.append((step, len(reached), *columns))
    return len(mine), sum(t.delivered for t in mine), table


def window() -> Window:
    return Window(since=SINCE, until=UNTIL, now=NOW, zone=MSK)


async def test_each_offer_shows_how_many_reached_each_step_and_what_they_did(
    db: Database,
) -> None:
    scenario = load_scenario(FIXTURE_SCENARIO).scenario
    takers = await generate(db, scenario, seed=21)
    async with db.unit_of_work() as uow:
        figures = await conversation.figures(uow.session, scenario, window())
    assert [t.offer for t in figures.offers] == list(scenario.offers)
    for talk in figures.offers:
        took, delivered, table = expected(scenario, takers, talk.offer)
        assert (talk.took, talk.delivered) == (took, delivered)
        assert [
            (s.key, s.reached, s.answered, s.skipped, s.known, s.refused, s.left)
            for s in talk.steps
        ] == table
        for step in talk.steps:
            assert step.reached == (
                step.answered + step.skipped + step.known + step.refused + step.left
            )
    audit = figures.offers[0]
    assert [s.key for s in audit.steps] == [
        "consent",
        "marketing",
        "name",
        "phone",
        "company_size",
    ]
    assert all(s.left and s.answered for s in audit.steps)  # the history has both everywhere
    assert figures.offers[2].steps == ()  # the check-list asks nothing, not even consent


async def test_the_tables_list_the_steps_in_the_order_they_are_met(db: Database) -> None:
    scenario = load_scenario(FIXTURE_SCENARIO).scenario
    takers = await generate(db, scenario, seed=22, people=120)
    async with db.unit_of_work() as uow:
        figures = await conversation.figures(uow.session, scenario, window())
    summary, *details = conversation.tables(figures)
    for row, offer in zip(summary.rows, scenario.offers, strict=True):
        took, delivered, _ = expected(scenario, takers, offer)
        assert row[1:3] == (took, delivered)
        assert row[3] == (100 * delivered / took if took else None)
    guide = next(t for t in details if "(guide)" in t.title)
    _, _, table = expected(scenario, takers, "guide")
    first, *middle, last = guide.rows
    took, delivered, _ = expected(scenario, takers, "guide")
    assert (first[1], last[1]) == (took, delivered)
    assert [row[1:7] for row in middle] == [step[1:] for step in table]
    assert middle[-1][0].startswith("email: ")
    assert [row[7] for row in middle] == [
        100 * step[6] / step[1] if step[1] else None for step in table
    ]


async def test_an_offer_nobody_took_has_a_summary_row_and_no_table(db: Database) -> None:
    scenario = load_scenario(FIXTURE_SCENARIO).scenario
    async with db.unit_of_work() as uow:
        figures = await conversation.figures(uow.session, scenario, window())
    assert [(t.took, t.delivered) for t in figures.offers] == [(0, 0)] * len(scenario.offers)
    assert all(s.reached == 0 for t in figures.offers for s in t.steps)
    assert len(conversation.tables(figures)) == 1
