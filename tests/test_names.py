"""A name out of what people type at the name question (bot/names.py)."""

from __future__ import annotations

import pytest

from bot.names import person_name


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("Анна", "Анна"),
        ("анна", "Анна"),
        ("меня зовут Анна", "Анна"),
        ("Меня зовут анна петрова!", "Анна Петрова"),
        ("я Олег", "Олег"),
        ("Это Олег.", "Олег"),
        ("АННА ПЕТРОВА", "Анна Петрова"),
        ("анна-мария", "Анна-Мария"),
        ("McKay", "McKay"),
        ("д'Артаньян", "д'Артаньян"),
        ("Иван Петрович Сидоров", "Иван Петрович Сидоров"),
        ("Ян", "Ян"),
        ("my name is John", "John"),
    ],
)
def test_the_name_is_taken_out_and_capitalised(typed: str, name: str) -> None:
    assert person_name(typed) == name


@pytest.mark.parametrize(
    "typed",
    ["Я", "я", "Меня зовут", "не скажу", "нет", "привет", "123", "anna@mail.ru", "А Б", ""],
)
def test_what_is_not_a_name_is_refused(typed: str) -> None:
    assert person_name(typed) is None
