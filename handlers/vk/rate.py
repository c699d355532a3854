"""VK's limit on calls per community token, kept on the bot's side: VK answers error 6 past
20 calls in a second. vkbottle's API takes the token from its token generator for every
request (sends, event answers, uploads, long polling's server), so handing the token out at
a bounded pace bounds every call of the process."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

from vkbottle.api.token_generator.abc import ABCTokenGenerator

# Below VK's 20: requests leave in this order but may reach VK closer together.
CALLS_PER_SECOND = 18


class PacedToken(ABCTokenGenerator):
    """The community token for at most `per_second` calls in any one second. A call counts
    from the moment it takes the token until a second after its answer came back: when it
    reached VK in between is not known here (a busy loop may hold a request a while before
    it leaves), so no second as VK counts it can hold more. Several processes sharing a token
    each keep this pace; a rare error 6 between them is waited out like any rate limit (the
    delivery worker's pacer shares the outbox's budget through Redis)."""

    def __init__(
        self,
        token: str,
        per_second: int = CALLS_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.token = token
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._finished: deque[float] = deque()  # when calls of the last second came back
        self._returned = asyncio.Event()
        self._turn = asyncio.Lock()

    async def get_token(self) -> str:
        async with self._turn:  # first come, first served: nobody overtakes a waiting call
            while True:
                now = self._clock()
                while self._finished and now - self._finished[0] >= 1.0:
                    self._finished.popleft()
                if self._in_flight + len(self._finished) < self.per_second:
                    self._in_flight += 1
                    return self.token
                if self._finished:
                    await self._sleep(self._finished[0] + 1.0 - now)
                else:  # every slot is a call still on its way: wait for one to come back
                    self._returned.clear()
                    await self._returned.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._in_flight -= 1
        self._finished.append(self._clock())
        self._returned.set()

    def __repr__(self) -> str:
        return f"<PacedToken {self.per_second}/s>"  # never the token itself
