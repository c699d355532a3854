"""Messages by id, worded in the scenario's language. Checks say what is wrong as a message id
with its values (`Say`); the text (bot/scenario/catalogue.py) is chosen once the scenario's
`settings.language` is known, so the marketer reads it in the scenario's own language."""

from __future__ import annotations

import string
from typing import Any, Literal

from bot.scenario.catalogue import CATALOGUE

Language = Literal["ru", "en"]


class Say:
    """A message by its catalogue id and the values it names; `render` words it in a language.
    A value may be another `Say` (a "did you mean" hint), worded in the same language."""

    __slots__ = ("key", "params")

    def __init__(self, key: str, /, **params: Any) -> None:
        if key not in CATALOGUE:
            raise KeyError(f"no message {key!r} in the catalogue")
        self.key = key
        self.params = params

    def render(self, language: Language) -> str:
        english, russian = CATALOGUE[self.key]
        values = {
            name: value.render(language) if isinstance(value, Say) else value
            for name, value in self.params.items()
        }
        return _Wording(language).format(russian if language == "ru" else english, **values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Say) and (self.key, self.params) == (other.key, other.params)

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Say({self.key!r}, **{self.params!r})"


class WordedError(ValueError):
    """A schema validator's complaint as a catalogue message. Pydantic keeps the exception in
    the error it reports, and the loader words it in the scenario's language; elsewhere (a
    `--segment` on the command line) it reads in English."""

    def __init__(self, key: str, /, **params: Any) -> None:
        self.say = Say(key, **params)
        super().__init__(self.say.render("en"))


def language_of(value: object) -> Language:
    """The language of the messages for a scenario whose `settings.language` is `value`:
    English for "en" (or "en-GB"); Russian otherwise, as the market and the default are."""
    if isinstance(value, str) and value.strip().lower().replace("_", "-").split("-")[0] == "en":
        return "en"
    return "ru"


def plural(language: Language, number: int, forms: list[str]) -> str:
    """The form of a noun after `number`: English one|many, Russian one|few|many."""
    if len(forms) == 2:
        return forms[0] if number == 1 else forms[1]
    one, few, many = forms
    if language != "ru":
        return one if number == 1 else many
    tens, units = number % 100, number % 10
    if units == 1 and tens != 11:
        return one
    if 2 <= units <= 4 and not 12 <= tens <= 14:
        return few
    return many


class _Wording(string.Formatter):
    def __init__(self, language: Language) -> None:
        self.language = language

    def format_field(self, value: Any, format_spec: str) -> str:
        if "|" in format_spec:
            return f"{value} {plural(self.language, int(value), format_spec.split('|'))}"
        text = super().format_field(value, format_spec)
        if "," in format_spec and self.language == "ru":
            return text.replace(",", "\u00a0")  # 1 000 000, with spaces that do not break
        return text
