"""What the core needs from a messenger channel to send a message, and how sending fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from bot.messages import Button, Outgoing
from bot.pacing import Pacer, Place, clearance


class Blocked(Exception):
    """The person blocked the bot or closed their messages: never retry, mark unreachable."""


class RetryLater(Exception):
    """The platform asked to wait (Telegram 429, VK 6/9) or failed for a while (5xx, network)."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class TemporaryFailure(Exception):
    """The platform failed (5xx) or could not be reached: retry with backoff, a bounded number
    of times."""


class Refused(Exception):
    """The platform refused the message as it is (too long, say): sending the same again
    cannot help, so it is not retried; the reason is the platform's."""


class ChannelUnavailable(Exception):
    """A messenger refused the bot or could not be reached as it started; the message is one
    line naming the setting to look at."""


class Transport(Protocol):
    channel: str

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        """Deliver one message to a prospect; raises `Blocked` or `RetryLater`. A platform
        that de-duplicates sends (VK's random_id) gets `idempotency_key`, so a retry after a
        crash between sending and recording cannot deliver twice. `last_message_at` is when
        the person last wrote (VK asks a reason, `intent`, to write after 24 hours);
        `message.purpose` says what the message is for."""
        ...


class ManagersChat(Protocol):
    """The managers' group chat of a channel: post a message, rewrite it later in place."""

    async def post_to_managers(
        self,
        text: str,
        buttons: tuple[tuple[Button, ...], ...] = (),
        *,
        expect_reply: bool = False,
    ) -> str | None:
        """The posted message's reference, or None when no managers' chat is configured.
        `expect_reply` asks the messenger to open a reply to it (a question to a manager).
        Raises `RetryLater` or `TemporaryFailure` like `Transport.send`."""
        ...

    async def edit_in_managers(
        self, reference: str, text: str, buttons: tuple[tuple[Button, ...], ...] = ()
    ) -> None: ...


async def send_waiting(
    send: Callable[[], Awaitable[None]],
    *,
    sleep: Callable[[float], Awaitable[object]],
    attempts: int = 3,
    wait_limit: float = 60.0,
    again_after_failure: float | None = None,
    paced: tuple[Pacer, str, str] | None = None,
) -> None:
    """One send to a person who is waiting for it: a platform's "wait N seconds" up to
    `wait_limit` is waited out and the send tried again, `attempts` times in all; with
    `again_after_failure`, a temporary failure is tried again after that many seconds too
    (only where the platform drops a repeat, as VK's random_id does: Telegram may have
    delivered a send whose answer was lost). Past that the error is raised.

    `paced` (the pacer, the channel and the chat): each try first waits for a slot of the
    channel's limit, shared with the delivery worker and every other process, and a "wait N
    seconds" holds the chat for them all (a reply is paced by the channel alone, so the chat's
    own limit is what it more likely broke)."""
    for attempt in range(1, attempts + 1):
        place = None
        if paced is not None:
            pacer, channel, _ = paced
            place = await clearance(pacer, channel, sleep=sleep, wait_limit=wait_limit)
            if not isinstance(place, Place):
                raise RetryLater(place, f"{channel} is paced {place:.1f}s ahead")
        try:
            try:
                await send()
            finally:
                if paced is not None and place is not None:
                    await paced[0].done(place)
            return
        except RetryLater as exc:
            if paced is not None:
                await paced[0].penalize(paced[1], paced[2], exc.seconds)
            if attempt == attempts or exc.seconds > wait_limit:
                raise
            await sleep(exc.seconds)
        except TemporaryFailure:
            if attempt == attempts or again_after_failure is None:
                raise
            await sleep(again_after_failure)
