"""What the core needs from a messenger channel to send a message, and how sending fails."""

from __future__ import annotations

from typing import Protocol

from bot.engine.messages import Outgoing


class Blocked(Exception):
    """The person blocked the bot or closed their messages: never retry, mark unreachable."""


class RetryLater(Exception):
    """The platform asked to wait (Telegram 429, VK 6/9) or failed for a while (5xx, network)."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class Transport(Protocol):
    channel: str

    async def send(self, external_id: str, message: Outgoing) -> None:
        """Deliver one message to a prospect; raises `Blocked` or `RetryLater`."""
        ...
