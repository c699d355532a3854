"""`leadbot run --role web|worker|all`: the refusals an operator sees (real processes), and
what `serve` builds for each role (in process, with a recording Telegram channel). The
second process on one SQLite file is in tests/e2e/test_sqlite_lock.py (it needs a bot up)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import bot.app
from bot.app import App, StartupFailed, serve
from bot.clock import FakeClock
from bot.roles import Refused, Role, check_role, hold_pacing, lock_database
from bot.settings import Settings
from storage.database import Database
from tests.test_cli import leadbot
from tests.test_handoff import Desk

POSTGRES = "postgresql+asyncpg://leadbot@127.0.0.1:1/leadbot"  # never reached: refused first
TOKEN = "123456:TEST-token"
# Settings the developer's shell may hold that `leadbot()` passes through: unset them.
UNSET = {"REDIS_URL": "", "WEBHOOK_BASE_URL": "", "WEBHOOK_SECRET": "", "HTTP_ALWAYS": "false"}


def refusal(result: Any) -> str:
    """The refusal, checked to be the one line on stderr with exit code 1."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("leadbot: cannot start: "), lines[0]
    return str(lines[0])


@pytest.mark.parametrize("role", ["web", "worker"])
def test_a_role_on_sqlite_is_refused(tmp_path: Path, role: str) -> None:
    database = tmp_path / "leads.db"
    result = leadbot(
        ["run", "--role", role],
        tmp_path,
        **UNSET,
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        TELEGRAM_BOT_TOKEN=TOKEN,
    )
    assert "need PostgreSQL" in refusal(result)
    assert not database.exists()  # refused before the database is opened


@pytest.mark.parametrize("role", ["web", "worker"])
def test_a_role_without_redis_is_refused(tmp_path: Path, role: str) -> None:
    result = leadbot(
        ["run", "--role", role],
        tmp_path,
        **UNSET,
        DATABASE_URL=POSTGRES,
        TELEGRAM_BOT_TOKEN=TOKEN,
    )
    assert f"--role {role} needs REDIS_URL" in refusal(result)


def test_web_with_telegram_long_polling_is_refused(tmp_path: Path) -> None:
    result = leadbot(
        ["run", "--role", "web"],
        tmp_path,
        **{**UNSET, "REDIS_URL": "redis://127.0.0.1:1/0"},
        DATABASE_URL=POSTGRES,
        TELEGRAM_BOT_TOKEN=TOKEN,
    )
    assert "set WEBHOOK_BASE_URL or use --role all" in refusal(result)


def test_an_unknown_role_is_a_usage_error(tmp_path: Path) -> None:
    result = leadbot(["run", "--role", "both"], tmp_path, **UNSET)
    assert result.returncode == 2
    assert "invalid choice: 'both'" in result.stderr


def settings(**extra: Any) -> Settings:
    return Settings(_env_file=None, **extra)  # type: ignore[call-arg]


def test_the_guards_let_a_postgresql_setup_through() -> None:
    check_role(
        Role.WORKER,
        settings(database_url=POSTGRES, redis_url="redis://x", telegram_bot_token=TOKEN),
    )
    check_role(
        Role.WEB,
        settings(
            database_url=POSTGRES,
            redis_url="redis://x",
            telegram_bot_token=TOKEN,
            webhook_base_url="https://bot.example.com",
            webhook_secret="s3cret",
        ),
    )
    # `all` is today's single process: no new requirement.
    check_role(Role.ALL, settings(database_url="sqlite+aiosqlite:///x.db"))
    with pytest.raises(Refused, match="VK_CALLBACK_SECRET"):
        check_role(
            Role.WEB, settings(database_url=POSTGRES, redis_url="redis://x", vk_group_token="vk")
        )


@pytest.mark.postgres
async def test_a_process_pacing_alone_is_the_only_one_on_postgresql(postgres_url: str) -> None:
    """Without Redis a process takes the bot's pacing lock alone; with Redis, shared. A second
    process without Redis, or one with Redis beside one without, is refused; a dead
    holder's lock is free again."""
    db = Database(postgres_url)
    accounts = {"telegram": f"test{uuid.uuid4().hex[:8]}"}
    try:
        alone = await hold_pacing(db, accounts, alone=True)
        with pytest.raises(Refused, match="several processes need REDIS_URL"):
            await hold_pacing(db, accounts, alone=True)
        with pytest.raises(Refused, match="without REDIS_URL sends for this telegram bot"):
            await hold_pacing(db, accounts, alone=False)
        for lock in alone:
            await lock.release()
        shared = [*await hold_pacing(db, accounts, alone=False)]
        shared += await hold_pacing(db, accounts, alone=False)  # a second process with Redis
        with pytest.raises(Refused, match="several processes need REDIS_URL"):
            await hold_pacing(db, accounts, alone=True)
        other_bot = await hold_pacing(db, {"telegram": "another"}, alone=True)
        for lock in [*shared, *other_bot]:
            await lock.release()
    finally:
        await db.dispose()


async def test_sqlite_needs_no_pacing_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/leads.db")
    try:
        assert await hold_pacing(db, {"telegram": "1"}, alone=True) == []
    finally:
        await db.dispose()


def test_the_sqlite_lock_is_held_while_open_and_free_once_closed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    first = lock_database(url)
    assert first is not None
    with pytest.raises(Refused, match="another leadbot runs on"):
        lock_database(url)
    first.close()
    again = lock_database(url)
    assert again is not None
    again.close()
    assert lock_database(POSTGRES) is None


@dataclass
class Calls:
    """What `serve` did, recorded by the fakes below."""

    made: list[str] = field(default_factory=list)

    def __call__(self, what: str) -> None:
        self.made.append(what)


class FakeSender:
    async def post_to_managers(self, text: str) -> None:
        pass


class FakeChannel:
    """The Telegram channel as `serve` sees it: records what it is asked to do."""

    def __init__(self, calls: Calls, settings: Settings, *_: object) -> None:
        self.calls = calls
        self.webhook = bool(settings.webhook_base_url)

    async def start(self) -> None:
        self.calls("start")

    def add_routes(self, app: web.Application) -> bool:
        self.calls("add_routes")
        return self.webhook

    async def receive(self) -> asyncio.Task[None] | None:
        self.calls("receive")  # sets the webhook, or polls
        return None

    async def stop(self) -> None:
        self.calls("stop")


class FakeRunner:
    async def cleanup(self) -> None:
        pass


class FakeHeartbeat:
    async def stop(self) -> None:
        pass


def recording_serve(monkeypatch: pytest.MonkeyPatch, calls: Calls) -> None:
    """`serve` with the Telegram channel, the web server's socket, the heartbeat and the
    wait for a signal replaced by recorders; everything else as in production."""
    from handlers.telegram import channel as telegram

    monkeypatch.setattr(telegram, "create_sender", lambda *_: FakeSender())
    monkeypatch.setattr(telegram, "TelegramChannel", lambda *a: FakeChannel(calls, *a))

    async def listen(settings: Settings, app: web.Application) -> FakeRunner:
        calls("web server")
        return FakeRunner()

    def heartbeat(*_: object, **__: object) -> FakeHeartbeat:
        calls("heartbeat")
        return FakeHeartbeat()

    real_worker = bot.app.DeliveryWorker

    def worker(*args: object, **kwargs: object) -> object:
        calls("delivery worker")
        return real_worker(*args, **kwargs)  # type: ignore[arg-type]

    async def no_wait(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
        pass

    monkeypatch.setattr(bot.app, "_listen", listen)
    monkeypatch.setattr(bot.app, "start_heartbeat", heartbeat)
    monkeypatch.setattr(bot.app, "DeliveryWorker", worker)
    monkeypatch.setattr(bot.app, "wait_for_signal", no_wait)


async def test_a_worker_serves_no_http_and_takes_no_updates(
    sqlite_db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # A worker on PostgreSQL with Redis, as the guards let through; `serve` itself never
    # looks at the database URL, so the app runs on the test's SQLite file.
    config = settings(database_url=POSTGRES, redis_url=redis_url, telegram_bot_token=TOKEN)
    check_role(Role.WORKER, config)
    calls = Calls()
    recording_serve(monkeypatch, calls)
    desk = Desk(sqlite_db, clock)
    app = App(config, sqlite_db, desk.funnel.scenarios, desk.funnel, clock)
    await serve(config, app, Role.WORKER)
    # It still starts the channel (the bot's username, for referral links) and sends.
    assert calls.made == ["delivery worker", "start", "heartbeat", "stop"]


async def test_a_web_process_runs_no_delivery_worker(
    sqlite_db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    config = settings(
        database_url=POSTGRES,
        redis_url=redis_url,
        telegram_bot_token=TOKEN,
        webhook_base_url="https://bot.example.com",
        webhook_secret="s3cret",
    )
    check_role(Role.WEB, config)
    calls = Calls()
    recording_serve(monkeypatch, calls)
    desk = Desk(sqlite_db, clock)
    app = App(config, sqlite_db, desk.funnel.scenarios, desk.funnel, clock)
    await serve(config, app, Role.WEB)
    assert calls.made == ["start", "add_routes", "web server", "receive", "stop"]


async def test_all_runs_both_as_before(
    sqlite_db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(
        telegram_bot_token=TOKEN,
        webhook_base_url="https://bot.example.com",
        webhook_secret="s3cret",
    )
    calls = Calls()
    recording_serve(monkeypatch, calls)
    desk = Desk(sqlite_db, clock)
    app = App(config, sqlite_db, desk.funnel.scenarios, desk.funnel, clock)
    await serve(config, app)
    assert calls.made == [
        "delivery worker",
        "start",
        "heartbeat",
        "add_routes",
        "web server",
        "receive",
        "stop",
    ]


async def test_a_worker_with_http_always_serves_only_its_probes(
    sqlite_db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    config = settings(redis_url=redis_url, telegram_bot_token=TOKEN, http_always=True)
    calls = Calls()
    recording_serve(monkeypatch, calls)
    desk = Desk(sqlite_db, clock)
    app = App(config, sqlite_db, desk.funnel.scenarios, desk.funnel, clock)
    await serve(config, app, Role.WORKER)
    # A web server, but no webhook route on it and no updates taken.
    assert calls.made == ["delivery worker", "start", "heartbeat", "web server", "stop"]


async def test_a_process_whose_redis_does_not_answer_does_not_start(
    sqlite_db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(redis_url="redis://127.0.0.1:1/0", telegram_bot_token=TOKEN)
    calls = Calls()
    recording_serve(monkeypatch, calls)
    desk = Desk(sqlite_db, clock)
    app = App(config, sqlite_db, desk.funnel.scenarios, desk.funnel, clock)
    with pytest.raises(StartupFailed, match=r"^REDIS_URL does not answer: "):
        await serve(config, app, Role.WORKER)
    assert "heartbeat" not in calls.made  # nothing was sent before Redis was asked
