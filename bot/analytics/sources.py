"""Sources and money: for the leads that arrived in the window, per source (and per offer
with `--by offer`), what they cost, how far they went and what they paid.

- spend: the ad spend of the source over the window's days (bot.analytics.spend); blank,
  not 0, for a source nobody entered spend for, and so are its CPL, CPA and ROMI;
- leads, with a contact (a row in `contacts`), qualified (the furthest funnel stage reached
  is `qualified` or beyond);
- customers: leads with at least one `purchase` event; their purchases are counted up to
  `window.now`, also those after the window's end (a lead of March who buys in May is March's
  money); revenue is the sum of their amounts (a purchase without an amount adds 0);
- CPL = spend / leads, CPA = spend / customers, ROMI = (revenue - spend) / spend in percent;
- average check = revenue / purchases; LTV = revenue / customers; deal cycle: the MEAN of
  days from a customer's arrival to its first purchase.

Spend is entered per source only, so the split by offer leaves spend, CPL, CPA and ROMI
blank. Erased leads stay in the counts (anonymous), as in the funnel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Numeric, case, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bot.analytics.spend import CENT, money, spend_by_source
from bot.analytics.tables import Table, percent
from bot.analytics.window import DAY, Window, seconds_between
from bot.scenario.fields import FUNNEL_STAGES
from bot.scenario.model import Scenario
from storage.models import Contact, Event, Lead

PURCHASE = "purchase"
QUALIFIED = FUNNEL_STAGES[FUNNEL_STAGES.index("qualified") :]
NO_SOURCE = "без источника"
NO_OFFER = "без предложения"
TOTAL = "Итого"
_MONEY = Numeric(18, 2)


@dataclass(frozen=True)
class Row:
    """The figures of one source or offer (`key` None: leads without one), or the total."""

    key: str | None
    spend: Decimal | None  # None: none entered for the source, or an offer (not known)
    leads: int
    with_contact: int
    qualified: int
    customers: int
    purchases: int
    revenue: Decimal
    cycle_days: float | None  # mean days from arrival to the first purchase
    cpl: Decimal | None
    cpa: Decimal | None
    romi: float | None  # percent
    average_check: Decimal | None
    ltv: Decimal | None


@dataclass(frozen=True)
class SourceFigures:
    sources: tuple[Row, ...]
    total: Row
    offers: tuple[Row, ...] = ()  # with window.by == "offer" only
    offers_total: Row | None = None


@dataclass(frozen=True)
class _Counts:
    leads: int = 0
    with_contact: int = 0
    qualified: int = 0
    customers: int = 0
    purchases: int = 0
    revenue: Decimal = Decimal(0)
    cycle_seconds: float = 0.0

    def __add__(self, other: _Counts) -> _Counts:
        return _Counts(
            self.leads + other.leads,
            self.with_contact + other.with_contact,
            self.qualified + other.qualified,
            self.customers + other.customers,
            self.purchases + other.purchases,
            self.revenue + other.revenue,
            self.cycle_seconds + other.cycle_seconds,
        )


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> SourceFigures:
    spend = await spend_by_source(session, window)
    by_source = await _counts(session, window, Lead.source)
    keys = sorted(set(by_source) | set(spend), key=lambda k: _order(k, by_source))
    # No spend entered for a source is unknown, not free: its CPL, CPA and ROMI stay blank.
    sources = tuple(_row(k, by_source.get(k, _Counts()), spend.get(k)) for k in keys)
    total = _row(TOTAL, _sum(by_source.values()), sum(spend.values()) if spend else None)
    if window.by != "offer":
        return SourceFigures(sources, total)
    by_offer = await _counts(session, window, Lead.offer)
    offers = tuple(
        _row(k, by_offer[k], None) for k in sorted(by_offer, key=lambda k: _order(k, by_offer))
    )
    return SourceFigures(sources, total, offers, _row(TOTAL, _sum(by_offer.values()), None))


async def _counts(
    session: AsyncSession, window: Window, key: InstrumentedAttribute[Any]
) -> dict[str | None, _Counts]:
    """One aggregate query: the leads of the window grouped by `key`, each joined to its
    purchases (one row per customer) and checked for a contact."""
    amount = cast(Event.payload["amount"].as_float(), _MONEY)
    bought = (
        select(
            Event.lead_id.label("lead_id"),
            func.count().label("purchases"),
            func.sum(amount).label("revenue"),
            func.min(Event.created_at).label("first_at"),
        )
        .where(Event.name == PURCHASE, Event.created_at <= window.now)
        .group_by(Event.lead_id)
        .subquery("bought")
    )
    has_contact = exists().where(Contact.lead_id == Lead.id)
    query = (
        select(
            key,
            func.count(Lead.id),
            func.sum(case((has_contact, 1), else_=0)),
            func.sum(case((Lead.funnel_stage.in_(QUALIFIED), 1), else_=0)),
            func.count(bought.c.lead_id),
            func.sum(bought.c.purchases),
            func.sum(bought.c.revenue),
            func.sum(seconds_between(session, bought.c.first_at, Lead.created_at)),
        )
        .select_from(Lead)
        .outerjoin(bought, bought.c.lead_id == Lead.id)
        .where(Lead.created_at >= window.since, Lead.created_at < window.until)
        .group_by(key)
    )
    found = {}
    for name, leads, contact, qualified, customers, purchases, revenue, cycle in (
        await session.execute(query)
    ).all():
        found[name] = _Counts(
            leads=leads,
            with_contact=int(contact or 0),
            qualified=int(qualified or 0),
            customers=customers,
            purchases=int(purchases or 0),
            revenue=money(revenue),
            cycle_seconds=float(cycle or 0),
        )
    return found


def _order(key: str | None, counts: dict[str | None, _Counts]) -> tuple[bool, int, str]:
    """Most leads first, ties by name; leads without a source or offer last."""
    return key is None, -counts.get(key, _Counts()).leads, key or ""


def _sum(counts: Iterable[_Counts]) -> _Counts:
    return sum(counts, _Counts())


def _ratio(money_: Decimal | None, count: int) -> Decimal | None:
    if money_ is None or count == 0:
        return None
    return (money_ / count).quantize(CENT, rounding=ROUND_HALF_UP)


def _row(key: str | None, c: _Counts, spend: Decimal | None) -> Row:
    return Row(
        key=key,
        spend=spend,
        leads=c.leads,
        with_contact=c.with_contact,
        qualified=c.qualified,
        customers=c.customers,
        purchases=c.purchases,
        revenue=c.revenue,
        cycle_days=c.cycle_seconds / c.customers / DAY if c.customers else None,
        cpl=_ratio(spend, c.leads),
        cpa=_ratio(spend, c.customers),
        romi=None if spend is None else percent(c.revenue - spend, spend),
        average_check=_ratio(c.revenue, c.purchases),
        ltv=_ratio(c.revenue, c.customers),
    )


MONEY_COLUMNS = (
    "Расход",
    "Лиды",
    "С контактом",
    "Квалиф.",
    "Клиенты",
    "Выручка",
    "CPL",
    "CPA",
    "ROMI, %",
)
CUSTOMER_COLUMNS = ("Клиенты", "Покупки", "Средний чек", "Цикл сделки (среднее), дн.", "LTV")


def tables(figures: SourceFigures) -> list[Table]:
    found = _split("Источники", "Источник", NO_SOURCE, figures.sources, figures.total)
    if figures.offers_total is not None:
        found += _split("Предложения", "Оффер", NO_OFFER, figures.offers, figures.offers_total)
    return found


def _unit(row: Row) -> tuple[Decimal | None, Decimal | None, float | None]:
    return row.cpl, row.cpa, row.romi


def _split(
    title: str, column: str, nameless: str, rows: tuple[Row, ...], total: Row
) -> list[Table]:
    everything = (*rows, total) if rows else ()
    label = [nameless if r.key is None else r.key for r in everything]
    money_rows = tuple(
        (name, r.spend, r.leads, r.with_contact, r.qualified, r.customers, r.revenue, *_unit(r))
        for name, r in zip(label, everything, strict=True)
    )
    customer_rows = tuple(
        (name, r.customers, r.purchases, r.average_check, r.cycle_days, r.ltv)
        for name, r in zip(label, everything, strict=True)
    )
    spend_note = (
        "Расход — доля введённого через `leadbot spend`, по дням периода; "
        if total.spend is not None
        else "Расход вводится по источникам, поэтому CPL, CPA и ROMI здесь не считаются; "
    )
    return [
        Table(
            title=f"{title}: лиды и деньги",
            columns=(column, *MONEY_COLUMNS),
            rows=money_rows,
            note=spend_note + "выручка — все покупки до сегодня от лидов, пришедших в период.",
        ),
        Table(
            title=f"{title}: клиенты",
            columns=(column, *CUSTOMER_COLUMNS),
            rows=customer_rows,
            note="Цикл сделки — от первого касания до первой покупки, среднее по клиентам.",
        ),
    ]
