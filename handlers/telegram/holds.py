"""Telegram's retry_after per chat, as this process was told it. Telegram refuses a send to a
chat before its retry_after ends, whoever sends it: a reply handled in another task, or the
delivery worker, must wait as well as the send that was refused."""

from __future__ import annotations

import time
from collections.abc import Callable


class ChatHolds:
    """Until when each chat must not be sent to (on `clock`)."""

    SWEEP_AT = 1024  # entries kept before the ended holds are dropped

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[int, float] = {}

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram asked to wait `seconds` before the next send to `chat_id`."""
        now = self._clock()
        if len(self._until) >= self.SWEEP_AT:
            self._until = {chat: until for chat, until in self._until.items() if until > now}
        self._until[chat_id] = max(self._until.get(chat_id, now), now + seconds)

    def left(self, chat_id: int) -> float:
        """Seconds until `chat_id` may be sent to; 0.0 when it may now."""
        until = self._until.get(chat_id)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[chat_id]
            return 0.0
        return left
