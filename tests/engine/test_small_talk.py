"""Greetings and thanks told apart from questions (bot/engine/small_talk.py)."""

from __future__ import annotations

import pytest

from bot.engine.small_talk import is_thanks, without_greeting


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("Привет", ""),
        ("привет!!! 👋", ""),
        ("Добрый день", ""),
        ("Здравствуйте, бот", ""),
        ("Всем привет", None),  # opens with no greeting: left to the FAQ and the managers
        ("Доброе утро! Сколько стоит аудит?", "сколько стоит аудит"),
        ("привет всем, есть интеграция с 1С?", "есть интеграция с 1с"),
        ("Приветствую", ""),
        ("Hi", ""),
        ("Приветливые менеджеры у вас?", None),  # a word that starts like one is not one
        ("Добрый", None),
        ("Сколько стоит?", None),
    ],
)
def test_a_greeting_is_told_from_what_follows_it(text: str, rest: str | None) -> None:
    assert without_greeting(text) == rest


@pytest.mark.parametrize(
    ("text", "thanks"),
    [
        ("Спасибо", True),
        ("спасибо большое!", True),
        ("Благодарю 🙏", True),
        ("спс", True),
        ("Спасибо, а сколько стоит?", False),
        ("Спасибо за гайд, а есть видео?", False),
        ("Не за что", False),
    ],
)
def test_thanks_alone_is_thanks(text: str, thanks: bool) -> None:
    assert is_thanks(text) is thanks
