"""/stop and /delete asked in plain words, as people write them (VK has no command menu)."""

from __future__ import annotations

import pytest

from bot.engine.funnel import Funnel
from bot.engine.plain_commands import asks_to_delete, asks_to_stop
from storage.database import Database
from tests.prospect import Prospect, snapshot


@pytest.mark.parametrize(
    "text",
    ["Стоп", "стоп!", "Отпишите меня от рассылки, пожалуйста", "больше не присылайте", "STOP"],
)
def test_a_request_to_stop_is_understood(text: str) -> None:
    assert asks_to_stop(text)
    assert not asks_to_delete(text)


@pytest.mark.parametrize("text", ["Удалите мои данные", "удалите, пожалуйста, мои данные."])
def test_a_request_to_erase_is_understood(text: str) -> None:
    assert asks_to_delete(text)


@pytest.mark.parametrize(
    "text",
    ["стоп, а сколько стоит?", "стоимость", "не присылайте гайд, пришлите КП", "удалите заявку"],
)
def test_a_message_that_says_more_is_not_a_command(text: str) -> None:
    assert not asks_to_stop(text)
    assert not asks_to_delete(text)


async def test_plain_words_do_what_the_commands_do(funnel: Funnel, sqlite_db: Database) -> None:
    anna = Prospect(funnel)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("anna@company.ru")

    await anna.say("Отпишите меня от рассылки, пожалуйста")
    assert anna.texts() == funnel.scenarios.current.scenario.messages.unsubscribed
    state = await snapshot(sqlite_db, "1001")
    assert state.stage == "unsubscribed"
    assert "marketing" not in state.consents

    await anna.say("удалите мои данные")
    assert anna.labels() == ["Да, удалить", "Отмена"]
    await anna.press("Да, удалить")
    assert "ваши данные удалены" in anna.texts()
