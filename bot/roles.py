"""`leadbot run --role web|worker|all`: what each role runs, and the guards that refuse a
setup several processes would break (SQLite, a pacer per process, two pollers)."""

from __future__ import annotations

import fcntl
import logging
import os
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import IO

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from bot.scenario.reload import ScenarioReloader
from bot.settings import Settings
from storage.database import Database
from storage.session_lock import SessionLock

log = logging.getLogger(__name__)


class Role(StrEnum):
    WEB = "web"  # webhooks, the VK Callback API, the events API, tracked links, probes
    WORKER = "worker"  # delivery, reminders, expiry, A/B decisions, the scenario watcher
    ALL = "all"  # both in one process, the default

    @property
    def receives(self) -> bool:
        """Takes updates from the messengers and serves the web routes."""
        return self is not Role.WORKER

    @property
    def delivers(self) -> bool:
        """Runs the delivery worker and the periodic jobs."""
        return self is not Role.WEB


class Refused(Exception):
    """The process must not start; the message is one line saying why and what to do."""


def check_role(role: Role, settings: Settings) -> None:
    """Refuse a role this setup cannot run safely beside other processes."""
    if role is Role.ALL:
        return
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        raise Refused(
            f"--role {role} is for several processes, which need PostgreSQL: "
            "set DATABASE_URL to PostgreSQL or use --role all on SQLite"
        )
    if settings.redis_url is None:
        # Each process would pace alone (workers send, web processes reply at once), so
        # together they would send past the limits.
        raise Refused(
            f"--role {role} needs REDIS_URL: without Redis each process paces by itself "
            "and together they would exceed the messengers' limits"
        )
    if role is Role.WEB:
        if settings.telegram_bot_token is not None and not settings.webhook_base_url:
            raise Refused(
                "--role web cannot long poll Telegram: set WEBHOOK_BASE_URL or use --role all"
            )
        if settings.vk_group_token is not None and settings.vk_callback_secret is None:
            raise Refused(
                "--role web cannot long poll VK: set VK_CALLBACK_SECRET (the Callback API) "
                "or use --role all"
            )
    if settings.telegram_bot_token is None and settings.vk_group_token is None:
        raise Refused(f"--role {role} needs a messenger: set TELEGRAM_BOT_TOKEN or VK_GROUP_TOKEN")


def lock_path(database_url: str) -> Path | None:
    """The lock file beside a SQLite database file; None for other databases and memory."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database)  # type: ignore[arg-type]
    return database.with_name(database.name + ".lock")


def lock_database(database_url: str) -> IO[bytes] | None:
    """One `leadbot run` per SQLite file: an exclusive lock held while the returned file is
    open, i.e. for the process's life. The kernel drops a flock when its holder dies, so a
    killed bot leaves no stale lock behind (unlike a pid file)."""
    path = lock_path(database_url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("ab")
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise Refused(
            f"another leadbot runs on {path.with_suffix('')} (locked: {path}); "
            "SQLite takes one process: stop it, or move to PostgreSQL"
        ) from None
    # Not inherited by child processes, which must not keep the lock after the bot exits.
    os.set_inheritable(file.fileno(), False)
    return file


async def hold_pacing(db: Database, accounts: dict[str, str], *, alone: bool) -> list[SessionLock]:
    """On PostgreSQL, where several processes may send for one bot: a process that paces
    alone (no REDIS_URL) must be the only one, or together they would send past the limits.
    It takes each of its accounts' pacing lock exclusively, a process sharing the limits
    through Redis takes it shared; the locks are held for the process's life (the server
    drops them when it dies). Nothing on SQLite, which takes one process anyway."""
    if db.dialect != "postgresql":
        return []
    held: list[SessionLock] = []
    for channel, account in sorted(accounts.items()):
        lock = SessionLock(db.engine, f"leadbot:pacing:{channel}:{account}", shared=not alone)
        if not await lock.try_acquire():
            for taken in held:
                await taken.release()
            if alone:
                raise Refused(
                    f"another leadbot process sends for this {channel} bot on this database; "
                    "several processes need REDIS_URL to share the limits: set it in all"
                )
            raise Refused(
                f"a leadbot process without REDIS_URL sends for this {channel} bot on this "
                "database and paces alone: set REDIS_URL there too and restart it first"
            )
        held.append(lock)
    return held


def start_scenario_watch(reloader: ScenarioReloader) -> AsyncIOScheduler:
    """A web process answers from its own copy of the scenario, so it watches the folder
    too (the worker's watcher reloads only the worker's copy)."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        reloader.poll,
        "interval",
        seconds=2,
        id="scenario-reload",
        max_instances=1,
        coalesce=True,
    )
    scheduler.start()
    return scheduler
