"""The pacer of one process: the channel calendar and chat buckets in memory."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.pacing.limits import DEFAULT_LIMITS, ChannelLimits, Limit, Place, limits_for
from bot.pacing.windows import SendWindows

# Token indices come from float arithmetic; this keeps an index that is an exact integer in
# theory from being rounded down to its neighbour (a token issued ~ns too early).
_EPS = 1e-6


def _first_index_after(moment: float, origin: float, limit: Limit) -> int:
    """The lowest token index still spendable by a send at `moment`: issued after
    `moment - burst/rate`."""
    return math.floor((moment - origin) * limit.rate - limit.burst + _EPS) + 1


@dataclass
class _Calendar:
    """The channel bucket of `MemoryPacer` (see the module docstring)."""

    origin: float
    frontier: int
    spent: set[int] = field(default_factory=set)

    @classmethod
    def fresh(cls, now: float, limit: Limit) -> _Calendar:
        # A full bucket: the `burst` tokens issued up to `now` (indices 1-burst .. 0) unspent.
        return cls(origin=now, frontier=1 - limit.burst)

    def settle(self, now: float, limit: Limit) -> None:
        """Forget tokens nobody can spend any more and move the frontier over spent ones."""
        self._raise_frontier(_first_index_after(now, self.origin, limit))
        if not self.spent and self.frontier == _first_index_after(now, self.origin, limit):
            # Nothing live is booked: re-anchor the grid on `now`, exactly like a fresh
            # bucket, so a burst after idling is paced from its own start.
            fresh = _Calendar.fresh(now, limit)
            self.origin, self.frontier = fresh.origin, fresh.frontier

    def _raise_frontier(self, frontier: int) -> None:
        if frontier > self.frontier:
            self.frontier = frontier
            # tokens below the frontier count as spent anyway (or can no longer be spent)
            self.spent = {i for i in self.spent if i >= frontier}
        self._absorb()

    def _absorb(self) -> None:
        while self.frontier in self.spent:
            self.spent.discard(self.frontier)
            self.frontier += 1

    def book(self, earliest: float, limit: Limit) -> float:
        """Spend the first free token a send at or after `earliest` may use; return the send
        moment (`earliest`, or later when that token is issued later)."""
        index = max(self.frontier, _first_index_after(earliest, self.origin, limit))
        while index in self.spent:
            index += 1
        if index == self.frontier:
            self.frontier += 1
            self._absorb()
        else:
            self.spent.add(index)
        return max(earliest, self.origin + index / limit.rate)

    def block_until(self, until: float, limit: Limit) -> None:
        """Void every token issued before `until`: sends resume at `until` at the steady
        rate, without a burst that would likely trip the platform's flood control again."""
        self._raise_frontier(math.ceil((until - self.origin) * limit.rate - _EPS))


@dataclass
class _ChatState:
    tat: float  # GCRA theoretical arrival time of the chat's bucket
    blocked_until: float = 0.0  # a chat's retry-after


class MemoryPacer:
    """Limits for one process; no await inside a booking, so each is atomic in its loop."""

    # Chat buckets are swept this often; a swept bucket was full, so nothing is forgotten.
    SWEEP_EVERY = 60.0

    def __init__(
        self,
        limits: Mapping[str, ChannelLimits] = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = dict(limits)
        self._clock = clock
        self._channels: dict[str, _Calendar] = {}
        self._chats: dict[tuple[str, str], _ChatState] = {}
        self._channel_blocks: dict[str, float] = {}  # a channel's retry-after ends then
        self._last_sweep = clock()
        self.windows = SendWindows(self.limits)

    def _calendar(self, channel: str, now: float) -> _Calendar:
        limit = limits_for(self.limits, channel).overall
        calendar = self._channels.get(channel)
        if calendar is None:
            calendar = self._channels[channel] = _Calendar.fresh(now, limit)
        calendar.settle(now, limit)
        return calendar

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.SWEEP_EVERY:
            return
        self._last_sweep = now
        # A chat whose TAT and block are in the past has a full bucket: same as no entry.
        idle = [k for k, s in self._chats.items() if max(s.tat, s.blocked_until) <= now]
        for key in idle:
            del self._chats[key]

    async def reserve(self, channel: str, chat_key: str | None, *, group: bool = False) -> float:
        limits = limits_for(self.limits, channel)
        chat_limit = limits.per_group if group else limits.per_chat
        now = self._clock()
        self._sweep(now)
        calendar = self._calendar(channel, now)
        if chat_key is None:
            return calendar.book(now, limits.overall) - now
        chat = self._chats.get((channel, chat_key))
        tat = now if chat is None else max(chat.tat, now)
        blocked_until = 0.0 if chat is None else chat.blocked_until
        interval = 1.0 / chat_limit.rate
        earliest = max(now, tat + interval - chat_limit.burst * interval, blocked_until)
        moment = calendar.book(earliest, limits.overall)
        # The chat is debited at the moment the send really happens.
        self._chats[(channel, chat_key)] = _ChatState(
            tat=max(tat, moment) + interval, blocked_until=blocked_until
        )
        return moment - now

    async def penalize(self, channel: str, chat_key: str | None, seconds: float) -> None:
        limits = limits_for(self.limits, channel)
        if not seconds > 0:
            return
        now = self._clock()
        until = now + seconds
        if chat_key is None:
            self._calendar(channel, now).block_until(until, limits.overall)
            self._channel_blocks[channel] = max(self._channel_blocks.get(channel, 0.0), until)
            return
        chat = self._chats.setdefault((channel, chat_key), _ChatState(tat=now))
        chat.blocked_until = max(chat.blocked_until, until)

    async def blocked_for(self, channel: str, chat_key: str | None) -> float:
        now = self._clock()
        chat = self._chats.get((channel, chat_key))
        until = max(self._channel_blocks.get(channel, 0.0), chat.blocked_until if chat else 0.0)
        return max(0.0, until - now)

    async def take(
        self, channel: str, chat_key: str | None, *, group: bool = False
    ) -> Place | float:
        if await self.blocked_for(channel, chat_key) > 0:
            return -1.0
        taken = self.windows.take(channel, chat_key, group=group, now=self._clock())
        return taken if isinstance(taken, float) else Place(channel, taken)

    async def done(self, place: Place) -> None:
        self.windows.done(place.handle, self._clock())

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
