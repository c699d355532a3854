"""The lead export (`leadbot export leads --csv FILE`): one row per lead who gave consent to
personal data processing (and has not withdrawn it) and was not erased, with contacts, source,
offer, stage, score, tags and revenue.

One SQL statement, streamed in batches (`yield_per`): the database may hold a hundred
thousand leads, and none of them is loaded but the batch being written. Contacts, tags and
purchases are aggregated per lead in SQL and joined, never looked up lead by lead.

The file is meant for a spreadsheet, so every cell that a spreadsheet would read as a
formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`,
as OWASP advises against CSV injection: a name or a source is whatever a person typed. A
phone number (+7...) is neutralised too; the apostrophe shows, the number stays intact."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import Numeric, Select, and_, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.consent import PERSONAL_DATA
from storage.models import Consent, Contact, Event, Lead, Tag

COLUMNS = (
    "Лид",
    "Создан (UTC)",
    "Имя",
    "Телефон",
    "E-mail",
    "Источник",
    "Оффер",
    "Стадия",
    "Баллы",
    "Теги",
    "Выручка",
    "Покупок",
    "Последняя покупка (UTC)",
)
BATCH = 1000  # leads fetched at a time
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Joins the values of one lead inside SQL: a character no phone, e-mail or tag holds, so the
# values can be split again and sorted (neither database promises an order inside the group).
JOINER = "\x1f"
MONEY = Numeric(18, 2)


def neutralised(cell: str) -> str:
    """The cell as a spreadsheet must not run it: a leading `'` when it could start a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def leads_query() -> Select[Any]:
    """The export's one statement: consenting, not erased leads by id, each with its phones,
    e-mails, tags and purchases aggregated in SQL."""

    def joined(kind: str) -> Any:
        return (
            select(Contact.lead_id, func.aggregate_strings(Contact.value, JOINER).label("values"))
            .where(Contact.kind == kind)
            .group_by(Contact.lead_id)
            .subquery(kind)
        )

    phones, emails = joined("phone"), joined("email")
    tags = (
        select(Tag.lead_id, func.aggregate_strings(Tag.tag, JOINER).label("values"))
        .group_by(Tag.lead_id)
        .subquery("tags")
    )
    purchases = (
        select(
            Event.lead_id,
            # Each amount as money before adding: exact on PostgreSQL, and no float residue
            # past the cents on SQLite.
            func.sum(cast(Event.payload["amount"].as_float(), MONEY)).label("revenue"),
            func.count().label("count"),
            func.max(Event.created_at).label("last"),
        )
        .where(Event.name == "purchase")
        .group_by(Event.lead_id)
        .subquery("purchases")
    )
    consented = exists().where(
        Consent.lead_id == Lead.id,
        Consent.kind == PERSONAL_DATA,
        Consent.withdrawn_at.is_(None),
    )
    return (
        select(
            Lead.id,
            Lead.created_at,
            Lead.first_name,
            phones.c["values"],
            emails.c["values"],
            Lead.source,
            Lead.offer,
            Lead.stage,
            Lead.score,
            tags.c["values"],
            purchases.c.revenue,
            purchases.c.count,
            purchases.c.last,
        )
        .outerjoin(phones, phones.c.lead_id == Lead.id)
        .outerjoin(emails, emails.c.lead_id == Lead.id)
        .outerjoin(tags, tags.c.lead_id == Lead.id)
        .outerjoin(purchases, purchases.c.lead_id == Lead.id)
        .where(and_(Lead.erased_at.is_(None), consented))
        .order_by(Lead.id)
    )


def _listed(values: str | None) -> str:
    return ", ".join(sorted(values.split(JOINER))) if values else ""


def _moment(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else ""


def _money(value: Decimal | None, decimal_mark: str) -> str:
    if value is None:
        return "0"
    value = Decimal(value).quantize(Decimal("0.01"))
    text = str(value.quantize(Decimal(1))) if value == value.to_integral() else str(value)
    return text.replace(".", decimal_mark)


def cells(row: Any, decimal_mark: str = ".") -> list[str]:
    """One result row as the CSV's cells, neutralised."""
    (lead_id, created, name, phones, emails, source, offer, stage, score, tags) = row[:10]
    revenue, purchases, last = row[10:]
    values = [
        str(lead_id),
        _moment(created),
        name or "",
        _listed(phones),
        _listed(emails),
        source or "",
        offer or "",
        stage or "",
        str(score or 0),
        _listed(tags),
        _money(revenue, decimal_mark),
        str(purchases or 0),
        _moment(last),
    ]
    return [neutralised(value) for value in values]


async def lead_batches(
    session: AsyncSession, *, batch: int = BATCH, decimal_mark: str = "."
) -> AsyncIterator[list[list[str]]]:
    """The export's rows, `batch` at a time, as the database hands them over."""
    result = await session.stream(leads_query().execution_options(yield_per=batch))
    async for partition in result.partitions():
        yield [cells(row, decimal_mark) for row in partition]


async def write_leads(
    session: AsyncSession,
    out: TextIO,
    *,
    delimiter: str = ";",
    batch: int = BATCH,
) -> int:
    """Write the header and every exported lead to `out` (opened with newline=""); the number
    of leads. With `;` between cells (what Excel expects in a Russian locale) money has a
    decimal comma, with `,` a decimal point."""
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(COLUMNS)
    written = 0
    mark = "," if delimiter == ";" else "."
    async for rows in lead_batches(session, batch=batch, decimal_mark=mark):
        writer.writerows(rows)
        written += len(rows)
    return written
