"""The A/B section on both databases: a generated history (seeded random) where variant b
truly converts better, written as rows with known times; every count is computed here from
what was written, the p-value with a formula of the test's own, and the winner is named only
when the data supports it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from bot import sequences
from bot.analytics import ab
from bot.analytics.tables import text_lines
from bot.analytics.window import Window
from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES
from bot.scenario.model import Scenario, Step
from storage.database import Database
from storage.models import Event, Lead, StageChange
from tests.delivery.harness import load, scenario_folder

SEQ = "ab_chain"
SINCE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=10)
ZONE = ZoneInfo("Europe/Moscow")
CHAIN = """
sequences:
  ab_chain:
    steps:
      - id: hello
        text: "Вариант А"
        variants: {b: "Вариант Б"}
        buttons: [{text: "Записаться", event: audit_booked, reply: "Записали"}]
      - id: pitch
        after: 1d
        text: "Цены A"
        variants: {b: "Цены B", c: "Цены C"}
        weights: {a: 70, b: 15, c: 15}
        goal: {stage: qualified}
        min_sent: 50
        buttons: [{text: "Цены", url: "https://example.com/prices"}]
      - id: invite
        after: 2d
        text: "Приходите"
        variants: {b: "Ждём вас"}
        goal: {event: audit_booked}
        confidence: 0.99
        min_sent: 20
"""
# How often each variant's lead clicks (and so reaches the default goal) and qualifies.
CLICKS = {"a": 0.10, "b": 0.22, "c": 0.10}
QUALIFIES = {"a": 0.08, "b": 0.18, "c": 0.09}


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return load(scenario_folder(tmp_path, CHAIN)).scenario


def step_of(scenario: Scenario, step_id: str) -> Step:
    return next(st for st in scenario.sequences[SEQ].steps if st.id == step_id)


@dataclass
class Written:
    """What the test wrote for one lead, to compute the expected figures from."""

    lead_id: int
    sends: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # step -> variant, at
    events: list[tuple[str, dict[str, Any], datetime]] = field(default_factory=list)
    changes: list[tuple[str | None, str, datetime]] = field(default_factory=list)


async def write_history(
    db: Database, scenario: Scenario, leads: int, seed: int, *, clicks: dict[str, float] = CLICKS
) -> list[Written]:
    """Leads who got the chain's steps around the window (some before it, some after), with
    clicks, goal events, stage changes and purchases after (and a few before) the sends, and
    clicks recorded before clicks named their step (no `sequence`/`step`)."""
    rng = random.Random(seed)
    async with db.unit_of_work() as uow:
        created = SINCE - timedelta(days=3)
        rows = [{"created_at": created, "updated_at": created} for _ in range(leads)]
        ids = list((await uow.session.execute(insert(Lead).returning(Lead.id), rows)).scalars())
        await uow.commit()
    people = [Written(lead_id) for lead_id in ids]
    for person in people:
        at = lambda base, hours: base + timedelta(seconds=rng.randint(60, hours * 3600))  # noqa: E731
        for step in scenario.sequences[SEQ].steps:
            variant = sequences.variant_of(person.lead_id, SEQ, step)
            sent = SINCE + timedelta(seconds=rng.randint(-86400, 11 * 86400))
            person.sends[step.id] = (variant, sent)
            details = {"sequence": SEQ, "step": step.id, "variant": variant}
            person.events.append(("step_sent", details, sent))
            place = {"sequence": SEQ, "step": step.id}
            if rng.random() < clicks[variant]:
                if step.id == "pitch":
                    clicked = {"url": "https://example.com/prices", **place}
                    person.events.append(("link_clicked", clicked, at(sent, 72)))
                else:
                    person.events.append(("audit_booked", {"button": True, **place}, at(sent, 72)))
            if rng.random() < 0.05:  # a click before the send: not one of this send's
                person.events.append(("link_clicked", {"url": "x", **place}, sent - timedelta(1)))
            if rng.random() < 0.05:  # an old click, of no step: a goal event all the same
                person.events.append(("audit_booked", {"button": True}, at(sent, 48)))
        first = min(sent for _, sent in person.sends.values())
        variant = person.sends["pitch"][0]
        roll = rng.random()
        if roll < QUALIFIES[variant]:
            person.changes.append(("contact", "qualified", at(first, 200)))
        elif roll < QUALIFIES[variant] + 0.03:  # straight to customer: reached qualified too
            person.changes.append(("contact", "customer", at(first, 200)))
        elif roll < QUALIFIES[variant] + 0.06:  # back from unsubscribed: reached nothing new
            person.changes.append(("unsubscribed", "qualified", at(first, 200)))
        if rng.random() < 0.04:
            person.changes.append(("new", "qualified", first - timedelta(days=2)))
        if rng.random() < 0.07:
            person.events.append(("purchase", {"amount": 1000.0}, at(first, 300)))
    async with db.unit_of_work() as uow:
        events = [
            {"lead_id": p.lead_id, "name": n, "payload": d, "channel": None, "created_at": t}
            for p in people
            for n, d, t in p.events
        ]
        await uow.session.execute(insert(Event), events)
        changes = [
            {"lead_id": p.lead_id, "from_stage": f, "to_stage": to, "reason": "t", "created_at": t}
            for p in people
            for f, to, t in p.changes
        ]
        if changes:
            await uow.session.execute(insert(StageChange), changes)
        await uow.commit()
    return people


def window(until: datetime = UNTIL) -> Window:
    return Window(SINCE, until, until, ZONE, "variant")


# ---- the expected figures, from what was written ----


def reached_stage(person: Written, stage: str, sent: datetime, until: datetime) -> bool:
    later = FUNNEL_STAGES[FUNNEL_STAGES.index(stage) :]
    return any(
        sent <= t < until and to in later and origin not in SIDE_STAGES
        for origin, to, t in person.changes
    )


def did(person: Written, sent: datetime, until: datetime, test: Any) -> bool:
    return any(sent <= t < until and test(name, details) for name, details, t in person.events)


def expected(
    people: list[Written], step: Step, until: datetime = UNTIL
) -> dict[str, dict[str, int]]:
    counts = {v: dict.fromkeys(("sent", "clicked", "goal", "qual", "bought"), 0) for v in "abc"}
    for person in people:
        variant, sent = person.sends[step.id]
        if not SINCE <= sent < until:
            continue

        def clicked(name: str, details: dict[str, Any]) -> bool:
            return name != "step_sent" and (details.get("sequence"), details.get("step")) == (
                SEQ,
                step.id,
            )

        click = did(person, sent, until, clicked)
        if step.goal is None:
            goal = click
        elif step.goal.event is not None:
            goal = did(person, sent, until, lambda name, _: name == step.goal.event)
        else:
            goal = reached_stage(person, step.goal.stage, sent, until)
        row = counts[variant]
        row["sent"] += 1
        row["clicked"] += click
        row["goal"] += goal
        row["qual"] += reached_stage(person, "qualified", sent, until)
        row["bought"] += did(person, sent, until, lambda name, _: name == "purchase")
    return counts


def own_p(x1: int, n1: int, x2: int, n2: int) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 2 * (1 - NormalDist().cdf(abs(z)))


async def section(db: Database, scenario: Scenario, until: datetime = UNTIL) -> ab.AbFigures:
    async with db.reading() as session:
        return await ab.figures(session, scenario, window(until))


def step_result(figures: ab.AbFigures, step_id: str) -> ab.StepTest:
    return next(t for t in figures.tests if t.step == step_id)


# ---- tests ----


async def test_the_counts_and_p_values_are_those_of_the_rows_written(
    db: Database, scenario: Scenario
) -> None:
    people = await write_history(db, scenario, 600, seed=17)
    figures = await section(db, scenario)
    assert [t.step for t in figures.tests] == ["hello", "pitch", "invite"]
    for step in scenario.sequences[SEQ].steps:
        want = expected(people, step)
        test = step_result(figures, step.id)
        assert [v.variant for v in test.variants] == step.variant_names
        for v in test.variants:
            row = want[v.variant]
            got = (v.sent, v.clicked, v.goal, v.qualified, v.purchased)
            assert got == (row["sent"], row["clicked"], row["goal"], row["qual"], row["bought"])
            assert row["sent"] > 0
            if v.variant == "a":
                assert v.p_value is None
            else:
                a = want["a"]
                mine = own_p(a["goal"], a["sent"], row["goal"], row["sent"])
                assert v.p_value == pytest.approx(mine, rel=1e-9, abs=1e-12)
        assert sum(v.best or 0 for v in test.variants) == pytest.approx(1.0)
    # the history has every kind of row that must not count, and some that must
    hello = expected(people, step_of(scenario, "hello"))
    assert 0 < hello["a"]["clicked"] < hello["a"]["sent"]
    pitch = step_result(figures, "pitch")
    assert [v.share for v in pitch.variants] == [70.0, 15.0, 15.0]


async def test_the_window_bounds_what_is_counted(db: Database, scenario: Scenario) -> None:
    people = await write_history(db, scenario, 300, seed=5)
    until = SINCE + timedelta(days=4)
    figures = await section(db, scenario, until)
    for step in scenario.sequences[SEQ].steps:
        want = expected(people, step, until)
        for v in step_result(figures, step.id).variants:
            assert (v.sent, v.clicked, v.goal) == tuple(
                want[v.variant][k] for k in ("sent", "clicked", "goal")
            )


async def test_no_winner_while_the_variants_have_few_sends(
    db: Database, scenario: Scenario
) -> None:
    people = await write_history(db, scenario, 40, seed=3)
    figures = await section(db, scenario)
    for step in scenario.sequences[SEQ].steps:
        test = step_result(figures, step.id)
        fewest = min(expected(people, step)[v]["sent"] for v in step.variant_names)
        assert fewest < step.min_sent
        assert test.winner is None
        assert (
            test.note
            == f"победителя пока нет: нужно ещё ~{step.min_sent - fewest} отправок на вариант"
        )


async def test_b_wins_once_the_data_supports_it(db: Database, scenario: Scenario) -> None:
    people = await write_history(db, scenario, 3000, seed=11)
    figures = await section(db, scenario)
    hello = step_result(figures, "hello")
    want = expected(people, step_of(scenario, "hello"))
    p = own_p(want["a"]["goal"], want["a"]["sent"], want["b"]["goal"], want["b"]["sent"])
    assert p < 0.05
    assert min(want[v]["sent"] for v in "ab") >= 100
    assert hello.winner == "b"
    assert hello.note.startswith("победитель: b (")
    [b] = [v for v in hello.variants if v.variant == "b"]
    assert b.best is not None
    assert b.best > 0.95
    [table] = [t for t in ab.tables(figures) if "шаг hello" in t.title]
    assert [row[0] for row in table.rows] == ["a", "b"]
    assert table.note == hello.note
    assert any("победитель: b" in line for line in text_lines(table))


async def test_a_difference_that_is_not_significant_says_its_p_value(
    db: Database, scenario: Scenario
) -> None:
    # The same click rate for both: whatever the draw gives, the test cannot call it.
    people = await write_history(db, scenario, 700, seed=23, clicks={"a": 0.2, "b": 0.2, "c": 0.2})
    figures = await section(db, scenario)
    hello = step_result(figures, "hello")
    want = expected(people, step_of(scenario, "hello"))
    p = own_p(want["a"]["goal"], want["a"]["sent"], want["b"]["goal"], want["b"]["sent"])
    assert p >= 0.05, "the seed gave a significant difference; pick another"
    assert hello.winner is None
    shown = f"{p:.2f}".replace(".", ",") if p >= 0.01 else f"{p:.3f}".replace(".", ",")
    assert hello.note.startswith(f"победителя пока нет: разница не значима, p = {shown}")


def test_the_verdict_needs_every_variant_to_lose_to_the_leader() -> None:
    step = Step(id="s", text="a", variants={"b": "b", "c": "c"}, min_sent=10)
    # b beats a clearly, but not c: no winner among three
    sent = {"a": 1000, "b": 1000, "c": 1000}
    reached = {"a": 100, "b": 200, "c": 190}
    winner, note = ab.verdict(step, sent, reached)
    assert winner is None
    assert f"p = {ab.p_text(own_p(190, 1000, 200, 1000))}" in note
    reached["c"] = 100
    assert ab.verdict(step, sent, reached)[0] == "b"
