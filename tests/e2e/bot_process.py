"""`leadbot run` as a real process for end-to-end tests: started against the Telegram emulator
or the VK API fake with a SQLite file and the shipped scenario, stopped with SIGTERM as a
service manager would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, SHIPPED_SCENARIO
from tests.e2e.telegram import TelegramClient
from tests.e2e.vk_api import VkApiFake

MANAGERS = -1001234567890
# Settings a developer's shell may hold that must not leak into the bot under test.
NOT_INHERITED = (
    "TELEGRAM_",
    "WEBHOOK_",
    "HTTP_",
    "API_TOKEN",
    "REDEEM_",
    "CRM_",
    "VK_",
    "MANAGERS_",
)


@dataclass
class RunningBot:
    process: subprocess.Popen[str]
    database: Path
    log: Path
    http_url: str  # where its web server (webhook, events API) listens

    def stop(self) -> int:
        """SIGTERM, as a service manager would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as conn:
            return conn.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def log_on_failure(self) -> Iterator[None]:
        """On a failed assertion, print the bot's log (pytest shows it with the failure)."""
        try:
            yield
        except AssertionError:
            lines = self.log.read_text().splitlines()
            print("\n".join(line for line in lines if "apscheduler" not in line)[-6000:])
            raise


# Ports handed out here: a stretch below the kernel's ephemeral ports, a share of it for each
# pytest-xdist worker.
PORT_SHARES = 16
PORTS_BELOW_EPHEMERAL = 10_000


def free_port() -> int:
    """A port nobody listens on, for a process that will listen there in a moment (the bot
    takes seconds to start). Not one of the ephemeral ports, which the kernel hands to every
    bind to port 0 and to the local end of every outgoing connection (thousands of them when
    the tests run in parallel), any of which could take the port before the bot does; within
    those below them, one of this pytest-xdist worker's own share, at random, and free now."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    first = low - PORTS_BELOW_EPHEMERAL
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    share = int(worker) % PORT_SHARES if worker.isdigit() else 0
    for _ in range(100):
        port = random.randrange(first + share, low, PORT_SHARES) if first >= 1024 else 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise AssertionError(f"no free port in {first}..{low} for worker {worker}")


def start_bot(client: TelegramClient, tmp_path: Path, **extra: str) -> RunningBot:
    """The bot in long-polling mode with the managers' chat; `extra` settings on top."""
    telegram = {
        "TELEGRAM_BOT_TOKEN": client.token,
        "TELEGRAM_API_URL": client.api_url,
        "MANAGERS_TELEGRAM_CHAT_ID": str(MANAGERS),
    }
    return _launch(tmp_path, {**telegram, **extra})


def start_vk_bot(vk: VkApiFake, tmp_path: Path, **extra: str) -> RunningBot:
    """The bot on VK alone, long polling the fake VK API (tests/e2e/vk_api.py); `extra`
    settings on top: MANAGERS_VK_PEER_ID for the managers' conversation, VK_CALLBACK_SECRET
    and VK_CONFIRMATION_CODE for the Callback API at `http_url + "/vk/callback"`."""
    return _launch(tmp_path, {**vk.env(), **extra})


def _launch(tmp_path: Path, settings: dict[str, str], role: str | None = None) -> RunningBot:
    """`leadbot run [--role role]` with a SQLite file in `tmp_path`, the shipped scenario and
    `settings` (DATABASE_URL among them for another database)."""
    database = tmp_path / "leads.db"
    log = tmp_path / "bot.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)},
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SCENARIO_DIR": str(SHIPPED_SCENARIO),
        "LOG_LEVEL": "INFO",
        "FLOOD_BURST": "100",  # the test types faster than people; flood control has own tests
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        **settings,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", *(["--role", role] if role else [])],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return RunningBot(process, database, log, f"http://127.0.0.1:{env['HTTP_PORT']}")


DELIVERY_TIMEOUT = 20.0  # seconds the bot may take to send or record what falls due


async def eventually(
    check: Callable[[], Any],
    what: str,
    timeout: float = DELIVERY_TIMEOUT,  # noqa: ASYNC109 (a deadline for waiting, with a report)
) -> Any:
    """Poll `check` (a look at the bot's database, say) until it is truthy; its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


async def run_broadcast(bot: RunningBot, scenario: Path, step: str, queued: int = 1) -> None:
    """`leadbot broadcast --step <step>`, as a marketer runs it beside the running bot, to
    `queued` prospects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    command = [sys.executable, "-m", "bot.cli", "broadcast", "--step", step]
    command += ["--db", f"sqlite+aiosqlite:///{bot.database}", "--scenario", str(scenario)]
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=bot.database.parent,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Поставлено в очередь: {queued} " in done.stdout, done.stdout
