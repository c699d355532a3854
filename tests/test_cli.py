"""The `leadbot` command as a user runs it: a real process, piped input, real files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from storage import migrate
from storage.database import Database
from tests.conftest import SHIPPED_SCENARIO

GUIDE_WALK = "/start src_test\n2\n1\n1\nnot an email\nanna@example.com\n/wait 1d\n/quit\n"


def leadbot(
    args: list[str], cwd: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `leadbot` in `cwd` (no .env there) with only the given settings."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "SCENARIO_", "TELEGRAM_", "VK_", "LOG_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env, "PYTHONPATH": str(Path(__file__).parent.parent)},
        timeout=120,
        check=False,
    )


def test_chat_walks_the_shipped_funnel_from_start_to_the_guide(tmp_path: Path) -> None:
    result = leadbot(["chat", "--scenario", str(SHIPPED_SCENARIO)], tmp_path, GUIDE_WALK)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "> /start src_test" in out  # piped lines are echoed, so the transcript reads well
    assert "bot: Здравствуйте, Гость!" in out
    assert "[2] Гайд: настройка Битрикс24 за вечер" in out
    assert "Не получается разобрать адрес" in out
    assert "[file] bitrix24-guide.pdf" in out
    assert "(clock moved 1d forward" in out
    assert out.index("[file] bitrix24-guide.pdf") > out.index("Не получается разобрать адрес")


def test_run_without_a_messenger_token_chats_here_and_migrates_a_new_sqlite_file(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "leads.db"
    result = leadbot(
        ["run"],
        tmp_path,
        GUIDE_WALK,
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        SCENARIO_DIR=str(SHIPPED_SCENARIO),
    )
    assert result.returncode == 0, result.stderr
    assert "no messenger configured" in result.stderr
    assert "[file] bitrix24-guide.pdf" in result.stdout
    with sqlite3.connect(database) as conn:  # the lead is really stored, in WAL mode
        assert conn.execute("select stage, source from leads").fetchall() == [("warming", "test")]
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)


def test_chat_keeps_leads_in_the_database_given(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/kept.db"
    first = leadbot(
        ["chat", "--scenario", str(SHIPPED_SCENARIO), "--db", url],
        tmp_path,
        "/start\n2\n1\n1\nanna@example.com\n",
    )
    assert first.returncode == 0, first.stderr
    second = leadbot(
        ["chat", "--scenario", str(SHIPPED_SCENARIO), "--db", url], tmp_path, "/start o_guide\n"
    )
    assert "Держите гайд" in second.stdout  # the e-mail and consent were remembered


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: "),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: use sqlite+aiosqlite:///path"),
        ("MANAGERS_TELEGRAM_CHAT_ID", "group", "MANAGERS_TELEGRAM_CHAT_ID: "),
        ("TELEGRAM_BOT_TOKEN", "my-bot-token", "TELEGRAM_BOT_TOKEN: not a bot token"),
        ("TELEGRAM_BOT_TOKEN", "123456: spaced", "TELEGRAM_BOT_TOKEN: not a bot token"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    result = leadbot(["check", str(SHIPPED_SCENARIO)], tmp_path, **{name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"leadbot: bad setting: {message}")
    assert "Traceback" not in result.stderr


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    result = leadbot(
        ["chat", "--scenario", str(SHIPPED_SCENARIO)],
        tmp_path,
        "/start\n",
        TELEGRAM_BOT_TOKEN="123456:SECRET-TOKEN-VALUE",
        LOG_LEVEL="DEBUG",
    )
    assert result.returncode == 0, result.stderr
    assert "SECRET-TOKEN-VALUE" not in result.stdout + result.stderr


def test_a_broken_scenario_stops_the_bot_with_every_problem(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "main.yaml").write_text("version: 1\nstart: {text: hi}\n", encoding="utf-8")
    result = leadbot(["chat", "--scenario", str(folder)], tmp_path, "/start\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [  # no settings.language: the default, Russian
        "broken/main.yaml:1:1: consent: нет обязательного раздела",
        "broken/main.yaml:1:1: offers: нет обязательного раздела",
        "broken/main.yaml:2:1: start: нет обязательного ключа 'buttons'",
        "leadbot: the scenario has 3 problem(s); fix them and run `leadbot check`",
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_is_not_migrated_behind_the_operators_back(
    database_url: str, tmp_path: Path
) -> None:
    chat = ["chat", "--scenario", str(SHIPPED_SCENARIO), "--db", database_url]
    refused = leadbot(chat, tmp_path, "/start\n")
    assert refused.returncode == 2
    assert "run `leadbot db upgrade` first" in refused.stderr
    upgraded = leadbot(["db", "upgrade", "--db", database_url], tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    works = leadbot(chat, tmp_path, "/start\n")
    assert "Здравствуйте, Гость!" in works.stdout


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_older_leadbot_on_a_newer_schema_says_so(
    database_url: str, tmp_path: Path
) -> None:
    """A newer version migrated the database (a revision this code does not know): the old
    one refuses, and does not tell the operator to upgrade the schema it cannot upgrade."""
    db = Database(database_url)
    try:
        await migrate.upgrade(db.engine)
        async with db.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    finally:
        await db.dispose()
    chat = ["chat", "--scenario", str(SHIPPED_SCENARIO), "--db", database_url]
    refused = await asyncio.to_thread(leadbot, chat, tmp_path, "/start\n")
    assert refused.returncode == 2
    assert "schema is at f00dfeed" in refused.stderr
    assert "this leadbot is older than the database: run the newer version" in refused.stderr
    assert "db upgrade" not in refused.stderr


def test_a_messenger_that_cannot_be_reached_is_one_line_and_an_exit(tmp_path: Path) -> None:
    """Nothing listens at the API address: the bot says which setting to look at and exits
    (the subprocess' timeout would fail the test if it hung)."""
    result = leadbot(
        ["run"],
        tmp_path,
        SCENARIO_DIR=str(SHIPPED_SCENARIO),
        TELEGRAM_BOT_TOKEN="123456:SECRET-TOKEN-VALUE",
        TELEGRAM_API_URL="http://127.0.0.1:9",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "leadbot: cannot start: TELEGRAM_API_URL http://127.0.0.1:9 does not answer as "
        "Telegram's Bot API"
    )
    assert "Traceback" not in result.stderr
    assert "Unclosed" not in result.stderr  # what it opened, it closed
    assert "SECRET-TOKEN-VALUE" not in result.stderr


def test_a_database_password_is_masked_where_the_url_is_shown(tmp_path: Path) -> None:
    url = "sqlite+aiosqlite:///" + str(tmp_path / "leads.db")
    result = leadbot(["run"], tmp_path, "/quit\n", DATABASE_URL=url)
    assert str(tmp_path / "leads.db") in result.stderr  # the URL is shown, and...
    masked = leadbot(
        ["run"],
        tmp_path,
        "/quit\n",
        DATABASE_URL="postgresql+asyncpg://bot:pa55-w0rd-value@127.0.0.1:1/leads",
    )
    assert "pa55-w0rd-value" not in masked.stdout + masked.stderr
    assert "postgresql+asyncpg://bot:***@127.0.0.1:1/leads" in masked.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["db", "current"],
        ["broadcast", "--segment", "stage: new", "--text", "Привет", "--dry-run"],
    ],
)
def test_commands_that_read_refuse_a_missing_database_instead_of_making_one(
    tmp_path: Path, command: list[str]
) -> None:
    result = leadbot(command, tmp_path, SCENARIO_DIR=str(SHIPPED_SCENARIO))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "leadbot: no database at data/leadbot.db (DATABASE_URL): start the bot once, or name "
        "the right one with --db"
    )
    assert list(tmp_path.iterdir()) == []  # nothing made
