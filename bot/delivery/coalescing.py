"""Group work that arrives together into one call: the reads and writes of many sends share
one statement and one commit, yet each send waits only for its own group."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`submit` an item and get its result; items submitted while a group is being handled
    form the next group (a group commit: no timer, so a lone item is never held back)."""

    def __init__(self, handle: Callable[[list[T]], Awaitable[Sequence[R]]]) -> None:
        self._handle = handle
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the callers of this very moment join the first group
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                results = await self._handle([item for item, _ in group])
            except Exception as exc:  # every caller of the group hears of it
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def idle(self) -> None:
        """Wait until nothing is waiting or being handled."""
        while self._runner is not None and not self._runner.done():
            await asyncio.shield(self._runner)
