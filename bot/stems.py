"""Free text as the stems of its words, so that endings do not matter when a phrase is looked
for: "цена", "цены" and "цену" all become "цен", while "центре" stays "центр"."""

from __future__ import annotations

import re

import snowballstemmer

_WORD = re.compile(r"[^\W_]+")  # letters and digits; spaces, punctuation and "_" part words
_CYRILLIC = re.compile(r"[а-я]")
_LATIN = re.compile(r"[a-z]")


class WordStems:
    """Snowball stemmers: Russian for words with Cyrillic letters, English for words with
    Latin ones; digits and other scripts stay as written. A stemmer keeps state while it
    works, so each user makes its own instance (it costs microseconds) instead of sharing one
    for the whole process."""

    def __init__(self) -> None:
        self._russian = snowballstemmer.stemmer("russian")
        self._english = snowballstemmer.stemmer("english")

    def __call__(self, text: str) -> tuple[str, ...]:
        """The stems of the words of `text`, in order; case does not matter, "ё" is "е"."""
        words = _WORD.findall(text.casefold().replace("ё", "е"))
        stems = {word: self._stem(word) for word in set(words)}  # a long text repeats words
        return tuple(stems[word] for word in words)

    def _stem(self, word: str) -> str:
        if _CYRILLIC.search(word):
            return self._russian.stemWord(word)
        if _LATIN.search(word):
            return self._english.stemWord(word)
        return word
