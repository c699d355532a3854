"""The last word on pacing, at the moment of sending: never more sends than a limit allows in
any window, whatever happened since the pacer booked the slot.

The pacer books slots ahead; a send can still leave later than its slot (a read before it,
a busy event loop), and slots booked for a send that leaves late would then bunch with those
that leave on time. Here each limit is a sliding window of the actual send times: at most
`burst` sends in any `burst / rate` seconds (30 in any second for Telegram overall, 1 in any
second per chat, 20 in any minute per group). Checking and recording are one synchronous step,
so concurrent senders of this process can never both take the last place.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from bot.pacing import ChannelLimits, Limit


class _Window:
    __slots__ = ("length", "sent", "size")

    def __init__(self, limit: Limit) -> None:
        self.size = limit.burst
        self.length = limit.burst / limit.rate
        self.sent: deque[float] = deque(maxlen=limit.burst)

    def wait(self, now: float) -> float:
        """Seconds until one more send fits."""
        if len(self.sent) < self.size:
            return 0.0
        return max(0.0, self.sent[0] + self.length - now)


class SendWindows:
    """One process's record of its recent sends, per channel and per chat."""

    SWEEP_EVERY = 120.0  # chat windows whose last send is older than their length are dropped

    def __init__(self, limits: Mapping[str, ChannelLimits]) -> None:
        self._limits = dict(limits)
        self._channels: dict[str, _Window] = {}
        self._chats: dict[tuple[str, str], _Window] = {}
        self._last_sweep = 0.0

    def take(self, channel: str, chat_key: str, *, group: bool, now: float) -> float:
        """Take a place for one send now and return 0.0, or return how long to wait (nothing
        is taken then). Unknown channels are not limited here (the pacer refuses them)."""
        limits = self._limits.get(channel)
        if limits is None:
            return 0.0
        self._sweep(now)
        overall = self._channels.get(channel)
        if overall is None:
            overall = self._channels[channel] = _Window(limits.overall)
        chat = self._chats.get((channel, chat_key))
        if chat is None:
            chat = _Window(limits.per_group if group else limits.per_chat)
        wait = max(overall.wait(now), chat.wait(now))
        if wait > 0:
            return wait
        overall.sent.append(now)
        chat.sent.append(now)
        self._chats[(channel, chat_key)] = chat
        return 0.0

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.SWEEP_EVERY:
            return
        self._last_sweep = now
        stale = [k for k, w in self._chats.items() if not w.sent or w.sent[-1] + w.length < now]
        for key in stale:
            del self._chats[key]
