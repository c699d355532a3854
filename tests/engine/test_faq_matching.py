"""FAQ matching: whole words compared by their Snowball stems, a phrase's words next to each
other and in order, the first matching entry wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine.faq import match_faq
from bot.scenario.loader import load_scenario
from bot.scenario.model import FaqEntry
from bot.stems import WordStems

ROOT = Path(__file__).resolve().parents[2]


def entry(*phrases: str) -> FaqEntry:
    return FaqEntry(match=list(phrases), text=phrases[0])


def matched(entries: list[FaqEntry], text: str) -> str | None:
    """The first phrase of the entry that answers `text` (what `faq_answered` records)."""
    found = match_faq(entries, text)
    return None if found is None else found.match[0]


@pytest.fixture(scope="module")
def shipped() -> list[FaqEntry]:
    return load_scenario(ROOT / "scenarios").scenario.faq


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("стоит", "сто"),
        ("стоят", "сто"),
        ("стоимость", "стоимост"),
        ("стоимости", "стоимост"),
        ("цена", "цен"),
        ("цены", "цен"),
        ("центре", "центр"),
        ("сроки", "срок"),
        ("1с", "1с"),
        ("1c", "1c"),
        ("интеграция", "интеграц"),
        ("интеграцию", "интеграц"),
        ("телефония", "телефон"),
        ("телефонию", "телефон"),
        ("телефон", "телефон"),  # the same stem: "мой телефон …" gets the telephony answer
        ("перенести", "перенест"),
        ("перенос", "перенос"),
        ("какая", "как"),  # stop words stem oddly, and that is fine
        ("Ёлка", "елк"),
        ("2024", "2024"),
        ("prices", "price"),
    ],
)
def test_snowball_stems_of_the_words_the_shipped_faq_relies_on(word: str, stem: str) -> None:
    assert WordStems()(word) == (stem,)


def test_phrases_are_stemmed_once_when_the_entry_is_made() -> None:
    faq = FaqEntry(match="Сколько СТОИТ?", text="От 30 000 ₽.")

    assert faq.phrase_stems == (("скольк", "сто"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("сколько стоят ваши услуги", "сколько стоит"),
        ("Сколько стоит внедрение?", "сколько стоит"),
        ("какая цена?", "сколько стоит"),
        ("цены на внедрение", "сколько стоит"),
        ("а по стоимости?", "сколько стоит"),
        ("ваш офис в центре?", None),
        ("есть интеграция с 1С?", "1с"),
        ("интеграция с 1C (латиницей)", "1с"),
        ("подключаете телефонию?", "телефония"),
        ("можно перенести базу из экселя?", "перенос"),
        ("перенесёте клиентов?", "перенос"),
        ("как долго внедряете?", "сроки"),
        ("какие сроки?", "сроки"),
        ("Какая у вас погода?", None),
    ],
)
def test_natural_questions_against_the_shipped_faq(
    shipped: list[FaqEntry], text: str, expected: str | None
) -> None:
    assert matched(shipped, text) == expected


def test_a_phrase_matches_whole_words_only() -> None:
    faq = [entry("цена"), entry("гайд")]

    assert matched(faq, "ваш офис в центре?") is None
    assert matched(faq, "гайдлайн по бренду") is None
    assert matched(faq, "цену скажете?") == "цена"


def test_the_words_of_a_phrase_must_be_consecutive_and_in_order() -> None:
    faq = [entry("сколько стоит")]

    assert matched(faq, "а сколько стоит?") == "сколько стоит"
    assert matched(faq, "стоит ли спрашивать, сколько") is None
    assert matched(faq, "сколько это стоит") is None


def test_punctuation_case_and_yo_are_ignored() -> None:
    faq = [entry("чек-лист"), entry("сколько стоит"), entry("перенесёте")]

    assert matched(faq, "ЧЕК ЛИСТ есть?") == "чек-лист"
    assert matched(faq, "чек-лист!!!") == "чек-лист"
    assert matched(faq, "Сколько... стоит?!") == "сколько стоит"
    assert matched(faq, "перенесете?") == "перенесёте"


def test_latin_and_cyrillic_1c_are_different_words_so_the_faq_lists_both() -> None:
    cyrillic_only = [entry("1с")]
    both = [entry("1с", "1c")]

    assert matched(cyrillic_only, "обмен с 1С") == "1с"
    assert matched(cyrillic_only, "обмен с 1C") is None
    assert matched(both, "обмен с 1C") == "1с"
    assert matched(both, "обмен с 1С") == "1с"


def test_the_first_matching_entry_wins() -> None:
    faq = [entry("интеграция с 1с"), entry("сколько стоит")]

    assert matched(faq, "сколько стоит интеграция с 1С?") == "интеграция с 1с"
    assert matched(faq[::-1], "сколько стоит интеграция с 1С?") == "сколько стоит"


def test_a_phrase_without_words_never_matches() -> None:
    faq = [entry("!!!"), entry("?")]

    assert faq[0].phrase_stems == ((),)
    assert matched(faq, "!!!") is None
    assert matched(faq, "") is None
