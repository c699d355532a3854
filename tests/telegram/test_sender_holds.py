"""Telegram's retry_after holds the chat, whoever sends next: the delivery worker, or a reply
handled in another task. A send inside it would be refused again and count against the bot."""

from __future__ import annotations

import pytest
from aiogram.methods import SendMessage

from bot.messages import Outgoing
from bot.transport import RetryLater
from tests.telegram.conftest import Harness
from tests.telegram.mocked_bot import sent_texts


async def test_a_retry_after_holds_every_send_to_that_chat_until_it_ends(
    telegram: Harness,
) -> None:
    sender = telegram.sender
    telegram.session.fail_next(SendMessage, 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(RetryLater):
        await sender.send("1001", Outgoing("Первое"))

    # The worker's next send to that chat is given back at once, without a request.
    with pytest.raises(RetryLater) as held:
        await sender.send("1001", Outgoing("Второе"))
    await sender.send("2002", Outgoing("Другому"))  # another chat is not held
    # A reply waits the rest of the retry_after out, then goes (no second refusal).
    await sender.send_now(1001, [Outgoing("Ответ")])

    assert held.value.seconds == 3
    assert sent_texts(telegram.session, 1001) == ["Первое", "Ответ"]  # the refused one, then
    assert sent_texts(telegram.session, 2002) == ["Другому"]
    assert telegram.waits.seconds == [3]
