"""Greetings and thanks in free text: "привет" is not a question for the FAQ or the managers,
and "спасибо" needs a polite word, not "I did not understand"."""

from __future__ import annotations

import re

# Whole words, lowercase, "ё" as "е"; longest first, so "добрый день" wins over "добрый".
GREETINGS = (
    "доброго времени суток",
    "добрый день",
    "добрый вечер",
    "доброе утро",
    "доброй ночи",
    "здравствуйте",
    "здравствуй",
    "здрасьте",
    "приветствую",
    "приветики",
    "привет",
    "хай",
    "хелло",
    "салют",
    "hello",
    "hi",
    "hey",
)
THANKS = (
    "спасибо большое",
    "большое спасибо",
    "огромное спасибо",
    "спасибо",
    "спасибки",
    "спс",
    "благодарю",
    "благодарим",
    "thanks",
    "thank you",
)
_ADDRESS = ("всем", "бот", "ребята", "друзья")  # "привет всем", "здравствуйте, бот"
_WORDS = re.compile(r"[a-zа-я0-9]+")


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower().replace("ё", "е"))


def _leading(words: list[str], phrases: tuple[str, ...]) -> int:
    """How many leading words are one of `phrases`; 0 when none."""
    for phrase in phrases:
        parts = phrase.split()
        if words[: len(parts)] == parts:
            return len(parts)
    return 0


def without_greeting(text: str) -> str | None:
    """The text after a greeting it opens with ("привет, сколько стоит?" → "сколько
    стоит?"); "" for a greeting alone; None when it opens with none."""
    words = _words(text)
    taken = _leading(words, GREETINGS)
    if not taken:
        return None
    rest = words[taken:]
    if rest[:1] and rest[0] in _ADDRESS:
        rest = rest[1:]
    return " ".join(rest)


def is_thanks(text: str) -> bool:
    """Thanks and nothing else ("спасибо!", "Большое спасибо 🙏")."""
    words = _words(text)
    taken = _leading(words, THANKS)
    return bool(taken) and len(words) == taken
