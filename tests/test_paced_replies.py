"""Replies sent at once (a prospect waits for them) keep the channel's limit that the delivery
worker's sends keep, in one window with them; a platform's "wait" on a reply holds the chat
for every process. On a fake clock: the sleeps move it."""

from __future__ import annotations

import pytest

from bot.pacing import DEFAULT_LIMITS, MemoryPacer, Place, clearance
from bot.pacing.windows import SLACK
from bot.transport import RetryLater, send_waiting


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_replies_share_the_window_with_the_workers_sends() -> None:
    time = FakeTime()
    pacer = MemoryPacer(DEFAULT_LIMITS, clock=time)
    # The worker has just sent 29 messages to 29 chats.
    for chat in range(29):
        assert await pacer.reserve("telegram", str(chat)) == 0.0
        assert isinstance(await pacer.take("telegram", str(chat)), Place)
    # One reply still fits in this second, and then the worker's next send does not...
    assert isinstance(await clearance(pacer, "telegram", sleep=time.sleep, wait_limit=60), Place)
    assert time.slept == []
    assert await pacer.take("telegram", "29") == pytest.approx(1.0 + SLACK)
    # ...nor the next reply, which waits for the window to move on.
    assert isinstance(await clearance(pacer, "telegram", sleep=time.sleep, wait_limit=60), Place)
    assert sum(time.slept) == pytest.approx(1.0 + SLACK)


async def test_a_reply_that_would_wait_too_long_is_not_waited_for() -> None:
    time = FakeTime()
    pacer = MemoryPacer(DEFAULT_LIMITS, clock=time)
    await pacer.penalize("telegram", None, 90)  # Telegram asked the whole bot to wait
    assert await clearance(pacer, "telegram", sleep=time.sleep, wait_limit=60) == pytest.approx(90)
    assert time.slept == []
    with pytest.raises(RetryLater):
        await send_waiting(
            _never, sleep=time.sleep, wait_limit=60, paced=(pacer, "telegram", "42")
        )


async def _never() -> None:
    raise AssertionError("sent inside a retry-after")


async def test_a_wait_on_a_reply_holds_the_chat_for_every_sender_and_is_waited_out() -> None:
    time = FakeTime()
    pacer = MemoryPacer(DEFAULT_LIMITS, clock=time)
    tries: list[float] = []

    async def send() -> None:
        tries.append(time.now)
        if len(tries) == 1:
            raise RetryLater(3, "Too Many Requests: retry after 3")

    await send_waiting(send, sleep=time.sleep, paced=(pacer, "telegram", "42"))
    assert len(tries) == 2
    assert tries[1] - tries[0] >= 3
    # The worker (any process sharing the pacer) was told to hold that chat meanwhile.
    time.now = tries[0] + 1
    assert await pacer.take("telegram", "42") == -1.0
    assert isinstance(await pacer.take("telegram", "43"), Place)
