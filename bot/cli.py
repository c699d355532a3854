"""The `leadbot` command: run, chat, check, db."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bot import broadcast_command, promo_stats, stats
from bot.analytics import export_command, report_command, spend_command
from bot.app import SchemaOutdated, StartupFailed, build_app, prepare_database, serve
from bot.clock import FakeClock, SystemClock
from bot.console import CHANNEL, HELP, ConsoleChat, ConsoleManagersChat, ConsoleTransport
from bot.console.terminal import Terminal
from bot.logs import JsonFormatter
from bot.roles import Refused, Role, check_role, lock_database
from bot.scenario.loader import ScenarioError, load_scenario
from bot.scenario.reload import ScenarioReloader
from bot.scenario.wording import Say
from bot.scoring import Routes
from bot.settings import Settings, SettingsError, load_settings
from storage import migrate
from storage.database import Database, missing_file, shown_url

log = logging.getLogger("leadbot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadbot", description="Lead capture bot for Telegram and VK"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bot with the messengers configured in .env")
    run.add_argument(
        "--role",
        choices=[role.value for role in Role],
        default=Role.ALL.value,
        help="web: take updates and serve HTTP; worker: send and run the periodic jobs; "
        "all: both (default). web and worker need PostgreSQL, worker also REDIS_URL",
    )

    chat = commands.add_parser("chat", help="talk to the bot in this terminal")
    chat.add_argument("--scenario", type=Path, help="scenario folder (default: SCENARIO_DIR)")
    chat.add_argument("--db", help="database URL (default: a new temporary SQLite file)")
    chat.add_argument("--name", default="Гость", help="the prospect's first name")
    chat.add_argument(
        "--log", type=Path, help="where the log goes (default: leadbot-chat.log in the temp dir)"
    )

    check = commands.add_parser("check", help="validate a scenario folder")
    # `--scenario` as in every command; the bare folder of older scripts still works.
    folder = check.add_mutually_exclusive_group()
    folder.add_argument("--scenario", type=Path, help="scenario folder (default: SCENARIO_DIR)")
    folder.add_argument("folder", nargs="?", type=Path, metavar="DIR", help="as --scenario DIR")

    broadcast = commands.add_parser(
        "broadcast", help="queue a message to a segment of leads (the running bot sends it)"
    )
    what = broadcast.add_mutually_exclusive_group(required=True)
    what.add_argument("--step", help="a broadcast defined under broadcasts: in the scenario")
    what.add_argument("--text", help="the text to send")
    what.add_argument(
        "--status", nargs="?", const="", metavar="ID", help="progress of the runs, or of one"
    )
    what.add_argument("--cancel", metavar="ID", help="cancel what is still queued of a run")
    broadcast.add_argument(
        "--segment", help='who gets it, in the rule language: "{tag: wants_audit}"'
    )
    broadcast.add_argument("--at", help='local time of each lead, "YYYY-MM-DD HH:MM"')
    broadcast.add_argument(
        "--dry-run", action="store_true", help="whom, what and when; queue nothing"
    )
    broadcast.add_argument("--scenario", type=Path, help="scenario folder (default: SCENARIO_DIR)")
    broadcast.add_argument("--db", help="database URL (default: DATABASE_URL)")

    report = commands.add_parser("stats", help="the funnel of leads that came in a period")
    period = report.add_mutually_exclusive_group()
    period.add_argument("--period", help="back from now: 30d, 2w, 24h (default: 30d)")
    period.add_argument("--since", help="first day, YYYY-MM-DD (UTC)")
    report.add_argument("--until", help="last day, included, YYYY-MM-DD (default: now)")
    report.add_argument("--by", choices=("source", "offer"), help="also per source or offer")
    report.add_argument("--db", help="database URL (default: DATABASE_URL)")
    report_command.add_parser(commands)

    spend_command.add_parser(commands)

    export_command.add_parser(commands)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate to the newest schema")
    upgrade.add_argument("--db", help="database URL (default: DATABASE_URL)")
    current = db_commands.add_parser("current", help="print the schema revision")
    current.add_argument("--db", help="database URL (default: DATABASE_URL)")
    return parser


def _configure_logging(level: str, file: Path | None = None, log_format: str = "text") -> None:
    """On stderr; in a file instead when given (the chat keeps its screen for the dialog).
    LOG_FORMAT=json writes JSON lines instead of text (`basicConfig` keeps a set formatter)."""
    handler: logging.Handler = (
        logging.FileHandler(file, mode="w", encoding="utf-8")
        if file
        else logging.StreamHandler(sys.stderr)
    )
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"leadbot: bad setting: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level, log_format=settings.log_format)
    if args.command in ("broadcast", "stats", "report", "export"):
        # Alembic's "Context impl SQLiteImpl." above a report tells a marketer nothing.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    try:
        if args.command == "check":
            return check(args.scenario or args.folder or settings.scenario_dir)
        if args.command == "db":
            url = args.db or settings.database_url
            if args.db_command != "upgrade" and _missing(url, args.db):  # only upgrade makes one
                return 2
            return asyncio.run(db_command(args.db_command, url))
        if args.command == "broadcast":
            return asyncio.run(broadcast_command.broadcast(settings, args, _missing))
        if args.command == "stats":
            return asyncio.run(funnel_stats(settings, args))
        if args.command == "export":
            return asyncio.run(export_command.run(settings, args))
        if args.command == "report":
            return asyncio.run(report_command.run(settings, args, _missing))
        if args.command == "spend":
            return asyncio.run(spend_command.run(settings, args))
        if args.command == "chat":
            return chat(settings, args.scenario, args.db, args.name, args.log)
        role = Role(args.role)
        check_role(role, settings)
        # Held until the process exits (the kernel then releases it, even after kill -9).
        _lock = lock_database(settings.database_url)
        if settings.telegram_bot_token is None and settings.vk_group_token is None:
            log.warning(
                "no messenger configured (TELEGRAM_BOT_TOKEN or VK_GROUP_TOKEN in .env): "
                "talking to the bot in this terminal, on %s",
                shown_url(settings.database_url),
            )
            return converse(settings, None, settings.database_url, "Гость")
        return asyncio.run(run(settings, role))
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
    except (StartupFailed, Refused) as exc:
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
    """Every problem and warning of the folder in one run, in the scenario's language."""
    try:
        loaded = load_scenario(folder)
    except ScenarioError as exc:
        for warning in exc.warnings:
            print(Say("cli.warning", text=warning).render(exc.language))
        for problem in exc.problems:
            print(problem)
        count = Say("cli.problems", count=len(exc.problems), folder=folder)
        print(count.render(exc.language), file=sys.stderr)
        return 1
    s = loaded.scenario
    for warning in loaded.warnings:
        print(Say("cli.warning", text=warning).render(loaded.language))
    warned = Say("cli.warning_count", count=len(loaded.warnings)) if loaded.warnings else ""
    summary = Say(
        "cli.ok",
        folder=folder,
        files=len(loaded.files),
        offers=len(s.offers),
        questions=len(s.questions),
        sequences=len(s.sequences),
        steps=sum(len(seq.steps) for seq in s.sequences.values()),
        promos=len(s.promos),
        faq=len(s.faq),
        warnings=warned,
    )
    print(summary.render(loaded.language))
    return 0


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


def chat(
    settings: Settings, scenario: Path | None, url: str | None, name: str, log_file: Path | None
) -> int:
    """The chat's log goes to a file: the screen shows the dialog and the managers' pane."""
    log_file = log_file or Path(tempfile.gettempdir()) / "leadbot-chat.log"
    try:
        _configure_logging(settings.log_level, log_file, settings.log_format)
    except OSError as exc:
        print(
            f"leadbot: cannot write the log to {log_file}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="leadbot-chat-") as folder:
        database_url = url or f"sqlite+aiosqlite:///{folder}/chat.db"
        return converse(settings, scenario, database_url, name, log_file=log_file)


def converse(
    settings: Settings,
    scenario: Path | None,
    url: str,
    name: str,
    *,
    log_file: Path | None = None,
) -> int:
    """The prospect's and the managers' side in this terminal. Lines are read between turns
    of one event loop, in the main thread: Ctrl-C then stops the prompt, not a worker
    thread readline would leave the terminal to."""
    clock = FakeClock()
    terminal = Terminal()
    with asyncio.Runner() as runner:
        app = runner.run(
            build_app(
                settings,
                scenario_dir=scenario,
                database_url=url,
                clock=clock,
                routes=Routes(managers=(CHANNEL,)),  # cards to the pane; no CRM gets them
            )
        )
        transport, managers = ConsoleTransport(), ConsoleManagersChat()
        worker = app.delivery_worker(
            {CHANNEL: transport}, {CHANNEL: managers}, only_own_channels=True
        )
        console = ConsoleChat(
            app.funnel,
            clock,
            first_name=name,
            transport=transport,
            worker=worker,
            managers=managers,
            reloader=ScenarioReloader(app.scenarios),
            files=Path(tempfile.gettempdir()) / "leadbot-chat-files",
        )
        if terminal.interactive:
            terminal.write([HELP, *([f"(the log is in {log_file})"] if log_file else [])])
        try:
            terminal.talk(lambda line: runner.run(console.process(line)))
        finally:
            runner.run(worker.pacer.aclose())
            runner.run(app.close())
    return 0


async def run(settings: Settings, role: Role = Role.ALL) -> int:
    app = await build_app(settings)
    try:
        await serve(settings, app, role)
    finally:
        await app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
