"""Ad spend stored and read (`bot.analytics.spend`), and spread over a report's window: a row
counts the share of its days that fall inside the window, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select

from bot.analytics.spend import (
    Added,
    add_spend,
    list_spend,
    money,
    month_days,
    parse_amount,
    spend_by_source,
    window_days,
)
from bot.analytics.window import Window
from storage.database import Database
from storage.models import AdSpend

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")  # DST ends 2026-10-25: a day of 25 hours
NOW = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def window(since: datetime, until: datetime, zone: ZoneInfo = MOSCOW) -> Window:
    return Window(since=since, until=until, now=NOW, zone=zone)


def days_in(w: Window) -> set[date]:
    """The window's days as the rule reads: a day whose local midnight is inside it."""
    day = w.since.astimezone(w.zone).date() - timedelta(days=1)
    found = set()
    while local_midnight(day, w.zone) < w.until:
        if local_midnight(day, w.zone) >= w.since:
            found.add(day)
        day += timedelta(days=1)
    return found


async def test_a_month_of_31_000_counts_10_000_in_a_ten_day_window(db: Database) -> None:
    first, last = month_days("2026-12")
    async with db.unit_of_work() as uow:
        await add_spend(
            uow.session,
            source="vk",
            amount=Decimal(31000),
            first_day=first,
            last_day=last,
            now=NOW,
        )
        await uow.commit()
    ten_days = window(
        local_midnight(date(2026, 12, 5), MOSCOW), local_midnight(date(2026, 12, 15), MOSCOW)
    )
    async with db.unit_of_work() as uow:
        assert await spend_by_source(uow.session, ten_days) == {"vk": Decimal("10000.00")}


async def test_a_repeated_key_is_stored_once_and_answered_as_a_duplicate(db: Database) -> None:
    day = date(2026, 12, 1)
    async with db.unit_of_work() as uow:
        first = await add_spend(
            uow.session,
            source="ya",
            amount=Decimal("1500.50"),
            first_day=day,
            last_day=day,
            note="директ",
            key="req-1",
            now=NOW,
        )
        await uow.commit()
    async with db.unit_of_work() as uow:
        again = await add_spend(
            uow.session,
            source="ya",
            amount=Decimal("1500.50"),
            first_day=day,
            last_day=day,
            key="req-1",
            now=NOW + timedelta(minutes=1),
        )
        other = await add_spend(
            uow.session,
            source="ya",
            amount=Decimal(7),
            first_day=day,
            last_day=day,
            key="req-2",
            now=NOW,
        )
        await uow.commit()
    assert not first.duplicate
    assert again.duplicate
    assert not other.duplicate
    assert again.spend == first.spend
    assert first.spend.amount == Decimal("1500.50")
    assert first.spend.note == "директ"
    async with db.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(AdSpend)) == 2


async def test_list_spend_keeps_the_rows_that_touch_the_days_and_the_source(db: Database) -> None:
    rng = random.Random(3)
    rows = []
    for n in range(40):
        first = date(2026, 9, 1) + timedelta(days=rng.randrange(100))
        rows.append(
            {
                "source": rng.choice(("vk", "ya", "tg")),
                "first_day": first,
                "last_day": first + timedelta(days=rng.choice((0, 0, 6, 29))),
                "amount": str(rng.randrange(1, 10**6)),
                "note": f"row {n}",
                "created_at": NOW,
            }
        )
    async with db.unit_of_work() as uow:
        await uow.session.execute(insert(AdSpend), rows)
        await uow.commit()
    since, until = date(2026, 10, 10), date(2026, 10, 31)
    async with db.unit_of_work() as uow:
        listed = await list_spend(uow.session, since_day=since, until_day=until, source="vk")
        everything = await list_spend(uow.session)
    expected = [
        r
        for r in rows
        if r["source"] == "vk" and r["last_day"] >= since and r["first_day"] <= until
    ]
    assert sorted(s.note for s in listed) == sorted(r["note"] for r in expected)
    assert [(s.first_day, s.source) for s in listed] == sorted(
        (r["first_day"], r["source"]) for r in expected
    )
    assert len(everything) == len(rows)
    assert sum(s.amount for s in everything) == sum(Decimal(r["amount"]) for r in rows)


@pytest.mark.parametrize("zone", [MOSCOW, BERLIN], ids=["moscow", "berlin"])
async def test_spend_of_random_rows_is_prorated_by_the_days_inside_each_window(
    db: Database, zone: ZoneInfo
) -> None:
    rng = random.Random(11)
    rows = []
    for _ in range(200):
        first = date(2026, 9, 1) + timedelta(days=rng.randrange(120))
        days = rng.choice((1, 1, 7, 30, 31, 45))
        cents = rng.choice((0, rng.randrange(100)))
        rows.append(
            {
                "source": rng.choice(("vk", "ya", "tg", "seo")),
                "first_day": first,
                "last_day": first + timedelta(days=days - 1),
                "amount": str(Decimal(rng.randrange(0, 500_000)) + Decimal(cents) / 100),
                "created_at": NOW,
            }
        )
    async with db.unit_of_work() as uow:
        await uow.session.execute(insert(AdSpend), rows)
        await uow.commit()
    windows = [
        window(
            local_midnight(date(2026, 10, 1), zone), local_midnight(date(2026, 11, 1), zone), zone
        ),
        window(
            local_midnight(date(2026, 10, 20), zone),
            local_midnight(date(2026, 10, 27), zone),
            zone,
        ),
        window(NOW - timedelta(days=30), NOW, zone),  # rolling: not at a midnight
        window(datetime(2026, 9, 10, 13, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC), zone),
    ]
    for w in windows:
        inside = days_in(w)
        expected: dict[str, Fraction] = {}
        for r in rows:
            span = {
                r["first_day"] + timedelta(days=k)
                for k in range((r["last_day"] - r["first_day"]).days + 1)
            }
            if span & inside:
                share = Fraction(Decimal(r["amount"])) * len(span & inside) / len(span)
                expected[r["source"]] = expected.get(r["source"], Fraction(0)) + share
        async with db.unit_of_work() as uow:
            got = await spend_by_source(uow.session, w)
        assert set(got) == set(expected)
        for source, value in expected.items():
            exact = Decimal(value.numerator) / Decimal(value.denominator)
            assert abs(got[source] - exact) <= Decimal("0.01"), (w, source)


def test_the_window_days_start_and_end_at_local_midnights() -> None:
    whole = window(
        local_midnight(date(2026, 11, 1), MOSCOW), local_midnight(date(2026, 12, 1), MOSCOW)
    )
    assert window_days(whole) == (date(2026, 11, 1), date(2026, 12, 1))
    rolling = window(NOW - timedelta(days=30), NOW)
    first, end = window_days(rolling)
    assert (end - first).days == 30 == len(days_in(rolling))
    assert end - timedelta(days=1) == NOW.astimezone(MOSCOW).date()  # today counts


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("31000", Decimal(31000)),
        ("1500.50", Decimal("1500.50")),
        ("1 500,5", Decimal("1500.5")),
        ("0", Decimal(0)),
    ],
)
def test_amounts_as_typed(typed: str, amount: Decimal) -> None:
    assert parse_amount(typed) == amount


@pytest.mark.parametrize("typed", ["-5", "abc", "1.234", "NaN", "inf", "1e12", ""])
def test_bad_amounts_are_refused(typed: str) -> None:
    with pytest.raises(ValueError, match="сумма"):
        parse_amount(typed)


def test_months() -> None:
    assert month_days("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert month_days("2028-02") == (date(2028, 2, 1), date(2028, 2, 29))
    for bad in ("2026-13", "2026-1", "26-01", "2026/01", "+026-01"):
        with pytest.raises(ValueError, match="ГГГГ-ММ"):
            month_days(bad)


def test_money_rounds_to_the_cent() -> None:
    assert money(None) == Decimal(0)
    assert money(10000.000000001) == Decimal("10000.00")
    assert money(Decimal("2.345")) == Decimal("2.35")


async def test_a_twin_that_commits_first_makes_the_other_a_duplicate(db: Database) -> None:
    """B looks for the key before A commits, so B's insert meets A's row (PostgreSQL waits on
    the unique key, then fails) and B answers A's row instead."""
    day = date(2026, 12, 2)
    a_added = asyncio.Event()
    fields: dict[str, Any] = {"source": "vk", "amount": Decimal(5), "key": "k", "now": NOW}
    fields |= {"first_day": day, "last_day": day}

    async def first() -> Added:
        async with db.unit_of_work() as uow:
            added = await add_spend(uow.session, **fields)
            a_added.set()
            await asyncio.sleep(0.3)  # B is inserting meanwhile (or waiting for the lock)
            await uow.commit()
        return added

    async def second() -> Added:
        await a_added.wait()
        async with db.unit_of_work() as uow:
            added = await add_spend(uow.session, **fields)
            await uow.commit()
        return added

    a, b = await asyncio.gather(first(), second())
    assert not a.duplicate
    assert b.duplicate
    assert b.spend == a.spend
    async with db.unit_of_work() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(AdSpend)) == 1
