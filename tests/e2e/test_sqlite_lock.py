"""One `leadbot run` per SQLite file: a second one is refused while the first runs, and the
lock dies with its holder (SIGKILL leaves no stale lock)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, SHIPPED_SCENARIO
from tests.e2e.bot_process import NOT_INHERITED, start_bot
from tests.e2e.telegram import TelegramClient


def second_run(database: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=cwd,
        env={
            **env,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "SCENARIO_DIR": str(SHIPPED_SCENARIO),
            "REDIS_URL": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_second_run_on_one_sqlite_file_is_refused_until_the_first_dies(
    telegram_emulator: TelegramClient, tmp_path: Path
) -> None:
    first = start_bot(telegram_emulator, tmp_path)
    try:
        with first.log_on_failure():
            await telegram_emulator.wait_for_calls("deleteWebhook", 1, timeout=30)
            refused = second_run(first.database, tmp_path)
            assert refused.returncode == 1, refused.stderr
            assert refused.stderr.strip().splitlines() == [
                f"leadbot: cannot start: another leadbot runs on {first.database} "
                f"(locked: {first.database}.lock); SQLite takes one process: stop it, "
                "or move to PostgreSQL"
            ]
            assert first.process.poll() is None  # the first one is untouched
    finally:
        first.process.kill()  # SIGKILL: nothing of the bot's own runs to release the lock
        first.process.wait()
    again = start_bot(telegram_emulator, tmp_path)
    try:
        with again.log_on_failure():
            await telegram_emulator.wait_for_calls("deleteWebhook", 2, timeout=30)
            assert again.process.poll() is None
    finally:
        assert again.stop() == 0, again.log.read_text()
