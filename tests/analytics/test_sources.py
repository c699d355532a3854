"""Sources and money (`bot.analytics.sources`) over a generated history, on SQLite and
PostgreSQL: a few hundred leads over eight weeks from a seeded `random.Random`, written with
bulk inserts (leads, contacts, stage changes, purchases and other events, ad spend). Every
figure is computed again here from the Python-side list of what was written."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from bot.analytics import sources
from bot.analytics.tables import percent
from bot.analytics.window import By, Window
from bot.scenario.fields import FUNNEL_STAGES
from bot.scenario.loader import load_scenario
from bot.scenario.model import Scenario
from storage.database import Database
from storage.models import AdSpend, Contact, Event, Lead, StageChange
from tests.analytics.test_spend import days_in
from tests.conftest import FIXTURE_SCENARIO

ZONE = ZoneInfo("Europe/Moscow")
START = datetime(2026, 9, 27, 21, 0, tzinfo=UTC)  # Monday 2026-09-28, 00:00 in Moscow
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WEEKS = 8
CENT = Decimal("0.01")
SOURCES = ("vk", "ya", "tg", None)
OFFERS = ("guide", "audit", None)
QUALIFIED = FUNNEL_STAGES[FUNNEL_STAGES.index("qualified") :]
CUSTOMER = FUNNEL_STAGES.index("customer")


@dataclass
class Planned:
    """What was written for one lead."""

    id: int
    created_at: datetime
    source: str | None
    offer: str | None
    contacts: int
    changes: list[tuple[str, datetime]] = field(default_factory=list)  # (to_stage, at)
    purchases: list[tuple[datetime, Decimal | None]] = field(default_factory=list)

    @property
    def funnel_stage(self) -> str:
        reached = [FUNNEL_STAGES.index(s) for s, _ in self.changes if s in FUNNEL_STAGES]
        return FUNNEL_STAGES[max(reached)]


@dataclass
class History:
    leads: list[Planned]
    spend: list[dict[str, Any]]


@cache
def scenario() -> Scenario:
    return load_scenario(FIXTURE_SCENARIO).scenario


def _plan(rng: random.Random, lead_id: int) -> Planned:
    created = START + timedelta(seconds=rng.randrange(WEEKS * 7 * 86400))
    lead = Planned(
        id=lead_id,
        created_at=created,
        source=rng.choices(SOURCES, (5, 3, 1, 2))[0],
        offer=rng.choices(OFFERS, (5, 3, 2))[0],
        contacts=rng.choices((0, 1, 2), (4, 4, 2))[0],
    )
    lead.changes.append(("new", created))
    furthest = rng.choices(range(len(FUNNEL_STAGES)), (3, 3, 3, 2, 2, 2, 3, 1))[0]
    skip_qualified = rng.random() < 0.35  # an outside purchase: straight to customer
    at = created
    for index in range(1, furthest + 1):
        stage = FUNNEL_STAGES[index]
        if skip_qualified and stage in ("qualified", "handed_off") and furthest >= CUSTOMER:
            continue
        # Some go fast (hours), some slow (weeks): the cohorts fill up over the offsets.
        at += timedelta(seconds=rng.randrange(60, rng.choice((6 * 3600, 3 * 86400, 12 * 86400))))
        if at > NOW:
            break
        lead.changes.append((stage, at))
        if stage == "customer":
            for k in range(rng.choice((1, 1, 2, 3))):
                bought = at + timedelta(seconds=k * rng.randrange(86400, 20 * 86400))
                if bought <= NOW:
                    cents = rng.randrange(100_000, 30_000_000)
                    amount = None if rng.random() < 0.1 else Decimal(cents) / 100
                    lead.purchases.append((bought, amount))
    if rng.random() < 0.1 and at < NOW - timedelta(hours=1):
        lead.changes.append(("lost", at + timedelta(minutes=30)))  # a side trip
    return lead


def _spend() -> list[dict[str, Any]]:
    """Months whose daily rate is whole cents (so every share is exact), days, and a source
    that brought no lead."""

    def row(source: str, first: date, last: date, per_day: str) -> dict[str, Any]:
        days = (last - first).days + 1
        amount = Decimal(per_day) * days
        return {
            "source": source,
            "first_day": first,
            "last_day": last,
            "amount": f"{amount:f}",
            "created_at": START,
        }

    found = [
        row("vk", date(2026, 9, 1), date(2026, 9, 30), "1000"),
        row("vk", date(2026, 10, 1), date(2026, 10, 31), "1250.50"),
        row("vk", date(2026, 11, 1), date(2026, 11, 30), "900"),
        row("fb", date(2026, 10, 1), date(2026, 10, 31), "300"),
    ]
    found += [
        row("ya", date(2026, 10, 1) + timedelta(days=n), date(2026, 10, 1) + timedelta(days=n), p)
        for n, p in enumerate(("1500", "2200.75", "0", "3100.10") * 12)
    ]
    return found


async def write_history(db: Database, *, seed: int = 7, count: int = 320) -> History:
    rng = random.Random(seed)
    leads = [_plan(rng, n + 1) for n in range(count)]
    lead_rows, contacts, changes, events = [], [], [], []
    for lead in leads:
        stage = lead.changes[-1][0] if lead.changes[-1][0] == "lost" else lead.funnel_stage
        lead_rows.append(
            {
                "id": lead.id,
                "created_at": lead.created_at,
                "updated_at": lead.changes[-1][1],
                "stage": stage,
                "funnel_stage": lead.funnel_stage,
                "score": 0,
                "source": lead.source,
                "offer": lead.offer,
            }
        )
        for kind in ("phone", "email")[: lead.contacts]:
            contacts.append(
                {
                    "lead_id": lead.id,
                    "kind": kind,
                    "value": f"{kind}-{lead.id}",
                    "verified": False,
                    "channel": "telegram",
                    "created_at": lead.created_at,
                }
            )
        previous = None
        for to_stage, at in lead.changes:
            changes.append(
                {
                    "lead_id": lead.id,
                    "from_stage": previous,
                    "to_stage": to_stage,
                    "reason": "test",
                    "created_at": at,
                }
            )
            previous = to_stage
        events.append(_event(lead.id, "start", {}, lead.created_at))
        # Not a purchase, though it carries an amount: must not count as revenue.
        events.append(_event(lead.id, "promo_redeemed", {"amount": 999.0}, lead.created_at))
        for at, amount in lead.purchases:
            payload = {"product": "audit"} if amount is None else {"amount": float(amount)}
            events.append(_event(lead.id, "purchase", payload, at))
    spend = _spend()
    async with db.unit_of_work() as uow:
        for model, rows in (
            (Lead, lead_rows),
            (Contact, contacts),
            (StageChange, changes),
            (Event, events),
            (AdSpend, spend),
        ):
            await uow.session.execute(insert(model), rows)
        await uow.commit()
    return History(leads, spend)


def _event(lead_id: int, name: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "name": name,
        "payload": payload,
        "channel": "telegram",
        "created_at": at,
    }


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZONE)


def window(since: datetime, until: datetime, now: datetime = NOW, by: By | None = None) -> Window:
    return Window(since=since, until=until, now=now, zone=ZONE, by=by)


# ---- the figures computed again from the plan ----


def expected_spend(history: History, w: Window) -> dict[str, Decimal]:
    inside = days_in(w)
    found: dict[str, Fraction] = {}
    for r in history.spend:
        days = {
            r["first_day"] + timedelta(days=k)
            for k in range((r["last_day"] - r["first_day"]).days + 1)
        }
        if days & inside:
            share = Fraction(Decimal(r["amount"])) * len(days & inside) / len(days)
            found[r["source"]] = found.get(r["source"], Fraction(0)) + share
    return {s: Decimal(f.numerator) / Decimal(f.denominator) for s, f in found.items()}


def cents(value: Fraction | Decimal) -> Decimal:
    exact = (
        Decimal(value.numerator) / Decimal(value.denominator)
        if isinstance(value, Fraction)
        else value
    )
    return exact.quantize(CENT, rounding=ROUND_HALF_UP)


def expected_row(
    key: str | None, leads: list[Planned], spend: Decimal | None, now: datetime
) -> dict[str, Any]:
    bought = {lead.id: [(at, a) for at, a in lead.purchases if at <= now] for lead in leads}
    customers = [lead for lead in leads if bought[lead.id]]
    purchases = sum(len(bought[lead.id]) for lead in leads)
    revenue = sum((a for lead in leads for _, a in bought[lead.id] if a is not None), Decimal(0))
    cycle = [
        (min(at for at, _ in bought[lead.id]) - lead.created_at).total_seconds() / 86400
        for lead in customers
    ]
    return {
        "key": key,
        "spend": spend,
        "leads": len(leads),
        "with_contact": sum(1 for lead in leads if lead.contacts),
        "qualified": sum(1 for lead in leads if lead.funnel_stage in QUALIFIED),
        "customers": len(customers),
        "purchases": purchases,
        "revenue": revenue,
        "cycle_days": sum(cycle) / len(cycle) if cycle else None,
        "cpl": cents(Fraction(spend) / len(leads)) if spend is not None and leads else None,
        "cpa": cents(Fraction(spend) / len(customers))
        if spend is not None and customers
        else None,
        "romi": percent(revenue - spend, spend) if spend is not None else None,
        "average_check": cents(Fraction(revenue) / purchases) if purchases else None,
        "ltv": cents(Fraction(revenue) / len(customers)) if customers else None,
    }


def as_dict(row: sources.Row) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}


def same(got: sources.Row, expected: dict[str, Any]) -> None:
    actual = as_dict(got)
    for name in ("cycle_days", "romi"):
        if expected[name] is None:
            assert actual[name] is None, (got.key, name)
        else:
            assert actual[name] == pytest.approx(expected[name], rel=1e-7), (got.key, name)
    rest = {k: v for k, v in actual.items() if k not in ("cycle_days", "romi")}
    assert rest == {k: v for k, v in expected.items() if k not in ("cycle_days", "romi")}


def arrived(history: History, w: Window) -> list[Planned]:
    return [lead for lead in history.leads if w.since <= lead.created_at < w.until]


# ---- tests ----


@pytest.mark.parametrize("as_of", [NOW, NOW - timedelta(days=12)], ids=["now", "earlier"])
async def test_per_source_figures_match_the_history(db: Database, as_of: datetime) -> None:
    history = await write_history(db)
    w = window(midnight(date(2026, 10, 5)), midnight(date(2026, 11, 16)), now=as_of)
    async with db.unit_of_work() as uow:
        got = await sources.figures(uow.session, scenario(), w)
    leads = arrived(history, w)
    spend = expected_spend(history, w)
    keys = {lead.source for lead in leads} | set(spend)
    by_key = {r.key: r for r in got.sources}
    assert set(by_key) == keys
    assert len(got.sources) == len(keys)
    for key in keys:
        mine = [lead for lead in leads if lead.source == key]
        same(by_key[key], expected_row(key, mine, spend.get(key), as_of))
    total_spend = sum(spend.values()) if spend else None
    same(got.total, expected_row("Итого", leads, total_spend, as_of))
    # The generated history has something in each kind of row the section must handle.
    assert by_key["fb"].leads == 0
    assert by_key["fb"].romi == -100.0
    assert by_key[None].spend is None
    assert by_key[None].cpl is None
    assert 0 < got.total.customers < got.total.qualified < got.total.leads
    assert got.offers == ()
    assert got.offers_total is None
    # Most leads first, leads without a source last.
    order = [r.key for r in got.sources]
    assert order[-1] is None
    counts = [by_key[k].leads for k in order[:-1]]
    assert counts == sorted(counts, reverse=True)


async def test_per_offer_figures_leave_spend_blank(db: Database) -> None:
    history = await write_history(db, seed=8, count=260)
    w = window(midnight(date(2026, 9, 28)), midnight(date(2026, 11, 23)), by="offer")
    async with db.unit_of_work() as uow:
        got = await sources.figures(uow.session, scenario(), w)
    leads = arrived(history, w)
    by_key = {r.key: r for r in got.offers}
    assert set(by_key) == {lead.offer for lead in leads}
    for key, row in by_key.items():
        same(row, expected_row(key, [lead for lead in leads if lead.offer == key], None, NOW))
    assert got.offers_total is not None
    same(got.offers_total, expected_row("Итого", leads, None, NOW))
    assert got.total.leads == got.offers_total.leads == len(leads)
    assert got.total.revenue == got.offers_total.revenue


async def test_the_tables_name_the_columns_and_the_rows_in_russian(db: Database) -> None:
    await write_history(db, count=120)
    w = window(midnight(date(2026, 10, 5)), midnight(date(2026, 11, 16)), by="offer")
    async with db.unit_of_work() as uow:
        figures = await sources.figures(uow.session, scenario(), w)
    money, customers, offer_money, offer_customers = sources.tables(figures)
    assert money.columns == (
        "Источник", "Расход", "Лиды", "С контактом", "Квалиф.", "Клиенты", "Выручка",
        "CPL", "CPA", "ROMI, %",
    )  # fmt: skip
    assert customers.columns == (
        "Источник", "Клиенты", "Покупки", "Средний чек", "Цикл сделки (среднее), дн.", "LTV",
    )  # fmt: skip
    names = [row[0] for row in money.rows]
    assert names[-1] == "Итого"
    assert names[-2] == "без источника"
    assert money.rows[-1][1] == figures.total.spend
    assert [row[0] for row in customers.rows] == names
    assert offer_money.columns[0] == "Оффер"
    assert "без предложения" in [row[0] for row in offer_money.rows]
    for row in offer_money.rows:  # spend, CPL, CPA, ROMI: blank for offers
        assert (row[1], row[7], row[8], row[9]) == (None, None, None, None)
    assert len(offer_customers.rows) == len(offer_money.rows)


async def test_an_empty_window_has_only_its_spend(db: Database) -> None:
    history = await write_history(db, count=30)
    w = window(midnight(date(2026, 10, 1)), midnight(date(2026, 10, 2)))
    w = Window(w.since - timedelta(days=400), w.until - timedelta(days=400), NOW, ZONE)
    async with db.unit_of_work() as uow:
        got = await sources.figures(uow.session, scenario(), w)
    assert got.sources == ()
    assert got.total.leads == 0
    assert got.total.spend is None
    assert got.total.romi is None
    assert history.leads  # the database was not empty
    assert sources.tables(got)[0].rows == ()
