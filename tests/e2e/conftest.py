"""End-to-end fixtures: the Telegram Bot API emulator (see telegram.py) and the VK API fake
(see vk_api.py)."""

from tests.e2e.telegram import telegram_emulator, telegram_emulator_server
from tests.e2e.vk_api import vk_api

__all__ = ["telegram_emulator", "telegram_emulator_server", "vk_api"]
