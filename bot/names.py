"""A person's name out of what they typed at the name question: "меня зовут анна" is Анна,
"Я" or "не скажу" is no name."""

from __future__ import annotations

import re

# Phrases people put before their name; longest first. Compared on lowercase words.
INTRODUCTIONS = (
    "меня зовут",
    "меня звать",
    "мое имя",
    "моё имя",
    "зовите меня",
    "обращайтесь ко мне",
    "my name is",
    "call me",
    "это",
    "зовут",
    "имя",
    "я",
    "i am",
    "i'm",
    "im",
)
# Words that are answers but not names (a refusal, a pronoun, a greeting).
NOT_NAMES = frozenset(
    (  # noqa: SIM905 - a list of words reads best as words
        "я ты вы мы он она они не нет да ок ok хорошо привет здравствуйте зачем никак аноним "
        "неважно потом скажу хочу имя меня зовут мое моё это name no yes"
    ).split()
)
_WORD = r"[^\W\d_]+(?:['\-][^\W\d_]+)*"
_NAME = re.compile(rf"^{_WORD}(?: {_WORD}){{0,3}}$")
MAX_LENGTH = 64


def person_name(text: str) -> str | None:
    """The name in `text`, each part capitalised unless written in mixed case ("McKay"), or
    None when it holds no name."""
    words = re.sub(r"[!?,.:;—–]+", " ", text).split()
    lowered = [word.casefold() for word in words]
    for phrase in INTRODUCTIONS:
        parts = phrase.split()
        if lowered[: len(parts)] == parts and len(words) > len(parts):
            words, lowered = words[len(parts) :], lowered[len(parts) :]
            break
    name = " ".join(words)
    if not name or len(name) > MAX_LENGTH or not _NAME.match(name):
        return None
    if any(word in NOT_NAMES for word in lowered) or all(len(word) < 2 for word in words):
        return None
    return " ".join(_capitalised(word) for word in words)


def _capitalised(word: str) -> str:
    return "-".join(_part(part) for part in word.split("-"))  # "анна-мария": Анна-Мария


def _part(part: str) -> str:
    if part != part.lower() and part != part.upper():
        return part  # the person's own mixed case: "McKay", "д'Артаньян"
    return part[:1].upper() + part[1:].lower()
