"""The `leadbot` command: run, chat, check, db."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from bot import broadcasts, promo_stats, stats
from bot.app import SchemaOutdated, StartupFailed, build_app, prepare_database, serve
from bot.clock import FakeClock, SystemClock
from bot.console import CHANNEL, HELP, ConsoleChat, ConsoleTransport
from bot.scenario.checks import SIMPLE_PLACEHOLDERS, placeholders
from bot.scenario.conditions import Rule
from bot.scenario.loader import ScenarioError, load_scenario
from bot.scenario.model import parse_local_moment
from bot.settings import Settings, SettingsError, load_settings
from storage import migrate
from storage.database import Database, missing_file, shown_url

log = logging.getLogger("leadbot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadbot", description="Lead capture bot for Telegram and VK"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("run", help="run the bot with the messengers configured in .env")

    chat = commands.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument("--scenario", type=Path, help="scenario folder (default: SCENARIO_DIR)")
    chat.add_argument("--db", help="database URL (default: a new temporary SQLite file)")
    chat.add_argument("--name", default="Гость", help="the prospect's first name")

    check = commands.add_parser("check", help="validate a scenario folder")
    check.add_argument("folder", nargs="?", type=Path, help="default: SCENARIO_DIR")

    broadcast = commands.add_parser(
        "broadcast", help="queue a message to a segment of leads (the running bot sends it)"
    )
    what = broadcast.add_mutually_exclusive_group(required=True)
    what.add_argument("--step", help="a broadcast defined under broadcasts: in the scenario")
    what.add_argument("--text", help="the text to send")
    broadcast.add_argument(
        "--segment", help='who gets it, in the rule language: "{tag: wants_audit}"'
    )
    broadcast.add_argument("--at", help='local time of each lead, "YYYY-MM-DD HH:MM"')
    broadcast.add_argument("--dry-run", action="store_true", help="count, queue nothing")
    broadcast.add_argument("--scenario", type=Path, help="scenario folder (default: SCENARIO_DIR)")
    broadcast.add_argument("--db", help="database URL (default: DATABASE_URL)")

    report = commands.add_parser("stats", help="the funnel of leads that came in a period")
    period = report.add_mutually_exclusive_group()
    period.add_argument("--period", help="back from now: 30d, 2w, 24h (default: 30d)")
    period.add_argument("--since", help="first day, YYYY-MM-DD (UTC)")
    report.add_argument("--until", help="last day, included, YYYY-MM-DD (default: now)")
    report.add_argument("--by", choices=("source", "offer"), help="also per source or offer")
    report.add_argument("--db", help="database URL (default: DATABASE_URL)")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate to the newest schema")
    upgrade.add_argument("--db", help="database URL (default: DATABASE_URL)")
    current = db_commands.add_parser("current", help="print the schema revision")
    current.add_argument("--db", help="database URL (default: DATABASE_URL)")
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"leadbot: bad setting: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        if args.command == "check":
            return check(args.folder or settings.scenario_dir)
        if args.command == "db":
            url = args.db or settings.database_url
            if args.db_command != "upgrade" and _missing(url, args.db):  # only upgrade makes one
                return 2
            return asyncio.run(db_command(args.db_command, url))
        if args.command == "broadcast":
            return asyncio.run(broadcast(settings, args))
        if args.command == "stats":
            return asyncio.run(funnel_stats(settings, args))
        if args.command == "chat":
            return asyncio.run(chat(settings, args.scenario, args.db, args.name))
        return asyncio.run(run(settings))
    except ScenarioError as exc:
        print(
            f"{exc}\nleadbot: the scenario has {len(exc.problems)} problem(s); "
            "fix them and run `leadbot check`",
            file=sys.stderr,
        )
        return 1
    except SchemaOutdated as exc:
        print(f"leadbot: {exc}", file=sys.stderr)
        return 2
    except StartupFailed as exc:
        print(f"leadbot: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _missing(url: str, given: str | None) -> bool:
    """A command that reads refuses a SQLite file that is not there (opening it would make
    an empty one, and report on nothing)."""
    path = missing_file(url)
    if path is not None:
        print(
            f"leadbot: no database at {path} ({'--db' if given else 'DATABASE_URL'}): "
            "start the bot once, or name the right one with --db",
            file=sys.stderr,
        )
    return path is not None


def check(folder: Path) -> int:
    try:
        loaded = load_scenario(folder)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s) in {folder}", file=sys.stderr)
        return 1
    s = loaded.scenario
    steps = sum(len(seq.steps) for seq in s.sequences.values())
    counts = [
        _count(len(loaded.files), "file"),
        _count(len(s.offers), "offer"),
        _count(len(s.questions), "question"),
        f"{_count(len(s.sequences), 'sequence')} ({_count(steps, 'step')})",
        _count(len(s.promos), "promo"),
        _count(len(s.faq), "FAQ entry", "FAQ entries"),
    ]
    for warning in loaded.warnings:
        print(f"warning: {warning}")
    if loaded.warnings:
        counts.append(_count(len(loaded.warnings), "warning"))
    print(f"{folder}: OK: {', '.join(counts)}")
    return 0


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


async def broadcast(settings: Settings, args: argparse.Namespace) -> int:
    loaded = load_scenario(args.scenario or settings.scenario_dir)
    scenario = loaded.scenario
    defined = scenario.broadcasts.get(args.step) if args.step else None
    if args.step and defined is None:
        known = ", ".join(sorted(scenario.broadcasts)) or "none"
        print(
            f"leadbot: no broadcast {args.step!r} in the scenario (known: {known})",
            file=sys.stderr,
        )
        return 2
    try:
        segment = (
            TypeAdapter(Rule).validate_python(yaml.safe_load(args.segment))
            if args.segment
            else defined.segment
            if defined
            else None
        )
        at = parse_local_moment(args.at) if args.at else defined.at if defined else None
    except (ValidationError, ValueError, yaml.YAMLError) as exc:
        print(
            f"leadbot: bad --segment or --at: {str(exc).splitlines()[-1].strip()}", file=sys.stderr
        )
        return 2
    if segment is None:
        print("leadbot: --text needs --segment (who gets it)", file=sys.stderr)
        return 2
    codes = {f"promo.{p}{part}" for p in scenario.promos for part in ("", ".expires")}
    unknown = [n for n in placeholders(args.text or "") if n not in {*SIMPLE_PLACEHOLDERS, *codes}]
    if unknown:
        allowed = ", ".join(f"{{{n}}}" for n in sorted(SIMPLE_PLACEHOLDERS))
        print(
            f"leadbot: --text may use {allowed}, {{promo.<id>}} of the scenario's promos, "
            f"not {{{unknown[0]}}}",
            file=sys.stderr,
        )
        return 2
    if _missing(args.db or settings.database_url, args.db):
        return 2
    db = Database(args.db or settings.database_url)
    try:
        await prepare_database(db)
        crowd = await broadcasts.audience(db, segment)
        print(
            f"segment matches {crowd.matched} leads; {len(crowd.reachable)} may get "
            "advertising (consent given, not unsubscribed or blocked)"
        )
        if args.dry_run:
            return 0
        broadcast_id = args.step or broadcasts.adhoc_id(args.text, args.segment)
        queued = await broadcasts.enqueue(
            db,
            scenario,
            broadcast_id,
            crowd.reachable,
            now=SystemClock().now(),
            text=args.text,
            at=at,
        )
        print(
            f"queued {queued} messages as broadcast {broadcast_id} "
            f"({len(crowd.reachable) - queued} had it already); the running bot sends them "
            "within the platform limits, in each lead's local window"
        )
        return 0
    finally:
        await db.dispose()


async def funnel_stats(settings: Settings, args: argparse.Namespace) -> int:
    try:
        since, until = stats.period_bounds(
            now=SystemClock().now(), period=args.period, since=args.since, until=args.until
        )
    except ValueError as exc:
        print(f"leadbot: {exc}", file=sys.stderr)
        return 2
    if _missing(args.db or settings.database_url, args.db):
        return 2
    db = Database(args.db or settings.database_url)
    try:
        await prepare_database(db)
        async with db.unit_of_work() as uow:
            report = await stats.funnel_report(uow.session, since=since, until=until, by=args.by)
            codes = await promo_stats.promo_figures(uow.session, since=since, until=until)
            referrers = await promo_stats.referrer_figures(uow.session, since=since, until=until)
        print(stats.format_report(report))
        print()
        print("\n".join(promo_stats.format_promos(codes)))
        print()
        print("\n".join(promo_stats.format_referrers(referrers)))
        return 0
    finally:
        await db.dispose()


async def db_command(command: str, url: str) -> int:
    db = Database(url)
    try:
        if command == "upgrade":
            await migrate.upgrade(db.engine)
        print(await migrate.current_revision(db.engine) or "empty")
        return 0
    finally:
        await db.dispose()


async def chat(settings: Settings, scenario: Path | None, url: str | None, name: str) -> int:
    with tempfile.TemporaryDirectory(prefix="leadbot-chat-") as folder:
        database_url = url or f"sqlite+aiosqlite:///{folder}/chat.db"
        return await converse(settings, scenario, database_url, name)


async def converse(settings: Settings, scenario: Path | None, url: str, name: str) -> int:
    clock = FakeClock()
    app = await build_app(settings, scenario_dir=scenario, database_url=url, clock=clock)
    transport = ConsoleTransport()
    worker = app.delivery_worker({CHANNEL: transport})
    console = ConsoleChat(app.funnel, clock, first_name=name, transport=transport, worker=worker)
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP)
    try:
        while True:
            if interactive:
                print("> ", end="", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            if not interactive:
                print(f"> {line.rstrip()}")
            output = await console.process(line)
            if output is None:
                break
            print("\n".join(output), flush=True)
    finally:
        await worker.pacer.aclose()
        await app.close()
    return 0


async def run(settings: Settings) -> int:
    if settings.telegram_bot_token is None and settings.vk_group_token is None:
        log.warning(
            "no messenger configured (TELEGRAM_BOT_TOKEN or VK_GROUP_TOKEN in .env): "
            "talking to the bot in this terminal, on %s",
            shown_url(settings.database_url),
        )
        return await converse(settings, None, settings.database_url, "Гость")
    app = await build_app(settings)
    try:
        await serve(settings, app)
    finally:
        await app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
