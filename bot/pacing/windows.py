"""The last word on pacing, at the moment of sending: never more sends than a limit allows in
any window, whatever happened since the pacer booked the slot.

The pacer books slots ahead; a send can still leave later than its slot (a read before it,
a busy event loop), and slots booked for a send that leaves late would then bunch with those
that leave on time. Here each limit is a sliding window of the actual sends: at most `burst`
sends in any `burst / rate` seconds (30 in any second for Telegram overall, 1 in any second
per chat, 20 in any minute per group). Checking and taking a place are one synchronous step,
so concurrent senders of this process can never both take the last place.

A place is held from the send's start, and once the platform answered, from that answer:
the platform counts a send somewhere between the two, so a send that starts a window's length
after the answer of the one it would be one too many with cannot land in the same window,
however long the way there took (a file upload, a loaded host, a slow network). `SLACK` on
top covers the clocks' granularity.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.pacing.limits import ChannelLimits, Limit

SLACK = 0.01  # seconds: the clocks' granularity


def window_of(limit: Limit) -> tuple[int, float]:
    """The window a limit allows: at most `size` sends in any `length` seconds."""
    return limit.burst, limit.burst / limit.rate + SLACK


class Held:
    """One send's place in a window: since its start, then since its answer (`done`)."""

    __slots__ = ("since",)

    def __init__(self, since: float) -> None:
        self.since = since


class _Window:
    __slots__ = ("held", "length", "size")

    def __init__(self, limit: Limit) -> None:
        self.size, self.length = window_of(limit)
        self.held: list[Held] = []

    def wait(self, now: float) -> float:
        """Seconds until one more send fits (places held a window's length ago are let go)."""
        self.held = [h for h in self.held if h.since + self.length > now]
        if len(self.held) < self.size:
            return 0.0
        oldest = sorted(h.since for h in self.held)[len(self.held) - self.size]
        return max(0.0, oldest + self.length - now)


class SendWindows:
    """One process's record of its recent sends, per channel and per chat."""

    SWEEP_EVERY = 120.0  # chat windows whose places are all let go are dropped

    def __init__(self, limits: Mapping[str, ChannelLimits]) -> None:
        self._limits = dict(limits)
        self._channels: dict[str, _Window] = {}
        self._chats: dict[tuple[str, str], _Window] = {}
        self._last_sweep = 0.0

    def take(
        self, channel: str, chat_key: str | None, *, group: bool, now: float
    ) -> float | tuple[Held, ...]:
        """Take a place for one send now and return it (to be marked `done` once the
        platform answered), or return how long to wait (nothing is taken then); `chat_key`
        None: in the channel's window alone. Unknown channels are not limited here (the
        pacer refuses them)."""
        limits = self._limits.get(channel)
        if limits is None:
            return ()
        self._sweep(now)
        windows = [self._channels.get(channel) or _Window(limits.overall)]
        self._channels[channel] = windows[0]
        if chat_key is not None:
            chat = self._chats.get((channel, chat_key))
            windows.append(chat or _Window(limits.per_group if group else limits.per_chat))
        wait = max(window.wait(now) for window in windows)
        if wait > 0:
            return wait
        places = tuple(Held(now) for _ in windows)
        for window, place in zip(windows, places, strict=True):
            window.held.append(place)
        if chat_key is not None:
            self._chats[(channel, chat_key)] = windows[1]
        return places

    @staticmethod
    def done(places: tuple[Held, ...], now: float) -> None:
        for place in places:
            place.since = max(place.since, now)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.SWEEP_EVERY:
            return
        self._last_sweep = now
        stale = [k for k, w in self._chats.items() if w.wait(now) == 0.0 and not w.held]
        for key in stale:
            del self._chats[key]
