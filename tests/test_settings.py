"""Settings from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings


def test_defaults_need_no_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///data/leadbot.db"
    assert settings.scenario_dir == Path("scenarios")
    assert settings.telegram_bot_token is None
    assert settings.vk_group_token is None


def test_env_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "TELEGRAM_BOT_TOKEN=123:abc\nLOG_LEVEL=debug\nMANAGERS_TELEGRAM_CHAT_ID=-100123\n"
        "VK_GROUP_TOKEN=\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("LOG_LEVEL", "warning")
    settings = load_settings()
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == "123:abc"
    assert "123:abc" not in repr(settings)
    assert "123:abc" not in str(settings.model_dump())
    assert settings.log_level == "WARNING"
    assert settings.managers_telegram_chat_id == -100123
    assert settings.vk_group_token is None  # `NAME=` as copied from .env.example: unset


def test_every_setting_is_in_env_example() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text(encoding="utf-8")
    names = {
        line.split("=", 1)[0]
        for line in example.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert names == {name.upper() for name in Settings.model_fields}


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        (
            "MAX_INPUT_LENGTH",
            "10",
            "MAX_INPUT_LENGTH: Input should be greater than or equal to 64",
        ),
        (
            "DATABASE_URL",
            "postgres://x",
            "DATABASE_URL: use sqlite+aiosqlite:///path/to/file.db "
            "or postgresql+asyncpg://user@host/db",
        ),
        (
            "VK_GROUP_ID",
            "club1",
            "VK_GROUP_ID: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, error: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == error


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"WEBHOOK_BASE_URL": "https://bot.example.com"},
            "WEBHOOK_SECRET: required with WEBHOOK_BASE_URL (any long random string)",
        ),
        (
            {"WEBHOOK_BASE_URL": "http://bot.example.com", "WEBHOOK_SECRET": "x" * 32},
            "WEBHOOK_BASE_URL: Telegram only calls https:// addresses",
        ),
    ],
)
def test_a_webhook_needs_https_and_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], error: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == error


def test_pacing_limits_come_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bot.app import channel_limits
    from bot.pacing import DEFAULT_LIMITS

    monkeypatch.chdir(tmp_path)
    assert channel_limits(load_settings())["telegram"] == DEFAULT_LIMITS["telegram"]
    monkeypatch.setenv("TELEGRAM_MESSAGES_PER_SECOND", "10")
    monkeypatch.setenv("TELEGRAM_GROUP_MESSAGES_PER_MINUTE", "6")
    limits = channel_limits(load_settings())["telegram"]
    assert (limits.overall.rate, limits.overall.burst) == (10, 10)
    assert (limits.per_group.rate, limits.per_group.burst) == (0.1, 6)
