"""Matching free text against the scenario's FAQ: whole words, endings ignored (Snowball
stems, see bot/stems.py), a phrase's words next to each other and in its order."""

from __future__ import annotations

from bot.scenario.model import FaqEntry
from bot.stems import WordStems


def match_faq(entries: list[FaqEntry], text: str) -> FaqEntry | None:
    """The first entry with a phrase that occurs in `text`, or None."""
    words = WordStems()(text)
    for entry in entries:
        if any(_occurs(phrase, words) for phrase in entry.phrase_stems):
            return entry
    return None


def _occurs(phrase: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """`phrase` as consecutive words of `words`; a phrase of no words never occurs."""
    size = len(phrase)
    return size > 0 and any(
        words[start : start + size] == phrase for start in range(len(words) - size + 1)
    )
