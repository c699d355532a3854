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
the moments sends really leave (windows.py); a slot that would break it waits.

Right before a send, `take` has the last word: it tells that a retry-after arrived after the
slot was booked (the slot is revoked and the sender books again), or that the window has no
place yet, or takes the place; `done` holds that place from the platform's answer on.

`MemoryPacer` (memory.py) serves one process; `RedisPacer` (shared.py) runs the same
algorithm, and keeps the same windows, as Lua scripts on the Redis server, on the server's
clock, so several processes share one set of limits and no window holds more than a limit
allows whichever process sent.
"""

from bot.pacing.limits import DEFAULT_LIMITS, ChannelLimits, Limit, Pacer, Place, clearance
from bot.pacing.memory import MemoryPacer
from bot.pacing.shared import RedisPacer, pacer_for

__all__ = [
    "DEFAULT_LIMITS",
    "ChannelLimits",
    "Limit",
    "MemoryPacer",
    "Pacer",
    "Place",
    "RedisPacer",
    "clearance",
    "pacer_for",
]
