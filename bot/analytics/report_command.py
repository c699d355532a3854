"""`leadbot report`: the whole report for a period, as text in the terminal, and as a page
(`--html FILE`) or JSON (`--json FILE`) beside it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.app import prepare_database
from bot.clock import SystemClock
from bot.scenario.loader import load_scenario
from bot.settings import Settings
from storage.database import Database

Missing = Callable[[str, str | None], bool]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "report", help="money, cohorts, RFM, NPS, A/B and drop-off for a period"
    )
    period = parser.add_mutually_exclusive_group()
    period.add_argument("--period", help="back from now: 7d, 30d, 12w (default: 30d)")
    period.add_argument("--since", help="first day, YYYY-MM-DD (in the scenario's time zone)")
    parser.add_argument("--until", help="last day, included, YYYY-MM-DD (default: now)")
    parser.add_argument(
        "--by", choices=("source", "offer", "variant"), help="split by source, offer or variant"
    )
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write a page with charts")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--scenario", type=Path, help="scenario folder (default: SCENARIO_DIR)")
    parser.add_argument("--db", help="database URL (default: DATABASE_URL)")


async def run(settings: Settings, args: argparse.Namespace, missing: Missing) -> int:
    from bot.analytics import report  # the sections load only for this command

    url = args.db or settings.database_url
    if missing(url, args.db):
        return 2
    for option, path in (("--html", args.html), ("--json", args.json)):
        if path is not None and not path.parent.is_dir():
            print(f"leadbot: {option} {path}: нет такой папки", file=sys.stderr)
            return 2
    s = load_scenario(args.scenario or settings.scenario_dir).scenario
    try:
        window = report.window_for(
            s,
            SystemClock().now(),
            period=args.period,
            since=args.since,
            until=args.until,
            by=args.by,
        )
    except ValueError as exc:
        print(f"leadbot: {exc}", file=sys.stderr)
        return 2
    db = Database(url)
    try:
        await prepare_database(db)
        async with db.unit_of_work() as uow:
            built = await report.build(uow.session, s, window)
    finally:
        await db.dispose()
    print(report.text(built))
    if args.json is not None:
        args.json.write_text(
            json.dumps(report.as_json(built), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        print(f"\nJSON: {args.json}")
    if args.html is not None:
        from bot.analytics import page  # matplotlib loads only when a page is asked for

        html = await asyncio.to_thread(page.render, built)
        args.html.write_text(html, encoding="utf-8")
        print(f"\nСтраница с графиками: {args.html}")
    return 0
