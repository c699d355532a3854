"""End-to-end fixtures: the Telegram Bot API emulator (see telegram.py), the VK API fake
(see vk_api.py), and the bot running against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.bot_process import RunningBot, start_bot
from tests.e2e.telegram import TelegramClient, telegram_emulator, telegram_emulator_server
from tests.e2e.vk_api import vk_api

__all__ = ["bot", "telegram_emulator", "telegram_emulator_server", "vk_api"]


@pytest.fixture
async def bot(telegram_emulator: TelegramClient, tmp_path: Path) -> AsyncIterator[RunningBot]:
    """The bot in long-polling mode, ready once it has dropped any webhook (it asks getMe
    first, then polls; updates sent before its first poll wait in the emulator, as in
    Telegram). A module needing other settings defines its own `bot`."""
    running = start_bot(telegram_emulator, tmp_path)
    try:
        await telegram_emulator.wait_for_calls("deleteWebhook", 1, timeout=30)
        yield running
    finally:
        code = running.stop()
        log = running.log.read_text()
        assert code == 0, log
        assert telegram_emulator.token.split(":")[1] not in log  # the token never reaches logs
