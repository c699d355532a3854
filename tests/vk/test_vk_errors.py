"""VK's failures driven through the real VK side (vkbottle, the handlers, the sender and the
delivery worker) against the VK API fake, which keeps VK's limits by default: error 6 past 20
calls a second, 943 for a message without an intent past 24 hours, and any error on demand.
Each is mapped to what a user notices: a reply still arrives, a throttled message is late but
never lost, a refused one is failed at once with VK's reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, select, update

from bot.delivery.outcomes import MAX_ATTEMPTS
from bot.handoff import RELAY
from storage.models import Identity, OutboxRow
from tests.delivery.harness import fake_clock_worker
from tests.e2e.vk_api import VkApiFake
from tests.prospect import snapshot
from tests.vk.test_reply_random_id import START, VkBot, message_new, vk_bot

MENU = "Выберите, с чего начнём"


@pytest.fixture
async def vk() -> AsyncIterator[VkApiFake]:
    async with VkApiFake() as fake:  # VK's limits, as the fake keeps them by default
        yield fake


@pytest.fixture
async def bot(vk: VkApiFake, tmp_path: Path) -> AsyncIterator[VkBot]:
    async with vk_bot(vk, tmp_path / "leads.db") as running:
        waits: list[float] = []

        async def sleep(seconds: float) -> None:  # the reply's waits, without the wall clock
            waits.append(seconds)

        running.funnel.sleep = sleep
        running.waits = waits  # type: ignore[attr-defined]
        yield running


@pytest.mark.parametrize(
    ("code", "waited"),
    [(6, 1.0), (1, 1.0), (10, 1.0)],
    ids=["too many requests", "unknown error", "internal server error"],
)
async def test_a_reply_vk_fails_once_still_arrives_once(
    vk: VkApiFake, bot: VkBot, code: int, waited: float
) -> None:
    user = vk.new_user_id()
    vk.fail("messages.send", code, peer_id=user)

    await bot.feed(message_new(vk, user, "Начать", payload=START))

    [menu] = vk.sent(user)
    assert MENU in menu.text
    assert [c.error_code for c in vk.calls("messages.send") if not c.ok] == [code]
    assert bot.waits == [waited]  # type: ignore[attr-defined]


async def test_thirty_people_at_once_all_get_their_menu_within_vks_limit(
    vk: VkApiFake, bot: VkBot
) -> None:
    users = [vk.new_user_id() for _ in range(30)]

    await asyncio.gather(
        *(bot.feed(message_new(vk, user, "Начать", payload=START)) for user in users)
    )

    assert [len(vk.sent(user)) for user in users] == [1] * 30
    # The bot keeps under VK's 20 calls a second itself: VK never had to refuse one.
    assert [c for c in vk.calls() if c.error_code == 6] == []


async def queue_relay(bot: VkBot, user: int, text: str) -> int:
    """A manager's answer queued for the person (the delivery worker sends it)."""
    lead_id = (await snapshot(bot.funnel.db, str(user), "vk")).lead_id
    now = bot.funnel.clock.now()
    async with bot.funnel.db.unit_of_work() as uow:
        row = await uow.outbox.enqueue(
            idempotency_key=f"relay:{user}",
            channel="vk",
            kind=RELAY,
            due_at=now,
            now=now,
            lead_id=lead_id,
            payload={"text": text},
        )
        await uow.commit()
    assert row is not None
    return row


async def outbox_row(bot: VkBot, row_id: int) -> Row[Any]:
    """The row as stored now: status, attempts, due_at, last_error."""
    query = select(
        OutboxRow.status, OutboxRow.attempts, OutboxRow.due_at, OutboxRow.last_error
    ).where(OutboxRow.id == row_id)
    async with bot.funnel.db.unit_of_work() as uow:
        return (await uow.session.execute(query)).one()


async def test_vks_flood_control_delays_a_message_but_never_fails_it(
    vk: VkApiFake, bot: VkBot
) -> None:
    user = vk.new_user_id()
    await bot.feed(message_new(vk, user, "Начать", payload=START))
    row_id = await queue_relay(bot, user, "Ответ менеджера: да, работаем.")
    throttled = MAX_ATTEMPTS + 2  # more times than any failure is tried
    vk.fail("messages.send", 9, peer_id=user, times=throttled)
    worker = fake_clock_worker(bot.funnel, {"vk": bot.sender})
    started = bot.funnel.clock.now()

    for _ in range(throttled + 1):
        await worker.drain()
        row = await outbox_row(bot, row_id)
        if row.status == "sent":
            break
        assert (row.status, row.attempts) == ("pending", 0)  # a wait is not a failed attempt
        assert row.due_at >= bot.funnel.clock.now() + timedelta(seconds=59)
        bot.funnel.clock.advance(row.due_at - bot.funnel.clock.now())

    assert row.status == "sent"
    assert bot.funnel.clock.now() - started >= timedelta(minutes=throttled)
    assert [m.text for m in vk.sent(user)][-1] == "Ответ менеджера: да, работаем."


async def test_a_message_vk_refuses_for_its_intent_fails_at_once_with_the_reason(
    vk: VkApiFake, bot: VkBot
) -> None:
    user = vk.new_user_id()
    await bot.feed(message_new(vk, user, "Начать", payload=START))
    # VK counts 24 hours from the person's last message; the bot's record of it is newer (a
    # clock skew, a message VK did not count): the bot sends without an intent.
    vk.age_messages(user, hours=25)
    row_id = await queue_relay(bot, user, "Ответ менеджера.")
    worker = fake_clock_worker(bot.funnel, {"vk": bot.sender})

    await worker.drain()
    bot.funnel.clock.advance(timedelta(days=1))
    await worker.drain()

    row = await outbox_row(bot, row_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None
    assert "VK error 943" in row.last_error
    assert len(vk.calls("messages.send")) == 2  # the menu, and this one once


async def test_past_24_hours_a_managers_answer_goes_with_an_intent(
    vk: VkApiFake, bot: VkBot
) -> None:
    user = vk.new_user_id()
    await bot.feed(message_new(vk, user, "Начать", payload=START))
    vk.age_messages(user, hours=25)
    async with bot.funnel.db.unit_of_work() as uow:  # the bot counts the same 24 hours
        await uow.session.execute(
            update(Identity)
            .where(Identity.external_id == str(user))
            .values(last_seen_at=bot.funnel.clock.now() - timedelta(hours=25))
        )
        await uow.commit()
    row_id = await queue_relay(bot, user, "Ответ менеджера.")

    await fake_clock_worker(bot.funnel, {"vk": bot.sender}).drain()

    assert (await outbox_row(bot, row_id)).status == "sent"
    assert vk.last_sent(user).intent == "customer_support"
