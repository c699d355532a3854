"""The RFM section on both databases: customers with purchase histories drawn from a seeded
random, their segments, counts, revenue and means computed here from what was written, with
the thresholds as docs/scenario.md words them; customers exactly at each threshold."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.analytics import rfm
from bot.analytics.window import Window
from bot.scenario.loader import load_scenario
from bot.scenario.model import Scenario
from bot.scenario.settings import RfmSettings, ScenarioSettings
from storage.database import Database
from storage.models import Event, Lead
from tests.conftest import FIXTURE_SCENARIO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ZONE = ZoneInfo("Europe/Moscow")
SEGMENT_IDS = ("champions", "loyal", "new", "at_risk", "lost")
TITLES = ("Чемпионы", "Лояльные", "Новые", "Под угрозой", "Потерянные")
# Thresholds other than the defaults, to see the scenario's own are the ones applied.
CUSTOM = {"recent": "2w", "lapsing": "60d", "lost": "17w", "frequent": 2, "big": 2500}


@dataclass
class Buyer:
    """A lead as written: its purchases (time, amount; None: no amount in the event)."""

    source: str | None = None
    purchases: list[tuple[datetime, Decimal | None]] = field(default_factory=list)
    lead_id: int = 0

    def made_by(self, now: datetime) -> list[tuple[datetime, Decimal | None]]:
        return [(at, amount) for at, amount in self.purchases if at <= now]


def expected_segment(buyer: Buyer, now: datetime, limits: RfmSettings) -> str | None:
    """The documented rule, in plain Python: None for a lead who never bought (by `now`)."""
    made = buyer.made_by(now)
    if not made:
        return None
    since_last = now - max(at for at, _ in made)
    count = len(made)
    money = sum((amount or Decimal(0) for _, amount in made), Decimal(0))
    if since_last > limits.lost:
        return "lost"
    if since_last > limits.lapsing:
        return "at_risk"
    if since_last <= limits.recent and count >= limits.frequent and money >= limits.big:
        return "champions"
    if count >= limits.frequent:
        return "loyal"
    return "new"


def generate(seed: int, customers: int = 160) -> list[Buyer]:
    """Customers with 1 to 7 purchases over 400 days before NOW (some without an amount, some
    only after NOW), and leads who never bought (some with other events)."""
    rng = random.Random(seed)
    people = []
    for _ in range(customers):
        buyer = Buyer(source=rng.choice(("vk", "ya", None)))
        # Recent buyers are bought from often, so that every segment gets people.
        horizon = rng.choice((20, 45, 85, 150, 400))
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 7))):
            at = NOW - timedelta(seconds=rng.randint(0, horizon * 86400))
            cents = rng.randint(50_00, 4_000_00)
            amount = None if rng.random() < 0.05 else Decimal(cents) / 100
            buyer.purchases.append((at, amount))
        if rng.random() < 0.1:  # reported ahead of the report's moment: not counted yet
            buyer.purchases.append((NOW + timedelta(days=rng.randint(1, 5)), Decimal(999)))
        people.append(buyer)
    people += [Buyer(source="vk") for _ in range(20)]
    return people


async def write(db: Database, people: list[Buyer]) -> None:
    """The leads and their events, as rows (no kept facts: rules compute them)."""
    async with db.unit_of_work() as uow:
        leads = [
            Lead(created_at=NOW - timedelta(days=500), updated_at=NOW, source=b.source)
            for b in people
        ]
        uow.session.add_all(leads)
        await uow.session.flush()
        events = []
        for buyer, lead in zip(people, leads, strict=True):
            buyer.lead_id = lead.id
            events.append(
                Event(lead_id=lead.id, name="start", payload={}, created_at=lead.created_at)
            )
            for at, amount in buyer.purchases:
                payload: dict[str, Any] = {"product": "audit"}
                if amount is not None:
                    payload["amount"] = float(amount)
                events.append(
                    Event(lead_id=lead.id, name="purchase", payload=payload, created_at=at)
                )
        uow.session.add_all(events)
        await uow.commit()


def scenario(**limits: Any) -> Scenario:
    base = load_scenario(FIXTURE_SCENARIO).scenario
    if not limits:
        return base
    settings = ScenarioSettings.model_validate({**base.settings.model_dump(), "rfm": limits})
    return base.model_copy(update={"settings": settings})


def window(now: datetime = NOW) -> Window:
    return Window(since=now - timedelta(days=30), until=now, now=now, zone=ZONE)


async def figures_of(db: Database, s: Scenario, now: datetime = NOW) -> rfm.RfmFigures:
    async with db.reading() as session:
        return await rfm.figures(session, s, window(now))


@pytest.mark.parametrize("limits", [{}, CUSTOM], ids=["defaults", "custom"])
async def test_segments_of_generated_customers(db: Database, limits: dict[str, Any]) -> None:
    people = generate(seed=17)
    await write(db, people)
    s = scenario(**limits)

    found = await figures_of(db, s)

    expected: dict[str, list[Buyer]] = {segment: [] for segment in SEGMENT_IDS}
    for buyer in people:
        segment = expected_segment(buyer, NOW, s.settings.rfm)
        if segment is not None:
            expected[segment].append(buyer)
    assert all(expected.values()), {k: len(v) for k, v in expected.items()}  # a real test
    assert [segment.id for segment in found.segments] == list(SEGMENT_IDS)
    for segment in found.segments:
        buyers = expected[segment.id]
        made = [buyer.made_by(NOW) for buyer in buyers]
        assert segment.customers == len(buyers), segment.id
        assert segment.revenue == sum(
            (amount or Decimal(0) for purchases in made for _, amount in purchases), Decimal(0)
        ), segment.id
        assert segment.mean_purchases == pytest.approx(mean(len(p) for p in made)), segment.id
        days = [(NOW - max(at for at, _ in p)).total_seconds() / 86400 for p in made]
        assert segment.mean_days == pytest.approx(mean(days), abs=1e-6), segment.id
    customers = [b for b in people if b.made_by(NOW)]
    assert found.customers == len(customers) < len(people)
    assert found.revenue == sum(
        (amount or Decimal(0) for b in customers for _, amount in b.made_by(NOW)), Decimal(0)
    )


async def test_the_segments_are_those_at_the_reports_moment(db: Database) -> None:
    """Later, recent customers lapse: the same purchases, another `now`, other segments."""
    people = generate(seed=5, customers=60)
    await write(db, people)
    later = NOW + timedelta(days=75)
    limits = scenario().settings.rfm

    found = await figures_of(db, scenario(), later)

    counts = {segment.id: segment.customers for segment in found.segments}
    expected = dict.fromkeys(SEGMENT_IDS, 0)
    for buyer in people:
        segment = expected_segment(buyer, later, limits)
        if segment is not None:
            expected[segment] += 1
    assert counts == expected
    assert counts != {
        segment.id: segment.customers for segment in (await figures_of(db, scenario())).segments
    }


# ---- exactly at the thresholds ----

SECOND = timedelta(seconds=1)


def boundary_people(limits: RfmSettings) -> dict[str, Buyer]:
    """Customers on each side of each threshold, by what the docs say they are."""
    n, big = limits.frequent, limits.big
    enough = [big or Decimal(100)] + [Decimal(0)] * (n - 1)  # n purchases, `big` in all
    tenth = Decimal("0.1")

    def buyer(last_ago: timedelta, amounts: list[Decimal]) -> Buyer:
        # The earlier purchases are a second apart from the last: only `last_ago` matters.
        return Buyer(purchases=[(NOW - last_ago - i * SECOND, a) for i, a in enumerate(amounts)])

    return {
        "recent_exactly": buyer(limits.recent, enough),
        "recent_past": buyer(limits.recent + SECOND, enough),
        "lapsing_exactly_frequent": buyer(limits.lapsing, enough),
        "lapsing_exactly_rare": buyer(limits.lapsing, enough[: n - 1]),
        "lapsing_past": buyer(limits.lapsing + SECOND, enough),
        "lost_exactly": buyer(limits.lost, enough[:1]),
        "lost_past": buyer(limits.lost + SECOND, enough * 2),
        "frequent_exactly": buyer(timedelta(0), enough),
        "frequent_less": buyer(timedelta(0), enough[: n - 1]),
        "big_exactly": buyer(timedelta(days=1), [big, *enough[1:]]),
        "big_less": buyer(timedelta(days=1), [big - Decimal("0.01"), *enough[1:]]),
        # `big` in parts that floats do not add up to exactly (0.7 + 0.1 for 0.8).
        "big_in_parts": buyer(timedelta(days=1), [big - tenth, tenth, *enough[2:]]),
    }


BOUNDARIES = {
    "recent_exactly": "champions",
    "recent_past": "loyal",
    "lapsing_exactly_frequent": "loyal",
    "lapsing_exactly_rare": "new",
    "lapsing_past": "at_risk",
    "lost_exactly": "at_risk",
    "lost_past": "lost",
    "frequent_exactly": "champions",
    "frequent_less": "new",
    "big_exactly": "champions",
    "big_in_parts": "champions",
}


@pytest.mark.parametrize(
    "limits",
    [
        {"frequent": 2, "big": 1000},
        {"recent": "1d", "lapsing": "2d", "lost": "3d", "big": "0.8"},
        {"frequent": 4, "big": 150000},
    ],
)
async def test_a_customer_exactly_at_a_threshold(db: Database, limits: dict[str, Any]) -> None:
    s = scenario(**limits)
    people = boundary_people(s.settings.rfm)
    await write(db, list(people.values()))

    found = await figures_of(db, s)

    expected = {**BOUNDARIES, "big_less": "loyal"}
    assert {name: expected_segment(b, NOW, s.settings.rfm) for name, b in people.items()} == (
        expected
    )  # the Python rule agrees with the docs...
    counts = {segment.id: segment.customers for segment in found.segments}
    assert counts == {seg: list(expected.values()).count(seg) for seg in SEGMENT_IDS}  # ...and SQL


# ---- the table ----


async def test_the_table_names_each_segment_in_russian_with_its_id(db: Database) -> None:
    people = generate(seed=3, customers=40)
    await write(db, people)
    found = await figures_of(db, scenario())

    [table] = rfm.tables(found)

    assert [(row[0], row[1]) for row in table.rows] == list(zip(TITLES, SEGMENT_IDS, strict=True))
    total = sum(1 for b in people if b.made_by(NOW))
    assert [row[2] for row in table.rows] == [s.customers for s in found.segments]
    assert sum(row[2] for row in table.rows) == total  # type: ignore[misc]
    shares = [row[3] for row in table.rows]
    assert shares == [pytest.approx(100 * s.customers / total) for s in found.segments]
    assert "rfm: at_risk" in table.note
    assert "180 дн." in table.note
    assert "90 дн." in table.note
    assert "30 дн." in table.note


async def test_no_customers_no_rows(db: Database) -> None:
    await write(db, [Buyer(), Buyer(source="vk")])
    found = await figures_of(db, scenario())
    assert [s.customers for s in found.segments] == [0] * 5
    assert found.revenue == Decimal(0)
    [table] = rfm.tables(found)
    assert table.rows == ()


def test_default_thresholds_are_the_documented_ones() -> None:
    limits = ScenarioSettings().rfm
    assert (limits.recent, limits.lapsing, limits.lost, limits.frequent, limits.big) == (
        timedelta(days=30),
        timedelta(days=90),
        timedelta(days=180),
        3,
        Decimal(0),
    )
