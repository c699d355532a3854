"""Flood control for every channel: a token bucket per person, `burst` events at once, then
`rate` a second (FLOOD_BURST, FLOOD_RATE). What is over the limit never reaches the engine or
the database; the person hears one polite "slow down" per burst, never silence."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

FORGET_AFTER = 10_000  # people kept; past it, those who went quiet are forgotten


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    warn: bool = False  # refused, and the person has not been told yet in this burst


class FloodGate:
    def __init__(
        self, rate: float = 1.0, burst: int = 5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float, bool]] = {}  # tokens, updated, warned

    def check(self, who: str) -> Verdict:
        """Take a token for `who` (a channel and an account, "vk:123"), if there is one."""
        now = self.clock()
        tokens, updated, warned = self._buckets.get(who, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if tokens >= 1:
            self._buckets[who] = (tokens - 1, now, False)
            return Verdict(True)
        self._buckets[who] = (tokens, now, True)
        if len(self._buckets) > FORGET_AFTER:
            stale = now - self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if v[1] > stale}
        return Verdict(False, warn=not warned)
