"""The pacer shared by several processes: the same calendar, buckets and windows in Redis."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping

from redis.asyncio import Redis

from bot.pacing.limits import DEFAULT_LIMITS, ChannelLimits, Pacer, Place, limits_for
from bot.pacing.memory import MemoryPacer
from bot.pacing.windows import window_of

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
# ARGV: overall rate, overall burst, chat rate, chat burst, '1' to book the chat too ('0':
# the channel alone, the chat's key unused). Returns the wait as a string
# (a Lua number would come back truncated to an integer).
_LUA_RESERVE = (
    _LUA_COMMON
    + """
local cal, z, chat = KEYS[1], KEYS[2], KEYS[3]
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local crate, cburst = tonumber(ARGV[3]), tonumber(ARGV[4])
local has_chat = ARGV[5] == '1'
local now = server_now()
local c = {false, false}
if has_chat then c = redis.call('HMGET', chat, 't', 'b') end
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
if has_chat then
  local ctat = math.max(tat, moment) + interval
  redis.call('HSET', chat, 't', fmt(ctat))
  redis.call('PEXPIRE', chat, math.ceil((math.max(ctat, blocked) - now) * 1000) + 1)
end
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


# KEYS: the channel's block, chat hash, the channel's window, the chat's window (sorted sets
# of places: the ticket of a send, scored by the moment it is held from). ARGV: channel window
# size and length, chat window size and length (size 0: the channel alone, the chat's keys
# unused), the ticket. '-1' while a retry-after holds; else the seconds until both windows
# have a place, or '0' once the place is taken in both.
_LUA_TAKE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local csize, clength = tonumber(ARGV[3]), tonumber(ARGV[4])
local blocked = tonumber(redis.call('GET', KEYS[1])) or 0
if csize > 0 then blocked = math.max(blocked, tonumber(redis.call('HGET', KEYS[2], 'b')) or 0) end
if blocked > now then return '-1' end
local function wait(key, size, length)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.6f', now - length))
  local n = redis.call('ZCARD', key)
  if n < size then return 0 end
  local oldest = redis.call('ZRANGE', key, n - size, n - size, 'WITHSCORES')
  return math.max(0, tonumber(oldest[2]) + length - now)
end
local size, length = tonumber(ARGV[1]), tonumber(ARGV[2])
local windows = {{KEYS[3], size, length}}
if csize > 0 then windows[2] = {KEYS[4], csize, clength} end
local w = 0
for k, window in ipairs(windows) do w = math.max(w, wait(window[1], window[2], window[3])) end
if w > 0 then return string.format('%.6f', math.max(w, 0.000001)) end
for k, window in ipairs(windows) do
  redis.call('ZADD', window[1], string.format('%.6f', now), ARGV[5])
  -- kept while a send in flight may still be answered, then a window's length
  redis.call('PEXPIRE', window[1], math.ceil((window[3] + 60) * 1000))
end
return '0'
"""

# KEYS: the windows the place was taken in. ARGV: the ticket, each window's length. The place
# is held from the answer on; a window lives at least a length past it.
_LUA_DONE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for k, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', string.format('%.6f', now), ARGV[1]) == 1 then
    local need = math.ceil(tonumber(ARGV[k + 1]) * 1000) + 1
    if redis.call('PTTL', key) < need then redis.call('PEXPIRE', key, need) end
  end
end
return 1
"""


class RedisPacer:
    """Limits shared by every process using the same Redis; each booking is one script call.

    Keys: `<namespace>:{<channel>:<account>}:all` (calendar), `...:all:spent` (out-of-order
    bookings), `...:blocked` (the channel's retry-after), `...:chat:<chat_key>` (chat bucket
    and block), `...:sent` and `...:sent:<chat_key>` (the windows); all expire once they carry
    no debt. The account (a Telegram bot's id, a VK community's) keeps two bots that share a
    Redis, production and staging say, from sharing limits the platform gives each its own.
    """

    def __init__(
        self,
        client: Redis,
        limits: Mapping[str, ChannelLimits] = DEFAULT_LIMITS,
        *,
        namespace: str = "leadbot:pace",
        accounts: Mapping[str, str] | None = None,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._accounts = dict(accounts or {})
        self.limits = dict(limits)
        self._namespace = namespace
        self._owns_client = owns_client
        self._reserve = client.register_script(_LUA_RESERVE)
        self._penalize_channel = client.register_script(_LUA_PENALIZE_CHANNEL)
        self._penalize_chat = client.register_script(_LUA_PENALIZE_CHAT)
        self._blocked = client.register_script(_LUA_BLOCKED)
        self._take = client.register_script(_LUA_TAKE)
        self._done = client.register_script(_LUA_DONE)
        self._tickets = itertools.count()
        self._process = uuid.uuid4().hex[:12]  # tickets of other processes never collide

    def _prefix(self, channel: str) -> str:
        account = self._accounts.get(channel)
        tag = channel if account is None else f"{channel}:{account}"
        return f"{self._namespace}:{{{tag}}}"

    async def reserve(self, channel: str, chat_key: str | None, *, group: bool = False) -> float:
        limits = limits_for(self.limits, channel)
        chat_limit = limits.per_group if group else limits.per_chat
        prefix = self._prefix(channel)
        wait = await self._reserve(
            keys=[f"{prefix}:all", f"{prefix}:all:spent", f"{prefix}:chat:{chat_key or ''}"],
            args=[
                repr(limits.overall.rate),
                limits.overall.burst,
                repr(chat_limit.rate),
                chat_limit.burst,
                "0" if chat_key is None else "1",
            ],
        )
        return float(wait.decode() if isinstance(wait, bytes) else wait)

    async def penalize(self, channel: str, chat_key: str | None, seconds: float) -> None:
        limits = limits_for(self.limits, channel)
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

    async def blocked_for(self, channel: str, chat_key: str | None) -> float:
        prefix = self._prefix(channel)
        chat = f"{prefix}:chat:{chat_key or ''}"  # no such hash: the channel alone
        left = await self._blocked(keys=[f"{prefix}:blocked", chat])
        return float(left.decode() if isinstance(left, bytes) else left)

    async def take(
        self, channel: str, chat_key: str | None, *, group: bool = False
    ) -> Place | float:
        limits = limits_for(self.limits, channel)
        chat_limit = limits.per_group if group else limits.per_chat
        prefix = self._prefix(channel)
        size, length = window_of(limits.overall)
        chat_size, chat_length = (0, 0.0) if chat_key is None else window_of(chat_limit)
        windows = [f"{prefix}:sent", f"{prefix}:sent:{chat_key or ''}"]
        ticket = f"{self._process}:{next(self._tickets)}"
        wait = await self._take(
            keys=[f"{prefix}:blocked", f"{prefix}:chat:{chat_key or ''}", *windows],
            args=[size, repr(length), chat_size, repr(chat_length), ticket],
        )
        seconds = float(wait.decode() if isinstance(wait, bytes) else wait)
        if seconds != 0.0:
            return seconds
        lengths = [length, chat_length][: 1 if chat_key is None else 2]
        return Place(channel, (ticket, windows[: len(lengths)], lengths))

    async def done(self, place: Place) -> None:
        ticket, windows, lengths = place.handle
        await self._done(keys=windows, args=[ticket, *(repr(x) for x in lengths)])

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def pacer_for(
    redis_url: str | None,
    limits: Mapping[str, ChannelLimits] = DEFAULT_LIMITS,
    accounts: Mapping[str, str] | None = None,
) -> Pacer:
    """Redis when configured (several processes share the limits of each channel's
    `accounts`), else one process's own."""
    if redis_url:
        client = Redis.from_url(redis_url)
        return RedisPacer(client, limits, accounts=accounts, owns_client=True)
    return MemoryPacer(limits)
