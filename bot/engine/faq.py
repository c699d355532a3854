"""Matching free text against the scenario's FAQ, tolerant of Russian word endings."""

from __future__ import annotations

import re

from bot.scenario.model import FaqEntry

_WORD = re.compile(r"[\w]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold().replace("ё", "е"))


def _stem(word: str) -> str:
    # Crude but predictable: drop the ending so "цена", "цены", "цену" meet at "цен".
    if len(word) <= 3:
        return word
    return word[:-1] if len(word) <= 5 else word[:-2]


def _matches(phrase: str, words: list[str]) -> bool:
    stems = [_stem(w) for w in _words(phrase)]
    if not stems:
        return False
    for start in range(len(words) - len(stems) + 1):
        if all(words[start + i].startswith(stem) for i, stem in enumerate(stems)):
            return True
    return False


def match_faq(entries: list[FaqEntry], text: str) -> FaqEntry | None:
    words = _words(text)
    for entry in entries:
        if any(_matches(phrase, words) for phrase in entry.match):
            return entry
    return None
