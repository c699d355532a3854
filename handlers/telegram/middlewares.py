"""Per-user flood control and tracking of updates in flight (for a graceful shutdown)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.engine.funnel import Funnel

log = logging.getLogger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class Throttle(BaseMiddleware):
    """A token bucket per user: `burst` events at once, then `rate` a second. Extra events
    are dropped with one polite "slow down" per burst, so a flood never reaches the engine
    (and the database) but a person is never left wondering."""

    def __init__(
        self, rate: float = 1.0, burst: int = 5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[int, tuple[float, float, bool]] = {}  # tokens, updated, warned

    def allow(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn now)."""
        now = self.clock()
        tokens, updated, warned = self._buckets.get(user_id, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if tokens >= 1:
            self._buckets[user_id] = (tokens - 1, now, False)
            return True, False
        self._buckets[user_id] = (tokens, now, True)
        if len(self._buckets) > 10_000:  # forget people who went quiet
            stale = now - self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > stale}
        return False, not warned

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = getattr(event, "from_user", None)
        if user is None:
            return await handler(event, data)
        allowed, warn = self.allow(user.id)
        if allowed:
            return await handler(event, data)
        log.info("throttled user %s", user.id)
        funnel: Funnel = data["funnel"]
        text = funnel.scenarios.current.scenario.messages.slow_down
        if isinstance(event, CallbackQuery):
            await event.answer(text if warn else None)
        elif isinstance(event, Message) and warn:
            await event.answer(text)
        return None


class InFlight(BaseMiddleware):
    """Remembers the updates being handled, so shutdown can let them finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await handler(event, data)
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def drain(self, grace_seconds: float) -> int:
        """Wait for the updates in flight (at most `grace_seconds`); how many there were."""
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        if others:
            log.info("waiting for %d update(s) in flight", len(others))
            await asyncio.wait(others, timeout=grace_seconds)
        return len(others)
