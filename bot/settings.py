"""Process settings from the environment and `.env` (names as in `.env.example`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TELEGRAM_OFFICIAL_API = "https://api.telegram.org"
VK_OFFICIAL_API = "https://api.vk.com/method"


class SettingsError(Exception):
    """A setting has a wrong value; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str = "sqlite+aiosqlite:///data/leadbot.db"
    scenario_dir: Path = Path("scenarios")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object a line (bot.logs)
    default_phone_region: str = Field(default="RU", min_length=2, max_length=2)
    max_input_length: int = Field(default=1000, ge=64, le=4096)
    flood_rate: float = Field(default=1.0, gt=0)
    flood_burst: int = Field(default=8, ge=1)
    telegram_messages_per_second: float = Field(default=30.0, gt=0)
    telegram_chat_messages_per_second: float = Field(default=1.0, gt=0)
    telegram_group_messages_per_minute: float = Field(default=20.0, gt=0)
    vk_requests_per_second: float = Field(default=20.0, gt=0)

    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = TELEGRAM_OFFICIAL_API
    managers_telegram_chat_id: int | None = None

    vk_group_token: SecretStr | None = None
    vk_group_id: int | None = None
    vk_api_url: str = VK_OFFICIAL_API
    managers_vk_peer_id: int | None = None
    vk_callback_secret: SecretStr | None = None
    vk_confirmation_code: str | None = None

    redis_url: str | None = None
    webhook_base_url: str | None = None
    webhook_secret: SecretStr | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    # Serve /healthz, /readyz and /metrics even when nothing else needs the web server.
    http_always: bool = False

    api_token: SecretStr | None = None
    redeem_tokens: SecretStr | None = None
    crm_bitrix24_webhook_url: SecretStr | None = None
    crm_webhook_url: str | None = None
    crm_webhook_secret: SecretStr | None = None
    redeem_max_failures: int = Field(default=5, ge=1)
    redeem_lockout_minutes: int = Field(default=15, ge=1)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "telegram_bot_token",
        "vk_group_token",
        "webhook_secret",
        "redis_url",
        "webhook_base_url",
        "managers_telegram_chat_id",
        "vk_group_id",
        "managers_vk_peer_id",
        "vk_callback_secret",
        "vk_confirmation_code",
        "api_token",
        "redeem_tokens",
        "crm_bitrix24_webhook_url",
        "crm_webhook_url",
        "crm_webhook_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `.env.example` copied as is leaves `NAME=`: that means "not set", not "empty".
        return None if value == "" else value

    @model_validator(mode="after")
    def _vk_callback_needs_a_code(self) -> Settings:
        if self.vk_callback_secret and not self.vk_confirmation_code:
            raise ValueError(
                "VK_CONFIRMATION_CODE: required with VK_CALLBACK_SECRET (the string VK shows "
                "in the community's Callback API settings)"
            )
        return self

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> Settings:
        if self.webhook_base_url and self.webhook_secret is None:
            raise ValueError(
                "WEBHOOK_SECRET: required with WEBHOOK_BASE_URL (any long random string)"
            )
        if self.webhook_base_url and not self.webhook_base_url.startswith("https://"):
            raise ValueError("WEBHOOK_BASE_URL: Telegram only calls https:// addresses")
        return self

    @field_validator("crm_bitrix24_webhook_url", "crm_webhook_url")
    @classmethod
    def _https_or_local(cls, value: object) -> object:
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(url, str) and not url.startswith(
            ("https://", "http://127.0.0.1", "http://localhost")
        ):
            raise ValueError("a CRM is called over https:// (http only for 127.0.0.1)")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's own form, as aiogram checks it: the bot's number, a colon, the secret.
        bot_id, colon, secret = (value.get_secret_value() if value else "").partition(":")
        if value is not None and not (
            bot_id.isascii()
            and bot_id.isdigit()
            and colon
            and secret
            and secret.isascii()
            and not any(c.isspace() for c in secret)
        ):
            raise ValueError("not a bot token; @BotFather gives one like 123456789:AAE...")
        return value

    @field_validator("redeem_tokens")
    @classmethod
    def _redeem_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_redeem_tokens(value.get_secret_value())  # raises naming what is wrong
        return value

    def redeem_callers(self) -> dict[str, tuple[str, bool]]:
        """REDEEM_TOKENS as token -> (the till's name, public)."""
        if self.redeem_tokens is None:
            return {}
        return parse_redeem_tokens(self.redeem_tokens.get_secret_value())

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
            )
        return value


def parse_redeem_tokens(text: str) -> dict[str, tuple[str, bool]]:
    """`name:token` or `name:token:public`, comma-separated, as token -> (name, public)."""
    found: dict[str, tuple[str, bool]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = entry.partition(":")
        token, _, mode = rest.partition(":")
        named = re.fullmatch(r"[a-z0-9_-]{1,32}", name) and name != "api"
        if not named or len(token) < 16 or mode not in ("", "public"):
            raise ValueError(
                "write name:token or name:token:public, comma-separated (a name of a-z, 0-9, "
                "_ and - other than api; a token of 16 characters or more)"
            )
        found[token] = (name, mode == "public")
    return found


def load_settings(**overrides: object) -> Settings:
    """Read settings; a wrong value becomes a one-line `SettingsError` naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:  # a whole-settings check names its variables itself
                message = f"{str(error['loc'][0]).upper()}: {message}"
            problems.append(message)
        raise SettingsError("; ".join(problems)) from None
