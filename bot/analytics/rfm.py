"""RFM: customers (leads with a `purchase` event) by recency, frequency and money, in the
named segments a marketer can address with the rule `rfm: <segment>`.

`segment_of` is the one definition of the segments, a SQL CASE over the per-customer
aggregates of `customers`: the report groups by it and the rule (bot/rules.py) reads it, so
the two never disagree. Read in order, the first line that holds names the segment:

- `lost`: the last purchase was more than `settings.rfm.lost` ago (180 days by default);
- `at_risk`: more than `lapsing` ago (90 days);
- `champions`: at most `recent` ago (30 days), at least `frequent` purchases (3) and at
  least `big` spent (0: any sum);
- `loyal`: at least `frequent` purchases (the last within `lapsing`);
- `new`: the rest: fewer than `frequent` purchases, the last within `lapsing`.

So every customer is in exactly one segment, and a purchase exactly `recent`, `lapsing` or
`lost` ago still counts as within it. The thresholds compare timestamps (`now - lost`),
not computed ages, so a boundary is exact on both databases.

The section is a snapshot at `window.now` of every purchase made by then, not only those of
the window: a segment is who the customer is now, and the report's counts are the leads a
broadcast to `rfm: at_risk` would reach (before consent). Erased leads keep their purchases
(anonymous, without amounts) in the counts, as the revenue report keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Numeric, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from bot.analytics.tables import Table, percent, shown
from bot.analytics.window import DAY, Window, seconds_between
from bot.scenario.conditions import RFM_SEGMENTS
from bot.scenario.model import Scenario
from bot.scenario.settings import RfmSettings
from storage.models import Event

PURCHASE = "purchase"
_MONEY = Numeric(18, 2)
_CENT = Decimal("0.01")


def customers(now: datetime, lead_ids: Sequence[int] | None = None) -> Subquery:
    """Per customer: `lead_id`, `purchases`, `money` (the amounts' sum; a purchase without
    an amount adds 0) and `last_purchase`, over the purchases made by `now`; only the leads
    `lead_ids` names, when given."""
    # Summed as exact decimals where the database has them, and kept in cents, so that a
    # sum compares with `big` as the marketer counts it, on SQLite's floats too.
    amount = cast(Event.payload["amount"].as_float(), Numeric())
    money = func.round(cast(func.coalesce(func.sum(amount), 0), Numeric()), 2)
    query = select(
        Event.lead_id.label("lead_id"),
        func.count().label("purchases"),
        cast(money, _MONEY).label("money"),
        func.max(Event.created_at).label("last_purchase"),
    ).where(Event.name == PURCHASE, Event.created_at <= now)
    if lead_ids is not None:
        query = query.where(Event.lead_id.in_(lead_ids))
    return query.group_by(Event.lead_id).subquery("customers")


def segment_of(rows: Subquery, now: datetime, limits: RfmSettings) -> ColumnElement[str]:
    """The customer's segment id, as SQL over a `customers` subquery (see the module's
    docstring for the order of the lines)."""
    last, purchases, money = rows.c.last_purchase, rows.c.purchases, rows.c.money
    frequent = purchases >= limits.frequent
    return case(
        (last < now - limits.lost, "lost"),
        (last < now - limits.lapsing, "at_risk"),
        (and_(last >= now - limits.recent, frequent, money >= limits.big), "champions"),
        (frequent, "loyal"),
        else_="new",
    )


async def segments_of(
    session: AsyncSession, lead_ids: Sequence[int], now: datetime, limits: RfmSettings
) -> dict[int, str]:
    """The segment of each of these leads that is a customer at `now` (the others are left
    out): what the rule `rfm:` reads, in one statement."""
    if not lead_ids:
        return {}
    rows = customers(now, lead_ids)
    query = select(rows.c.lead_id, segment_of(rows, now, limits))
    return {row[0]: row[1] for row in await session.execute(query)}


@dataclass(frozen=True)
class Segment:
    id: str  # as the rule names it: champions, loyal, new, at_risk, lost
    title: str  # as the table shows it
    customers: int
    revenue: Decimal
    mean_purchases: float | None  # None: no customers in the segment
    mean_days: float | None  # mean days since the last purchase


@dataclass(frozen=True)
class Thresholds:
    """`settings.rfm` as plain numbers (for the note under the table and the JSON)."""

    recent_days: float
    lapsing_days: float
    lost_days: float
    frequent: int
    big: Decimal

    @classmethod
    def of(cls, limits: RfmSettings) -> Thresholds:
        days = (
            span.total_seconds() / DAY for span in (limits.recent, limits.lapsing, limits.lost)
        )
        return cls(*days, frequent=limits.frequent, big=limits.big)


@dataclass(frozen=True)
class RfmFigures:
    now: datetime  # the moment the segments describe, in the scenario's zone
    thresholds: Thresholds
    segments: tuple[Segment, ...]  # every segment, in RFM_SEGMENTS order, empty ones too
    customers: int
    revenue: Decimal


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> RfmFigures:
    now, limits = window.now, scenario.settings.rfm
    rows = customers(now)
    per_customer = select(
        segment_of(rows, now, limits).label("segment"),
        rows.c.purchases,
        rows.c.money,
        (seconds_between(session, now, rows.c.last_purchase) / DAY).label("days"),
    ).subquery("rfm")
    query = select(
        per_customer.c.segment,
        func.count(),
        cast(func.sum(per_customer.c.money), _MONEY),
        func.avg(per_customer.c.purchases),
        func.avg(per_customer.c.days),
    ).group_by(per_customer.c.segment)
    found = {row[0]: row[1:] for row in await session.execute(query)}
    segments = []
    for segment_id, title in RFM_SEGMENTS.items():
        count, revenue, purchases, days = found.get(segment_id, (0, None, None, None))
        segments.append(
            Segment(
                id=segment_id,
                title=title,
                customers=int(count),
                revenue=Decimal(revenue or 0).quantize(_CENT),
                mean_purchases=None if purchases is None else float(purchases),
                mean_days=None if days is None else float(days),
            )
        )
    return RfmFigures(
        now=now.astimezone(window.zone),
        thresholds=Thresholds.of(limits),
        segments=tuple(segments),
        customers=sum(segment.customers for segment in segments),
        revenue=sum((segment.revenue for segment in segments), Decimal(0)),
    )


def tables(figures: RfmFigures) -> list[Table]:
    total, revenue = figures.customers, figures.revenue
    rows = tuple(
        (
            segment.title,
            segment.id,
            segment.customers,
            percent(segment.customers, total),
            segment.revenue,
            percent(segment.revenue, revenue),
            segment.mean_purchases,
            segment.mean_days,
        )
        for segment in figures.segments
    )
    columns = (
        "Сегмент",
        "id для правила",
        "Клиентов",
        "% клиентов",
        "Выручка",
        "% выручки",
        "Покупок в среднем",
        "Дней с последней покупки",
    )
    title = f"RFM: клиенты по сегментам на {figures.now:%Y-%m-%d %H:%M}"
    return [Table(title, columns, rows if total else (), _note(figures.thresholds))]


def _note(limits: Thresholds) -> str:
    big = f" на сумму от {shown(limits.big)}" if limits.big else ""
    return (
        f"Потерянные — больше {_days(limits.lost_days)} без покупок; под угрозой — больше "
        f"{_days(limits.lapsing_days)}; чемпионы — покупка за последние "
        f"{_days(limits.recent_days)}, от {limits.frequent} покупок{big}; лояльные — от "
        f"{limits.frequent} покупок; новые — остальные. Пороги — settings.rfm, сегмент в "
        "рассылке — rfm: at_risk."
    )


def _days(days: float) -> str:
    return f"{days:g} дн." if days.is_integer() else f"{days * 24:g} ч"
