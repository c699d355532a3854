"""End-to-end fixtures: the Telegram Bot API emulator (see telegram.py)."""

from tests.e2e.telegram import telegram_emulator, telegram_emulator_server

__all__ = ["telegram_emulator", "telegram_emulator_server"]
