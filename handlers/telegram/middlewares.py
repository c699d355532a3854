"""Per-user flood control and tracking of updates in flight (for a graceful shutdown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.engine.funnel import Funnel
from bot.flood import FloodGate

log = logging.getLogger(__name__)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class Throttle(BaseMiddleware):
    """The core's flood control (bot/flood.py) in front of every message and button press:
    what is over the limit never reaches the engine, and gets one "slow down" per burst."""

    def __init__(self, gate: FloodGate | None = None) -> None:
        self.gate = gate or FloodGate()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = getattr(event, "from_user", None)
        if user is None:
            return await handler(event, data)
        verdict = self.gate.check(f"telegram:{user.id}")
        if verdict.allowed:
            return await handler(event, data)
        warn = verdict.warn
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
