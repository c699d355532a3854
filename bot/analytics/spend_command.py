"""`leadbot spend add|list`: the marketer enters ad spend per source for a day or a month,
and looks at what is entered. The report spreads each row over its days (bot.analytics.spend)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from bot.analytics.spend import (
    MAX_NOTE,
    Spend,
    add_spend,
    day_typed,
    list_spend,
    month_days,
    parse_amount,
)
from bot.analytics.tables import Table, shown, text_lines
from bot.app import SchemaOutdated, prepare_database
from bot.clock import SystemClock
from bot.scenario.fields import Id
from bot.settings import Settings
from storage.database import Database, missing_file
from storage.models import Lead

_SOURCE = TypeAdapter(Id)


class Refused(Exception):
    """The command cannot go on; the message says why, in one Russian line."""


def add_parser(commands: Any) -> None:
    """`spend add` and `spend list` under `commands` (argparse's subparsers)."""
    spend = commands.add_parser("spend", help="ad spend per source (for CPL, CPA, ROMI)")
    actions = spend.add_subparsers(dest="spend_command", required=True)
    add = actions.add_parser("add", help="record what a source cost for a day or a month")
    add.add_argument("--source", required=True, help="the source, as in src_<source> links")
    add.add_argument("--amount", required=True, help="the sum, like 31000 or 1500.50")
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--date", help="one day, YYYY-MM-DD")
    span.add_argument("--month", help="a whole month, YYYY-MM")
    add.add_argument("--note", help="a remark for the list (campaign, invoice)")
    add.add_argument("--db", help="database URL (default: DATABASE_URL)")
    listing = actions.add_parser("list", help="the spend entered, oldest first")
    listing.add_argument("--since", help="first day, YYYY-MM-DD")
    listing.add_argument("--until", help="last day, included, YYYY-MM-DD")
    listing.add_argument("--source", help="only this source")
    listing.add_argument("--db", help="database URL (default: DATABASE_URL)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    # Alembic's "Context impl SQLiteImpl." above the answer tells a marketer nothing.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    try:
        if args.spend_command == "add":
            return await _add(settings, args)
        return await _list(settings, args)
    except Refused as refused:
        print(f"leadbot: {refused}", file=sys.stderr)
        return 2


def _source(text: str) -> str:
    try:
        return _SOURCE.validate_python(text)
    except ValidationError:
        raise Refused(
            f"источник {text!r}: только латинские буквы, цифры и _, до 32 знаков"
        ) from None


def _typed(parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise Refused(str(exc)) from None


async def _add(settings: Settings, args: argparse.Namespace) -> int:
    source = _source(args.source)
    amount: Decimal = _typed(parse_amount, args.amount)
    if args.month is not None:
        first, last = _typed(month_days, args.month)
    else:
        first = last = _typed(day_typed, args.date)
    if args.note is not None and len(args.note) > MAX_NOTE:
        raise Refused(f"заметка длиннее {MAX_NOTE} знаков")
    db = await _open(settings, args.db)
    try:
        async with db.unit_of_work() as uow:
            added = await add_spend(
                uow.session,
                source=source,
                amount=amount,
                first_day=first,
                last_day=last,
                note=args.note,
                now=SystemClock().now(),
            )
            known = await uow.session.scalar(select(Lead.id).where(Lead.source == source).limit(1))
            await uow.commit()
    finally:
        await db.dispose()
    print(f"Записан расход № {added.spend.id}: {_described(added.spend)}")
    if known is None:
        print(f"Лидов с источником {source!r} пока нет: проверьте, так ли он написан в ссылках.")
    return 0


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    since: date | None = _typed(day_typed, args.since) if args.since else None
    until: date | None = _typed(day_typed, args.until) if args.until else None
    if since is not None and until is not None and until < since:
        raise Refused("--until раньше --since")
    source = _source(args.source) if args.source is not None else None
    db = await _open(settings, args.db)
    try:
        async with db.unit_of_work() as uow:
            rows = await list_spend(uow.session, since_day=since, until_day=until, source=source)
    finally:
        await db.dispose()
    print("\n".join(text_lines(spend_table(rows))))
    return 0


def spend_table(rows: list[Spend]) -> Table:
    """The rows as the marketer reads them, with their total."""
    lines = tuple(
        (s.source, s.first_day, s.last_day, s.days, s.amount, s.id, s.note or "") for s in rows
    )
    total = ("Итого", "", "", "", sum((s.amount for s in rows), Decimal(0)), "", "")
    return Table(
        title="Расходы на рекламу",
        columns=("Источник", "С", "По", "Дней", "Сумма", "№", "Заметка"),
        rows=(*lines, total) if rows else (),
        note="Суммы записей целиком; отчёт за период берёт долю дней, попавших в период."
        if rows
        else "",
    )


def _described(spend: Spend) -> str:
    days = (
        spend.first_day.isoformat()
        if spend.days == 1
        else f"{spend.first_day} — {spend.last_day} ({spend.days} дн.)"
    )
    note = f" ({spend.note})" if spend.note else ""
    return f"{spend.source}, {shown(spend.amount)} за {days}{note}"


async def _open(settings: Settings, given: str | None) -> Database:
    """The database, migrated when it is a SQLite file (as the bot does at start); a SQLite
    file that is not there is refused: writing would make a new, empty one."""
    url = given or settings.database_url
    path = missing_file(url)
    if path is not None:
        where = "--db" if given else "DATABASE_URL"
        raise Refused(
            f"нет базы данных {path} ({where}): запустите бота хотя бы раз "
            "или укажите нужную через --db"
        )
    db = Database(url)
    try:
        await prepare_database(db)
    except SchemaOutdated as exc:
        await db.dispose()
        advice = (
            "эта версия бота старше базы: запустите новую"
            if exc.newer
            else "сначала выполните `leadbot db upgrade`"
        )
        raise Refused(
            f"схема базы на версии {exc.current or 'пусто'}, нужна {exc.needed}: {advice}"
        ) from None
    except BaseException:
        await db.dispose()
        raise
    return db
