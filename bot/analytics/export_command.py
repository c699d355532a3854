"""`leadbot export leads --csv FILE [--db URL] [--force] [--delimiter ;|,]`: the consenting
leads as a CSV file for a spreadsheet (see bot/analytics/export.py).

The file is written beside the target under a temporary name and moved into place once
complete: an export that fails half-way leaves no half a file, and an existing file is
replaced only with `--force`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from bot.analytics.export import write_leads
from bot.app import SchemaOutdated, prepare_database
from bot.settings import Settings
from storage.database import Database, missing_file, shown_url


def add_parser(commands: Any) -> None:
    """`export leads` under `leadbot`'s subcommands (`commands` is argparse's subparsers)."""
    export = commands.add_parser("export", help="export data for a spreadsheet")
    what = export.add_subparsers(dest="export_command", required=True)
    leads = what.add_parser(
        "leads", help="leads with personal-data consent, as CSV (UTF-8 with BOM, for Excel)"
    )
    leads.add_argument("--csv", type=Path, required=True, metavar="FILE", help="the file to write")
    leads.add_argument("--db", help="database URL (default: DATABASE_URL)")
    leads.add_argument("--force", action="store_true", help="replace FILE if it exists")
    leads.add_argument(
        "--delimiter",
        choices=(";", ","),
        default=";",
        help="between cells: ';' for Excel in a Russian locale (default), ',' elsewhere",
    )


def _fail(text: str) -> int:
    print(f"leadbot: {text}", file=sys.stderr)
    return 2


def _refusal(target: Path, force: bool) -> str | None:
    """Why the file cannot be written, or None."""
    if target.is_dir():
        return f"{target} — это папка; укажите имя файла"
    if not target.parent.is_dir():
        return f"нет папки {target.parent}; создайте её или укажите другой путь"
    if target.exists() and not force:
        return f"файл {target} уже есть; укажите другое имя или добавьте --force"
    return None


def _temporary(target: Path) -> tuple[Path, TextIO]:
    """A new file beside `target`, open for the CSV: UTF-8 with a BOM (Excel then reads
    Cyrillic), newline="" as the csv module wants."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    return Path(name), os.fdopen(fd, "w", encoding="utf-8-sig", newline="")


def _move(partial: Path, target: Path, *, force: bool) -> bool:
    """The finished file into place; False when `target` exists and may not be replaced."""
    if force:
        partial.replace(target)
        return True
    try:
        # A hard link fails when the name is taken: no window in which another file is lost.
        os.link(partial, target)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if target.exists():
            return False
        partial.replace(target)
        return True
    partial.unlink()
    return True


async def _schema_ready(db: Database) -> str | None:
    """Migrate SQLite by itself, as every leadbot command does; PostgreSQL is shared and waits
    for `leadbot db upgrade`. Why the export cannot go on, or None."""
    try:
        await prepare_database(db)
    except SchemaOutdated as exc:
        if exc.newer:
            return "эта версия бота старше базы: запустите новую"
        return "схема базы устарела; сначала выполните `leadbot db upgrade`"
    return None


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """`leadbot export leads`; the exit code (0, or 2 with a one-line reason on stderr)."""
    target: Path = args.csv
    refusal = _refusal(target, args.force)
    if refusal is not None:
        return _fail(refusal)
    url = args.db or settings.database_url
    missing = missing_file(url)
    if missing is not None:
        where = "--db" if args.db else "DATABASE_URL"
        return _fail(f"нет базы данных {missing} ({where}); укажите нужную через --db")
    db = Database(url)
    partial: Path | None = None
    try:
        why = await _schema_ready(db)
        if why is not None:
            return _fail(why)
        partial, out = _temporary(target)
        with out:
            async with db.reading() as session:
                count = await write_leads(session, out, delimiter=args.delimiter)
        if not _move(partial, target, force=args.force):  # it appeared while the export ran
            return _fail(f"файл {target} уже есть; укажите другое имя или добавьте --force")
        partial = None
    except SQLAlchemyError as exc:
        return _fail(f"база данных {shown_url(url)} ответила ошибкой: {exc.__class__.__name__}")
    except PermissionError:
        return _fail(f"нет прав на запись в {target.parent}")
    except OSError as exc:  # the disk, or the connection to the database
        return _fail(f"выгрузка не удалась: {exc.strerror or exc.__class__.__name__}")
    finally:
        if partial is not None:
            with contextlib.suppress(OSError):
                partial.unlink()
        await db.dispose()
    print(f"Выгружено лидов: {count} в {target}")
    return 0
