"""Outgoing pacing: keeps every send within the platform limits (house rule 6).

A caller asks `reserve(channel, chat_key)` for a send slot and gets back how long to wait
before sending; the slot is booked at that moment, so concurrent callers are handed distinct,
increasing slots and never all fire at once. `penalize` honours a platform's retry-after.

Two buckets bound every send: the channel-wide one (Telegram's ~30 msg/s, VK's 20 req/s per
community token) and the one of the chat (1 msg/s per private chat, 20 msg/min per group).

Per chat, a plain GCRA ("virtual scheduling": one theoretical arrival time, TAT, per chat) is
enough, because a chat's own sends are booked in order.

The channel bucket is shared by all chats and its bookings are NOT in order: a chat held back
by its own limit or by a retry-after books a slot seconds ahead while other chats still want
slots now. A single TAT cannot record "one token used at t+9 s" without also using up every
token before it, so one chat getting ten messages (or one group over 20/min) would stall the
whole channel for seconds. The channel bucket is therefore a calendar of tokens: token `i`
is issued at `origin + i / rate`, and a send at `s` may spend any unspent token issued in
`(s - burst / rate, s]` (a token bucket holding at most `burst` tokens). Spent tokens are the
`frontier` (every token below it is spent or expired) plus a sparse set of spent tokens above
it (the out-of-order bookings). In-order traffic only moves the frontier, which is exactly
GCRA; an out-of-order booking costs one entry until the frontier reaches it. Because every
send spends its own token from its own window, no window of sends exceeds the bucket (tokens
are discrete, so a window may hold one send more than a continuous bucket would allow).

A token bucket plans; it does not bound every window: a full bucket at the start lets
`burst` sends through at once and the rate on top, so 60 in the first second of a Telegram
broadcast. The platform's own window (30 in any second) is therefore kept at send time, over
the moments sends really leave (bot/delivery/windows.py); a slot that would break it waits.

`blocked_for` tells a sender, right before it sends, that a retry-after arrived after its slot
was booked: that slot is revoked and the sender books again.

`MemoryPacer` serves one process; `RedisPacer` runs the same algorithm as Lua scripts on the
Redis server, on the server's clock, so several processes share one set of limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis


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

# Token indices come from float arithmetic; this keeps an index that is an exact integer in
# theory from being rounded down to its neighbour (a token issued ~ns too early).
_EPS = 1e-6


class Pacer(Protocol):
    limits: Mapping[str, ChannelLimits]

    async def reserve(self, channel: str, chat_key: str, *, group: bool = False) -> float:
        """Book the next slot for one send to `chat_key`; return seconds to wait (0.0 = now).

        The slot is booked when this returns: the caller must send after waiting (a booked
        slot that goes unused merely wastes capacity). `group` selects the group limit.
        """
        ...

    async def penalize(self, channel: str, chat_key: str | None, seconds: float) -> None:
        """Honour a retry-after: nothing is booked before `seconds` from now on the whole
        channel (`chat_key` None) or on that chat. Slots handed out earlier are not revoked."""
        ...

    async def blocked_for(self, channel: str, chat_key: str) -> float:
        """Seconds until a retry-after on the channel or on that chat ends; 0.0 when none
        holds. Asked right before a send: a slot booked before the retry-after is revoked."""
        ...

    async def aclose(self) -> None:
        """Release connections (a no-op in memory)."""
        ...


def _limits_for(limits: Mapping[str, ChannelLimits], channel: str) -> ChannelLimits:
    try:
        return limits[channel]
    except KeyError:
        raise ValueError(
            f"no pacing limits for channel {channel!r} (known: {', '.join(sorted(limits))})"
        ) from None


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

    def _calendar(self, channel: str, now: float) -> _Calendar:
        limit = _limits_for(self.limits, channel).overall
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

    async def reserve(self, channel: str, chat_key: str, *, group: bool = False) -> float:
        limits = _limits_for(self.limits, channel)
        chat_limit = limits.per_group if group else limits.per_chat
        now = self._clock()
        self._sweep(now)
        calendar = self._calendar(channel, now)
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
        limits = _limits_for(self.limits, channel)
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

    async def blocked_for(self, channel: str, chat_key: str) -> float:
        now = self._clock()
        chat = self._chats.get((channel, chat_key))
        until = max(self._channel_blocks.get(channel, 0.0), chat.blocked_until if chat else 0.0)
        return max(0.0, until - now)

    async def aclose(self) -> None:
        return None


# The Lua below is the calendar and chat GCRA above, run atomically on the server. Times are
# the server's (TIME), so processes with skewed clocks agree; floats are stored with %.6f (µs).
# Keys of one channel share a {hash tag}, so a Redis Cluster keeps them on one node.
_LUA_COMMON = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local EPS = 1e-6
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function first_after(moment, origin, rate, burst)
  return math.floor((moment - origin) * rate - burst + EPS) + 1
end
-- The lowest index >= i not in the sparse set z (runs are read in chunks).
local function first_free(z, i)
  while true do
    local run = redis.call('ZRANGEBYSCORE', z, i, '+inf', 'LIMIT', 0, 64)
    if #run == 0 then return i end
    for k = 1, #run do
      if tonumber(run[k]) ~= i then return i end
      i = i + 1
    end
  end
end
local function absorb(z, f)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. f)
  local g = first_free(z, f)
  if g ~= f then redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. g) end
  return g
end
-- Loads the channel calendar and settles it at `now`; returns origin, frontier.
local function load(cal, z, now, rate, burst)
  local st = redis.call('HMGET', cal, 'o', 'f')
  local o, f = tonumber(st[1]), tonumber(st[2])
  if o == nil or f == nil then
    redis.call('DEL', z)
    o = tonumber(fmt(now))
    return o, 1 - burst
  end
  local low = first_after(now, o, rate, burst)
  if f < low then f = low end
  f = absorb(z, f)
  if f == first_after(now, o, rate, burst) and redis.call('ZCARD', z) == 0 then
    o = tonumber(fmt(now))
    f = 1 - burst
  end
  return o, f
end
-- Stores the calendar, kept until its last spent token can no longer be spent.
local function save(cal, z, now, o, f, rate, burst)
  redis.call('HSET', cal, 'o', fmt(o), 'f', string.format('%d', f))
  local top = f - 1
  local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
  if #last == 2 and tonumber(last[2]) > top then top = tonumber(last[2]) end
  local ttl = math.ceil((o + (top + burst) / rate - now) * 1000) + 1
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', cal, ttl)
  redis.call('PEXPIRE', z, ttl)
end
"""

# KEYS: calendar hash, sparse zset, chat hash.
# ARGV: overall rate, overall burst, chat rate, chat burst. Returns the wait as a string
# (a Lua number would come back truncated to an integer).
_LUA_RESERVE = (
    _LUA_COMMON
    + """
local cal, z, chat = KEYS[1], KEYS[2], KEYS[3]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local crate, cburst = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = server_now()
local c = redis.call('HMGET', chat, 't', 'b')
local tat = tonumber(c[1]) or now
if tat < now then tat = now end
local blocked = tonumber(c[2]) or 0
local interval = 1 / crate
local earliest = math.max(now, tat + interval - cburst * interval, blocked)
local o, f = load(cal, z, now, rate, burst)
local i = first_after(earliest, o, rate, burst)
if i < f then i = f end
i = first_free(z, i)
if i == f then
  f = absorb(z, f + 1)
else
  redis.call('ZADD', z, i, string.format('%d', i))
end
local moment = math.max(earliest, o + i / rate)
save(cal, z, now, o, f, rate, burst)
local ctat = math.max(tat, moment) + interval
redis.call('HSET', chat, 't', fmt(ctat))
redis.call('PEXPIRE', chat, math.ceil((math.max(ctat, blocked) - now) * 1000) + 1)
return fmt(moment - now)
"""
)

# KEYS: calendar hash, sparse zset. ARGV: overall rate, overall burst, seconds.
_LUA_PENALIZE_CHANNEL = (
    _LUA_COMMON
    + """
local cal, z = KEYS[1], KEYS[2]
local rate, burst, seconds = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = server_now()
local o, f = load(cal, z, now, rate, burst)
local g = math.ceil((now + seconds - o) * rate - EPS)
if g > f then f = absorb(z, g) end
save(cal, z, now, o, f, rate, burst)
local b = KEYS[3]
local old = tonumber(redis.call('GET', b)) or 0
if now + seconds > old then
  redis.call('SET', b, fmt(now + seconds), 'PX', math.ceil(seconds * 1000) + 1)
end
return 1
"""
)

# KEYS: chat hash. ARGV: seconds.
_LUA_PENALIZE_CHAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local c = redis.call('HMGET', KEYS[1], 't', 'b')
local tat = tonumber(c[1]) or now
local blocked = math.max(tonumber(c[2]) or 0, until_)
redis.call('HSET', KEYS[1], 'b', string.format('%.6f', blocked))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, blocked) - now) * 1000) + 1)
return 1
"""


# KEYS: the channel's block, chat hash. Returns seconds until both blocks end, as a string.
_LUA_BLOCKED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = math.max(tonumber(redis.call('GET', KEYS[1])) or 0,
                        tonumber(redis.call('HGET', KEYS[2], 'b')) or 0)
return string.format('%.6f', math.max(0, until_ - now))
"""


class RedisPacer:
    """Limits shared by every process using the same Redis; each booking is one script call.

    Keys: `<namespace>:{<channel>}:all` (calendar), `...:all:spent` (out-of-order bookings),
    `...:blocked` (the channel's retry-after), `...:chat:<chat_key>` (chat bucket and block);
    all expire once they carry no debt.
    """

    def __init__(
        self,
        client: Redis,
        limits: Mapping[str, ChannelLimits] = DEFAULT_LIMITS,
        *,
        namespace: str = "leadbot:pace",
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self.limits = dict(limits)
        self._namespace = namespace
        self._owns_client = owns_client
        self._reserve = client.register_script(_LUA_RESERVE)
        self._penalize_channel = client.register_script(_LUA_PENALIZE_CHANNEL)
        self._penalize_chat = client.register_script(_LUA_PENALIZE_CHAT)
        self._blocked = client.register_script(_LUA_BLOCKED)

    def _prefix(self, channel: str) -> str:
        return f"{self._namespace}:{{{channel}}}"

    async def reserve(self, channel: str, chat_key: str, *, group: bool = False) -> float:
        limits = _limits_for(self.limits, channel)
        chat_limit = limits.per_group if group else limits.per_chat
        prefix = self._prefix(channel)
        wait = await self._reserve(
            keys=[f"{prefix}:all", f"{prefix}:all:spent", f"{prefix}:chat:{chat_key}"],
            args=[
                repr(limits.overall.rate),
                limits.overall.burst,
                repr(chat_limit.rate),
                chat_limit.burst,
            ],
        )
        return float(wait.decode() if isinstance(wait, bytes) else wait)

    async def penalize(self, channel: str, chat_key: str | None, seconds: float) -> None:
        limits = _limits_for(self.limits, channel)
        if not seconds > 0:
            return
        prefix = self._prefix(channel)
        if chat_key is None:
            await self._penalize_channel(
                keys=[f"{prefix}:all", f"{prefix}:all:spent", f"{prefix}:blocked"],
                args=[
                    repr(limits.overall.rate),
                    limits.overall.burst,
                    repr(float(seconds)),
                ],
            )
        else:
            await self._penalize_chat(
                keys=[f"{prefix}:chat:{chat_key}"], args=[repr(float(seconds))]
            )

    async def blocked_for(self, channel: str, chat_key: str) -> float:
        prefix = self._prefix(channel)
        left = await self._blocked(keys=[f"{prefix}:blocked", f"{prefix}:chat:{chat_key}"])
        return float(left.decode() if isinstance(left, bytes) else left)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def pacer_for(
    redis_url: str | None, limits: Mapping[str, ChannelLimits] = DEFAULT_LIMITS
) -> Pacer:
    """Redis when configured (several processes share the limits), else one process's own."""
    if redis_url:
        return RedisPacer(Redis.from_url(redis_url), limits, owns_client=True)
    return MemoryPacer(limits)
