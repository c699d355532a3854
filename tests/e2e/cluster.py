"""Several `leadbot run` processes on one PostgreSQL schema and one Redis, as a deployment runs
them (docs/production.md): `web` processes behind a round-robin reverse proxy that Telegram's
webhook points at, and `worker` processes that deliver. Used by tests/e2e/test_cluster.py and
bench/processes.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml
from aiohttp import web

from storage import migrate
from storage.database import Database
from tests.conftest import ROOT, SHIPPED_SCENARIO
from tests.e2e.bot_process import NOT_INHERITED, RunningBot, _launch, free_port
from tests.e2e.telegram import TelegramClient

FORWARDED = ("content-type", "x-telegram-bot-api-secret-token")


class RoundRobinProxy:
    """The reverse proxy in front of the web processes (deploy/nginx.conf in production):
    each request goes to the next backend, and to the one after it when a backend refuses the
    connection (nginx's `proxy_next_upstream error`)."""

    def __init__(self) -> None:
        self.backends: list[str] = []
        self.served: Counter[str] = Counter()  # requests each backend answered
        self._next = 0
        self.url = ""  # where it listens, once started
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        """Listen on a free port; the proxy's URL."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
        for _ in range(len(self.backends)):
            backend = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                async with self._client.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as answer:
                    payload = await answer.read()
                    self.served[backend] += 1
                    return web.Response(
                        status=answer.status, body=payload, content_type=answer.content_type
                    )
            except aiohttp.ClientConnectorError:
                continue
        return web.Response(status=502, text="no backend answered")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Cluster:
    web: list[RunningBot]
    workers: list[RunningBot]
    proxy: RoundRobinProxy
    database_url: str
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def processes(self) -> list[RunningBot]:
        return [*self.web, *self.workers]

    async def broadcast(self, step: str) -> str:
        """`leadbot broadcast --step <step>` as a marketer runs it beside the processes; its
        output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
        command = [sys.executable, "-m", "bot.cli", "broadcast", "--step", step]
        command += ["--db", self.database_url, "--scenario", self.settings["SCENARIO_DIR"]]
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def worker_id(self, bot: RunningBot) -> str:
        """The id its delivery worker writes into the rows it leases (bot/app.py)."""
        return f"{socket.gethostname()}:{bot.process.pid}"

    def stop(self) -> list[int | None]:
        """SIGTERM to every process still running; the exit codes (None: it was killed)."""
        return [bot.stop() if bot.process.poll() is None else None for bot in self.processes]

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        try:
            yield
        except AssertionError:
            for bot in self.processes:
                lines = [
                    line for line in bot.log.read_text().splitlines() if "apscheduler" not in line
                ]
                print(f"---- {bot.log.parent.name} (exit {bot.process.poll()})")
                print("\n".join(lines[-40:]))
            raise


def scenario_with_broadcast(folder: Path, step: str, text: str, segment: dict[str, Any]) -> Path:
    """A copy of the shipped scenario in `folder` with a broadcast `step` of `text` to
    `segment`, and without quiet hours (the broadcast goes at once, whatever the hour)."""
    target = folder / "scenario"
    shutil.copytree(SHIPPED_SCENARIO, target)
    main = target / "main.yaml"
    data = yaml.safe_load(main.read_text())
    data["settings"].pop("quiet_hours", None)
    data["broadcasts"] = {step: {"segment": segment, "text": text}}
    main.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1000))
    return target


async def start_cluster(
    tg: TelegramClient,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    *,
    web: int = 2,
    workers: int = 2,
    **extra: str,
) -> Cluster:
    """`web` + `workers` processes of one bot in webhook mode, all ready (their /readyz says
    200, the webhook is registered with the emulator). `extra` settings go to every process,
    as one environment file would."""
    proxy = RoundRobinProxy()
    proxy_url = await proxy.start()
    common = {
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.api_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # What the bot registers with Telegram; the proxy below takes the emulator's calls,
        # as nginx takes Telegram's at that address (the emulator does no TLS).
        "WEBHOOK_BASE_URL": "https://bot.example.test",
        "WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "HTTP_ALWAYS": "true",  # workers serve /readyz and /metrics too
        **extra,
    }
    launched: dict[str, list[RunningBot]] = {"web": [], "worker": []}
    for role, count in (("web", web), ("worker", workers)):
        for number in range(count):
            folder = tmp_path / f"{role}{number}"
            folder.mkdir()
            launched[role].append(_launch(folder, common, role=role))
    proxy.backends = [bot.http_url for bot in launched["web"]]
    cluster = Cluster(launched["web"], launched["worker"], proxy, database_url, common)
    try:
        with cluster.logs_on_failure():
            await asyncio.gather(*(ready(bot) for bot in cluster.processes))
            if web:
                await tg.wait_for_calls("setWebhook", web, timeout=30)
                await tg.bot_api(
                    "setWebhook",
                    url=proxy_url + "/telegram/webhook",
                    secret_token=common["WEBHOOK_SECRET"],
                )
    except BaseException:
        cluster.stop()
        await proxy.close()
        raise
    return cluster


async def ready(bot: RunningBot, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Until the process answers GET /readyz with 200 (it fails when the process exits)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if bot.process.poll() is not None:
                raise AssertionError(
                    f"{bot.log.parent.name} exited: {bot.log.read_text()[-3000:]}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(bot.http_url + "/readyz") as answer:
                    if answer.status == 200:
                        return
            if loop.time() > deadline:
                raise AssertionError(f"{bot.log.parent.name} not ready after {timeout} s")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def postgres_schema(postgres_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL schema of its own (as `leadbot db upgrade` leaves it): its URL."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{postgres_url}?search_path={schema}"
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
        finally:
            await db.dispose()
        yield url
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


async def query(database_url: str, sql: str, *params: Any) -> list[asyncpg.Record]:
    """Rows of one query on the cluster's schema."""
    plain, _, search_path = database_url.replace("+asyncpg", "").partition("?search_path=")
    conn = await asyncpg.connect(plain, server_settings={"search_path": search_path})
    try:
        return list(await conn.fetch(sql, *params))
    finally:
        await conn.close()
