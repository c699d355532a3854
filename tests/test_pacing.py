"""The pacing limiter: MemoryPacer on a fake clock, RedisPacer against a real Redis.

The same properties are checked on both. Redis keeps its own time (TIME), which moves while a
batch of reservations runs, so each expected wait `e` is checked as `e - elapsed <= wait <= e`,
where `elapsed` is how long the batch took (zero on the fake clock, where checks are exact).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from bot.pacing import (
    DEFAULT_LIMITS,
    ChannelLimits,
    Limit,
    MemoryPacer,
    Pacer,
    Place,
    RedisPacer,
    pacer_for,
)
from bot.pacing.windows import SLACK

TOL = 1e-5  # Redis stores times to the microsecond
TG = DEFAULT_LIMITS["telegram"]


class FakeTime:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def redis_pacers(redis_url: str) -> AsyncIterator[Callable[..., RedisPacer]]:
    """Makes RedisPacers, each on its own client (as separate processes would be), sharing a
    namespace of this test's own; its keys are deleted afterwards."""
    namespace = f"leadbot:pace:test-{uuid.uuid4().hex[:12]}"
    clients: list[Redis] = []

    def make(accounts: dict[str, str] | None = None) -> RedisPacer:
        client = Redis.from_url(redis_url)
        clients.append(client)
        return RedisPacer(client, namespace=namespace, accounts=accounts)

    yield make
    cleaner = Redis.from_url(redis_url)
    try:
        keys = [key async for key in cleaner.scan_iter(match=f"{namespace}:*")]
        if keys:
            await cleaner.delete(*keys)
    finally:
        await cleaner.aclose()
        for client in clients:
            await client.aclose()


@dataclass
class Harness:
    pacer: Pacer
    clock: Callable[[], float]  # the fake clock, or wall time when Redis keeps the time

    async def timed(self, calls: Iterable[Awaitable[float]]) -> tuple[list[float], float]:
        """Runs the reservations one after the other; returns waits and the time it took."""
        start = self.clock()
        waits = [await call for call in calls]
        return waits, self.clock() - start

    async def gathered(self, calls: Iterable[Awaitable[float]]) -> tuple[list[float], float]:
        start = self.clock()
        waits = list(await asyncio.gather(*calls))
        return waits, self.clock() - start


@pytest.fixture(params=["memory", "redis"])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        clock = FakeTime()
        return Harness(MemoryPacer(clock=clock), clock)
    make = request.getfixturevalue("redis_pacers")
    return Harness(make(), time.monotonic)


def assert_waits(waits: list[float], expected: list[float], elapsed: float) -> None:
    assert len(waits) == len(expected)
    for k, (wait, want) in enumerate(zip(waits, expected, strict=True)):
        low = max(0.0, want - elapsed) - TOL
        assert low <= wait <= want + TOL, f"#{k}: wait {wait}, expected {want} (-{elapsed})"


# Properties of both implementations


async def test_overall_burst_then_thirty_per_second(harness: Harness) -> None:
    p = harness.pacer
    waits, elapsed = await harness.timed(p.reserve("telegram", f"c{k}") for k in range(100))
    assert waits[:30] == [0.0] * 30
    assert_waits(waits, [max(0.0, (k - 29) / 30) for k in range(100)], elapsed)
    # another channel has its own budget
    assert await p.reserve("vk", "c0") == 0.0


async def test_one_per_second_in_a_private_chat(harness: Harness) -> None:
    waits, elapsed = await harness.timed(harness.pacer.reserve("telegram", "a") for _ in range(5))
    assert_waits(waits, [0.0, 1.0, 2.0, 3.0, 4.0], elapsed)


async def test_twenty_per_minute_in_a_group(harness: Harness) -> None:
    p = harness.pacer
    waits, elapsed = await harness.timed(
        p.reserve("telegram", "-100", group=True) for _ in range(25)
    )
    assert_waits(waits, [0.0] * 20 + [3.0, 6.0, 9.0, 12.0, 15.0], elapsed)


async def test_vk_chat_allows_a_small_burst(harness: Harness) -> None:
    waits, elapsed = await harness.timed(harness.pacer.reserve("vk", "2000001") for _ in range(5))
    assert_waits(waits, [0.0, 0.0, 0.0, 1.0, 2.0], elapsed)


async def test_channel_penalty_holds_everyone_then_resumes_at_the_steady_rate(
    harness: Harness,
) -> None:
    p = harness.pacer
    assert await p.reserve("telegram", "early") == 0.0
    start = harness.clock()
    await p.penalize("telegram", None, 10)
    waits, _ = await harness.timed(p.reserve("telegram", f"c{k}") for k in range(40))
    elapsed = harness.clock() - start  # the penalty's clock started before the batch
    for k, wait in enumerate(waits):
        # no burst after a retry-after: one token per 1/30 s from the end of the penalty
        assert 10 + k / 30 - elapsed - TOL <= wait <= 10 + (k + 1) / 30 + TOL, (k, wait)
    assert await p.reserve("vk", "c0") == 0.0


async def test_chat_penalty_holds_only_that_chat(harness: Harness) -> None:
    p = harness.pacer
    start = harness.clock()
    await p.penalize("telegram", "a", 5)
    wait_a = await p.reserve("telegram", "a")
    elapsed = harness.clock() - start
    assert 5 - elapsed - TOL <= wait_a <= 5 + TOL
    assert await p.reserve("telegram", "b") == 0.0
    assert await p.reserve("telegram", "-100", group=True) == 0.0
    # a shorter penalty never shortens a longer one
    await p.penalize("telegram", "a", 1)
    assert await p.reserve("telegram", "a") >= 6 - (harness.clock() - start) - TOL


async def test_chats_held_to_the_same_moment_then_share_the_channel_rate(
    harness: Harness,
) -> None:
    p = harness.pacer
    start = harness.clock()
    for k in range(100):
        await p.penalize("telegram", f"c{k}", 5)
    waits, _ = await harness.timed(p.reserve("telegram", f"c{k}") for k in range(100))
    elapsed = harness.clock() - start
    for k, wait in enumerate(waits):
        want = 5 + max(0.0, (k - 29) / 30)  # a burst at the end of the penalty, then 30/s
        # On Redis the penalties end `elapsed` apart and the bucket refills meanwhile: a
        # token that refilled in that spread moves a booking up to one slot earlier.
        slot = 1 / 30 if harness.clock is time.monotonic else 0.0
        assert want - 2 * elapsed - slot - TOL <= wait <= want + elapsed + TOL, (k, wait)
    # all those bookings lie ahead: a chat with nothing held back still sends at once
    assert await p.reserve("telegram", "fresh") == 0.0


async def test_both_buckets_hold_and_one_busy_chat_does_not_stall_the_channel(
    harness: Harness,
) -> None:
    p = harness.pacer
    start = harness.clock()
    busy, elapsed = await harness.timed(p.reserve("telegram", "busy") for _ in range(10))
    assert_waits(busy, [float(k) for k in range(10)], elapsed)
    # The busy chat spent one token of the burst now, and for each later message a token
    # issued just within a second before it is sent. The others still get the rest of the
    # burst at once, not a wait behind the busy chat's last message...
    others, _ = await harness.timed(p.reserve("telegram", f"c{k}") for k in range(31))
    assert others[:29] == [0.0] * 29
    # ...and then the tokens after it, but for the one at 1/30 s: the busy chat's message
    # sent at 1 s spends it
    assert_waits(others[29:], [2 / 30, 3 / 30], harness.clock() - start)


async def test_concurrent_reservations_get_distinct_increasing_slots(harness: Harness) -> None:
    p = harness.pacer
    same, elapsed = await harness.gathered(p.reserve("telegram", "a") for _ in range(200))
    assert_waits(sorted(same), [float(k) for k in range(200)], elapsed)
    assert len(set(same)) == 200

    many, elapsed = await harness.gathered(p.reserve("vk", f"c{k}") for k in range(200))
    assert_waits(sorted(many), [max(0.0, (k - 19) / 20) for k in range(200)], elapsed)


async def test_unknown_channel_is_refused(harness: Harness) -> None:
    with pytest.raises(ValueError, match="no pacing limits for channel 'max'"):
        await harness.pacer.reserve("max", "a")
    with pytest.raises(ValueError, match="no pacing limits"):
        await harness.pacer.penalize("max", None, 1)


async def test_configured_limits_are_used(harness: Harness) -> None:
    limits = {"telegram": ChannelLimits(Limit(2, 1), Limit(100, 100), Limit(100, 100))}
    if isinstance(harness.pacer, RedisPacer):
        pacer: Pacer = RedisPacer(
            harness.pacer._client,  # the harness's client and namespace
            limits,
            namespace=harness.pacer._namespace,
        )
    else:
        pacer = MemoryPacer(limits, clock=harness.clock)
    waits, elapsed = await harness.timed(pacer.reserve("telegram", f"c{k}") for k in range(4))
    assert_waits(waits, [0.0, 0.5, 1.0, 1.5], elapsed)


# The windows, at the moment of sending


async def test_take_keeps_the_channel_window_and_the_chat_window(harness: Harness) -> None:
    p = harness.pacer
    second = 1.0 + SLACK  # a window is a little longer than the platform's second
    start = harness.clock()
    assert all([isinstance(await p.take("telegram", f"c{k}"), Place) for k in range(30)])
    wait = await p.take("telegram", "c30")
    elapsed = harness.clock() - start
    assert second - elapsed - TOL <= wait <= second + TOL  # 31 in a second: no place
    assert isinstance(await p.take("vk", "c30"), Place)  # another channel's window is its own
    if isinstance(harness.clock, FakeTime):
        harness.clock.advance(second)
    else:
        await asyncio.sleep(wait)
    assert isinstance(await p.take("telegram", "c30"), Place)
    # c30 just sent: its own window holds it for a second, whatever the channel allows
    wait = await p.take("telegram", "c30")
    assert second - (harness.clock() - start) - TOL <= wait <= second + TOL


async def test_a_place_is_held_from_the_platforms_answer(harness: Harness) -> None:
    """Sends that took 0.4 s to be answered hold their places a window's length from the
    answers: the platform may have counted them as late as that."""
    p = harness.pacer
    second = 1.0 + SLACK
    places = [await p.take("telegram", f"c{k}") for k in range(30)]
    if isinstance(harness.clock, FakeTime):
        harness.clock.advance(0.4)
    else:
        await asyncio.sleep(0.4)
    answered = harness.clock()
    for place in places:
        assert isinstance(place, Place)
        await p.done(place)
    wait = await p.take("telegram", "c30")
    elapsed = harness.clock() - answered
    assert second - elapsed - TOL <= wait <= second + TOL  # from the starts it would be 0.61


async def test_take_refuses_inside_a_retry_after(harness: Harness) -> None:
    p = harness.pacer
    await p.penalize("telegram", "a", 5)
    assert await p.take("telegram", "a") == -1.0
    assert isinstance(await p.take("telegram", "b"), Place)
    await p.penalize("telegram", None, 5)
    assert await p.take("telegram", "b") == -1.0
    assert isinstance(await p.take("vk", "a"), Place)


# RedisPacer: several processes


async def test_two_processes_share_one_budget(redis_pacers: Callable[..., RedisPacer]) -> None:
    first, second = redis_pacers(), redis_pacers()
    calls = [
        (first if k % 2 else second).reserve("telegram", f"c{k}", group=k % 7 == 0)
        for k in range(200)
    ]
    start = time.monotonic()
    waits = await asyncio.gather(*calls)
    elapsed = time.monotonic() - start
    now = [w for w in waits if w == 0.0]
    assert 30 <= len(now) <= 30 + 30 * elapsed + 1
    assert_waits(sorted(waits), [max(0.0, (k - 29) / 30) for k in range(200)], elapsed)


async def test_two_processes_share_one_window(
    redis_pacers: Callable[..., RedisPacer],
) -> None:
    """Bookings let 60 through in the first second of a burst (30 saved up, 30 earned); the
    window at send time lets 30 through, whichever process sends them."""
    first, second = redis_pacers(), redis_pacers()
    start = time.monotonic()
    taken = await asyncio.gather(
        *((first if k % 2 else second).take("telegram", f"c{k}") for k in range(100))
    )
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + SLACK, "too slow to tell one window from the next"
    places = [t for t in taken if isinstance(t, Place)]
    assert len(places) == 30
    assert all(0 < wait <= 1.0 + SLACK + TOL for wait in taken if not isinstance(wait, Place))


async def test_each_bot_has_limits_of_its_own(redis_pacers: Callable[..., RedisPacer]) -> None:
    """Two bots on one Redis (production and staging) each get the platform's limits; two
    processes of one bot share them."""
    bot_a, bot_a_too = redis_pacers({"telegram": "1001"}), redis_pacers({"telegram": "1001"})
    bot_b = redis_pacers({"telegram": "2002"})
    assert all([isinstance(await bot_a.take("telegram", f"c{k}"), Place) for k in range(30)])
    assert not isinstance(await bot_a_too.take("telegram", "c30"), Place)
    assert all([isinstance(await bot_b.take("telegram", f"c{k}"), Place) for k in range(30)])
    assert await bot_b.reserve("telegram", "x") == 0.0  # a full bucket of its own
    assert "{telegram:2002}" in bot_b._prefix("telegram")


async def test_redis_keys_are_namespaced_and_expire(
    redis_pacers: Callable[..., RedisPacer], redis_url: str
) -> None:
    pacer = redis_pacers()
    for k in range(3):
        await pacer.reserve("telegram", "a")
        await pacer.reserve("telegram", f"c{k}")
    await pacer.penalize("vk", "b", 2)
    await pacer.take("telegram", "a")
    namespace = pacer._namespace
    client = Redis.from_url(redis_url)
    try:
        keys = sorted([key.decode() async for key in client.scan_iter(match=f"{namespace}:*")])
        assert f"{namespace}:{{telegram}}:all" in keys
        assert f"{namespace}:{{telegram}}:all:spent" in keys  # "a" books seconds ahead
        assert f"{namespace}:{{telegram}}:chat:a" in keys
        assert f"{namespace}:{{vk}}:chat:b" in keys
        assert f"{namespace}:{{telegram}}:sent" in keys
        assert f"{namespace}:{{telegram}}:sent:a" in keys
        for key in keys:
            # a window waits for the answers of sends in flight (a minute at most)
            limit = 62_000 if ":sent" in key else 3_000
            assert 0 < await client.pttl(key) <= limit, key
    finally:
        await client.aclose()


# MemoryPacer: time passing


async def test_penalties_end() -> None:
    clock = FakeTime()
    pacer = MemoryPacer(clock=clock)
    await pacer.penalize("telegram", "a", 5)
    await pacer.penalize("telegram", None, 2)
    assert await pacer.reserve("telegram", "b") == pytest.approx(2.0)
    clock.advance(5)
    assert await pacer.reserve("telegram", "a") == 0.0
    clock.advance(1)
    waits = [await pacer.reserve("telegram", f"c{k}") for k in range(31)]
    assert waits[:30] == [0.0] * 30  # a full burst again, the penalty long over
    assert waits[30] == pytest.approx(1 / 30)


async def test_zero_or_negative_penalty_is_ignored() -> None:
    pacer = MemoryPacer(clock=FakeTime())
    await pacer.penalize("telegram", None, 0)
    await pacer.penalize("telegram", "a", -3)
    assert await pacer.reserve("telegram", "a") == 0.0


async def test_waits_shrink_as_time_passes() -> None:
    clock = FakeTime()
    pacer = MemoryPacer(clock=clock)
    for _ in range(3):
        await pacer.reserve("telegram", "a")  # booked at +0, +1, +2
    clock.advance(1.25)
    assert await pacer.reserve("telegram", "a") == pytest.approx(1.75)


async def test_memory_stays_bounded() -> None:
    clock = FakeTime()
    pacer = MemoryPacer(clock=clock)
    for k in range(1000):
        await pacer.reserve("telegram", f"c{k}")
        await pacer.reserve("telegram", "busy")
        clock.advance(0.01)
    assert len(pacer._chats) == 1001
    assert pacer._channels["telegram"].spent  # the busy chat's messages, booked ahead
    clock.advance(MemoryPacer.SWEEP_EVERY + 1000)
    assert await pacer.reserve("telegram", "late") == 0.0
    assert len(pacer._chats) == 1
    assert pacer._channels["telegram"].spent == set()


async def test_console_is_never_slowed() -> None:
    pacer = MemoryPacer(clock=FakeTime())
    waits = [await pacer.reserve("console", "me") for _ in range(1000)]
    assert waits == [0.0] * 1000


def _max_excess(moments: list[float], limit: Limit) -> float:
    """How far sorted send moments exceed the bucket: the largest
    `count(i..j) - rate * (t_j - t_i)` over all windows, compared with `burst`."""
    lowest = float("inf")
    worst = 0.0
    for k, moment in enumerate(sorted(moments)):
        level = k - limit.rate * moment
        lowest = min(lowest, level)
        worst = max(worst, level - lowest + 1)
    return worst


async def test_random_traffic_stays_within_every_bucket() -> None:
    rng = random.Random(20261123)
    clock = FakeTime()
    pacer = MemoryPacer(clock=clock)
    overall: list[float] = []
    per_chat: dict[str, list[float]] = {}
    blocked: dict[str | None, float] = {}
    groups = {"g1", "g2"}
    chats = [f"c{k}" for k in range(40)] + sorted(groups)
    halted = 0.0  # seconds of channel penalties
    for _ in range(3000):
        clock.advance(rng.expovariate(60))  # ~60 requests/s offered: twice the limit
        if rng.random() < 0.003:
            target = rng.choice([None, *chats])
            seconds = rng.uniform(0.5, 5)
            await pacer.penalize("telegram", target, seconds)
            if target is None:
                halted += seconds
            blocked[target] = max(blocked.get(target, 0.0), clock() + seconds)
        chat = rng.choice(chats)
        moment = clock() + await pacer.reserve("telegram", chat, group=chat in groups)
        assert moment >= blocked.get(None, 0.0) - 1e-9
        assert moment >= blocked.get(chat, 0.0) - 1e-9
        overall.append(moment)
        per_chat.setdefault(chat, []).append(moment)
    # discrete tokens may let one more message into a window than a continuous bucket
    assert _max_excess(overall, TG.overall) <= TG.overall.burst + 1 + 1e-6
    for chat, moments in per_chat.items():
        limit = TG.per_group if chat in groups else TG.per_chat
        assert _max_excess(moments, limit) <= limit.burst + 1e-6, chat
    # and the channel was kept busy, despite chats held back booking seconds ahead: the
    # private chats' messages (groups lag behind at 20/min) were all out about when 30/s
    # could have sent every message, plus the channel's penalties (105 s here; one TAT for
    # the channel, debited at each booked moment, would take 225 s)
    private = [m for chat, ms in per_chat.items() if chat not in groups for m in ms]
    assert max(private) - min(overall) < len(overall) / 30 * 1.1 + halted


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="rate"):
        Limit(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        Limit(rate=1, burst=0)
    assert TG.per_group.rate == pytest.approx(20 / 60)


async def test_pacer_for_picks_the_backend() -> None:
    assert isinstance(pacer_for(None), MemoryPacer)
    pacer = pacer_for("redis://127.0.0.1:6379/15")  # connects lazily
    assert isinstance(pacer, RedisPacer)
    await pacer.aclose()
