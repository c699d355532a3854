"""What limits a channel's sends, and what every pacer offers."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Limit:
    """A token bucket: `rate` tokens per second, at most `burst` tokens saved up."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of tokens per second: {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1: {self.burst}")


@dataclass(frozen=True)
class ChannelLimits:
    overall: Limit
    per_chat: Limit
    per_group: Limit


DEFAULT_LIMITS: dict[str, ChannelLimits] = {
    # https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this
    "telegram": ChannelLimits(
        overall=Limit(rate=30.0, burst=30),
        per_chat=Limit(rate=1.0, burst=1),
        per_group=Limit(rate=20 / 60, burst=20),
    ),
    # VK limits API calls per community token; it states no per-chat rule, so stay modest.
    "vk": ChannelLimits(
        overall=Limit(rate=20.0, burst=20),
        per_chat=Limit(rate=1.0, burst=3),
        per_group=Limit(rate=1.0, burst=3),
    ),
    # The console chat has no platform behind it: pacing must never slow it down.
    "console": ChannelLimits(
        overall=Limit(rate=1_000_000.0, burst=1_000_000),
        per_chat=Limit(rate=1_000_000.0, burst=1_000_000),
        per_group=Limit(rate=1_000_000.0, burst=1_000_000),
    ),
}


@dataclass(frozen=True)
class Place:
    """A place `Pacer.take` gave one send in the windows: handed to `Pacer.done` once the
    platform answered, so that it is held from then on (bot/pacing/windows.py)."""

    channel: str
    handle: Any


class Pacer(Protocol):
    limits: Mapping[str, ChannelLimits]

    async def reserve(self, channel: str, chat_key: str | None, *, group: bool = False) -> float:
        """Book the next slot for one send to `chat_key`; return seconds to wait (0.0 = now).

        The slot is booked when this returns: the caller must send after waiting (a booked
        slot that goes unused merely wastes capacity). `group` selects the group limit;
        `chat_key` None books the channel alone (a reply to a person who just wrote, which
        the platforms let through in a short burst per chat).
        """
        ...

    async def penalize(self, channel: str, chat_key: str | None, seconds: float) -> None:
        """Honour a retry-after: nothing is booked before `seconds` from now on the whole
        channel (`chat_key` None) or on that chat. Slots handed out earlier are not revoked."""
        ...

    async def blocked_for(self, channel: str, chat_key: str | None) -> float:
        """Seconds until a retry-after on the channel or on that chat (None: the channel
        alone) ends; 0.0 when none holds."""
        ...

    async def take(
        self, channel: str, chat_key: str | None, *, group: bool = False
    ) -> Place | float:
        """The last word right before a send, with nothing awaited between it and the send:
        its `Place` when it may go now (taken in every window), -1.0 when a retry-after holds
        the channel or the chat (the slot is revoked: book another), else seconds until the
        windows have a place (nothing is taken then). `chat_key` None: the channel's alone."""
        ...

    async def done(self, place: Place) -> None:
        """The platform answered the send (or it failed): its place is held from now on."""
        ...

    async def ping(self) -> None:
        """Raise when the store shared with other processes does not answer (a no-op in
        memory): checked at start, so a wrong REDIS_URL stops the process at once."""
        ...

    async def aclose(self) -> None:
        """Release connections (a no-op in memory)."""
        ...


async def clearance(
    pacer: Pacer,
    channel: str,
    *,
    sleep: Callable[[float], Awaitable[object]],
    wait_limit: float,
) -> Place | float:
    """For a send made right away (a reply to a person who waits): book the channel's next
    slot, wait for it and for a place in its window. The place once the send may go at
    once, else the wait that would exceed `wait_limit` (nothing more is waited then)."""
    wait = await pacer.reserve(channel, None)
    while wait <= wait_limit:
        if wait > 0:
            await sleep(wait)
        taken = await pacer.take(channel, None)
        if isinstance(taken, Place):
            return taken
        wait = await pacer.reserve(channel, None) if taken < 0 else taken
    return wait


def limits_for(limits: Mapping[str, ChannelLimits], channel: str) -> ChannelLimits:
    try:
        return limits[channel]
    except KeyError:
        raise ValueError(
            f"no pacing limits for channel {channel!r} (known: {', '.join(sorted(limits))})"
        ) from None
