"""Dates typed in a chat: spellings, rejections, stored forms and yearly anniversaries."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.dates import LooseDate, from_iso, parse_date

TODAY = date(2026, 3, 15)
LATEST_YEAR = TODAY.year + 100  # the furthest year a person may type


# ---- spellings ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.05", (12, 5, None)),
        ("12.05.1990", (12, 5, 1990)),
        ("12.05.90", (12, 5, 1990)),
        ("1.5", (1, 5, None)),
        ("01/05/1990", (1, 5, 1990)),
        ("12-05-1990", (12, 5, 1990)),
        ("12 05 1990", (12, 5, 1990)),
        ("12 05", (12, 5, None)),
        ("12. 05. 1990", (12, 5, 1990)),
        ("1990-05-12", (12, 5, 1990)),
        ("05.12", (5, 12, None)),  # day first: 5 December, never 12 May
        ("12 мая", (12, 5, None)),
        ("12 мая 1990", (12, 5, 1990)),
        ("12 мая 1990 г.", (12, 5, 1990)),
        ("12 мая 1990 года", (12, 5, 1990)),
        ("12 мая 1990 год", (12, 5, 1990)),
        ("12 мая 90", (12, 5, 1990)),
        ("12 май", (12, 5, None)),
        ("12мая", (12, 5, None)),
        ("12 янв", (12, 1, None)),
        ("12 янв.", (12, 1, None)),
        ("12 января", (12, 1, None)),
        ("3 сент", (3, 9, None)),
        ("3 сент. 2001", (3, 9, 2001)),
        ("3 сентября 2001г", (3, 9, 2001)),
        ("3 Сентября 2001 Г.", (3, 9, 2001)),
        ("  12   МАЯ  ", (12, 5, None)),
        ("12.05.", (12, 5, None)),
        ("«12.05.1990»!", (12, 5, 1990)),
        ("29.02", (29, 2, None)),  # valid without a year: it happens in leap years
        ("29.02.2024", (29, 2, 2024)),
        ("29.02.2000", (29, 2, 2000)),
        ("1.1.1900", (1, 1, 1900)),
        ("31.12.2126", (31, 12, 2126)),  # exactly 100 years ahead of TODAY's year
        # two-digit years: up to this year's two digits is this century, above is the last one
        ("12.05.00", (12, 5, 2000)),
        ("12.05.26", (12, 5, 2026)),
        ("12.05.27", (12, 5, 1927)),
        ("12.05.99", (12, 5, 1999)),
    ],
)
def test_spellings(text: str, expected: tuple[int, int, int | None]) -> None:
    parsed = parse_date(text, TODAY)
    assert parsed is not None
    assert (parsed.day, parsed.month, parsed.year) == expected


MONTHS = [
    ("января", "январь", ["янв"]),
    ("февраля", "февраль", ["фев", "февр"]),
    ("марта", "март", ["мар"]),
    ("апреля", "апрель", ["апр"]),
    ("мая", "май", []),
    ("июня", "июнь", ["июн"]),
    ("июля", "июль", ["июл"]),
    ("августа", "август", ["авг"]),
    ("сентября", "сентябрь", ["сен", "сент"]),
    ("октября", "октябрь", ["окт"]),
    ("ноября", "ноябрь", ["ноя", "нояб"]),
    ("декабря", "декабрь", ["дек"]),
]


@pytest.mark.parametrize(("month", "names"), list(enumerate(MONTHS, 1)))
def test_every_month_name(month: int, names: tuple[str, str, list[str]]) -> None:
    genitive, nominative, short = names
    for name in [genitive, nominative, *short, *(f"{s}." for s in short)]:
        assert parse_date(f"7 {name}", TODAY) == LooseDate(month, 7), name
        assert parse_date(f"7 {name.upper()} 1985", TODAY) == LooseDate(month, 7, 1985), name
    assert LooseDate(month, 7).shown() == f"7 {genitive}"


def test_relative_words_use_today() -> None:
    assert parse_date("сегодня", TODAY) == LooseDate(3, 15, 2026)
    assert parse_date("Завтра!", TODAY) == LooseDate(3, 16, 2026)
    assert parse_date(" СЕГОДНЯ. ", date(2024, 2, 29)) == LooseDate(2, 29, 2024)
    assert parse_date("завтра", date(2026, 12, 31)) == LooseDate(1, 1, 2027)


def test_two_digit_years_follow_today() -> None:
    assert parse_date("12.05.30", date(2031, 1, 1)) == LooseDate(5, 12, 2030)
    assert parse_date("12.05.30", date(2029, 12, 31)) == LooseDate(5, 12, 1930)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "123",
        "не скажу",
        "завтра вечером позвоню",
        "послезавтра",
        "31.02",
        "30.02",
        "31.04",
        "29.02.1991",
        "29.02.1900",  # not a leap year: divisible by 100
        "0.5",
        "32.01",
        "12.13",
        "12.0",
        "12.00.1990",
        "1990-13-01",
        "1990-02-30",
        "12.05.1899",
        "12.05.2127",  # more than 100 years ahead
        "12.05.199",
        "12.05.19900",
        "12.05-1990",  # mixed separators
        "1990.05.12",
        "12 мая г.",  # a year word without a year
        "12.05 года",
        "12 мартобря",
        "12 марш",
        "12 may",
        "мая",
        "май 12",
        "32 мая",
        "12 мая 1990 года завтра",
        "12.05.1990 13.05.1990",
        "с 12 по 15 мая",
        "1.1.1.1.1.1",
        "12.05.1990 " * 10,
        "1" * 10_000,
        "١٢.٠٥.١٩٩٠",  # Arabic-Indic digits are not what a Russian speaker types
    ],
)
def test_rejections(text: str) -> None:
    assert parse_date(text, TODAY) is None


@given(st.text(max_size=60))
@settings(max_examples=200)
def test_any_text_gives_a_date_or_none(text: str) -> None:
    assert parse_date(text, TODAY) is None or isinstance(parse_date(text, TODAY), LooseDate)
    assert from_iso(text) is None or isinstance(from_iso(text), LooseDate)


@given(st.integers(0, 32), st.integers(0, 13), st.integers(1890, LATEST_YEAR + 10))
@settings(max_examples=200)
def test_dotted_dates_valid_exactly_when_the_calendar_has_them(
    day: int, month: int, year: int
) -> None:
    try:
        real: date | None = date(year, month, day)
    except ValueError:
        real = None
    in_range = 1900 <= year <= LATEST_YEAR
    expected = LooseDate(month, day, year) if real is not None and in_range else None
    assert parse_date(f"{day}.{month}.{year}", TODAY) == expected


# ---- stored and shown forms ----


def test_iso_and_shown() -> None:
    assert LooseDate(5, 12, 1990).iso() == "1990-05-12"
    assert LooseDate(5, 12).iso() == "--05-12"
    assert LooseDate(5, 12, 1990).shown() == "12 мая 1990"
    assert LooseDate(5, 12).shown() == "12 мая"
    assert LooseDate(1, 1, 1900).iso() == "1900-01-01"


@pytest.mark.parametrize(
    ("month", "day", "year"),
    [(2, 30, None), (13, 1, None), (0, 1, 2000), (2, 29, 2023), (4, 31, None), (5, 0, None),
     (5, 12, 1899)],
)  # fmt: skip
def test_impossible_dates_cannot_be_built(month: int, day: int, year: int | None) -> None:
    with pytest.raises(ValueError, match="no such date"):
        LooseDate(month, day, year)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1990-05-12", LooseDate(5, 12, 1990)),
        ("--05-12", LooseDate(5, 12)),
        ("--02-29", LooseDate(2, 29)),
        ("2027-03-01", LooseDate(3, 1, 2027)),
        ("2027-03-01T10:00:00Z", LooseDate(3, 1, 2027)),
        ("2027-03-01T23:30:00.123+03:00", LooseDate(3, 1, 2027)),  # the day as written
        ("2027-03-01T10:00:00-0500", LooseDate(3, 1, 2027)),
        ("2027-03-01 10:00", LooseDate(3, 1, 2027)),
        ("01.03.2027", LooseDate(3, 1, 2027)),
        ("01.03.2027 10:00", LooseDate(3, 1, 2027)),
        ("1 марта 2027", LooseDate(3, 1, 2027)),
        ("2300-01-01", LooseDate(1, 1, 2300)),  # stored data has no "too far ahead"
    ],
)
def test_from_iso(value: str, expected: LooseDate) -> None:
    assert from_iso(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "--13-01",
        "--02-30",
        "--5-12",
        "сегодня",
        "завтра",
        "2027-02-30",
        "2027-03-01T25",
        "2027-03-01 ночью",
        "01.03.27",  # a two-digit year needs a clock to pick the century
        "1899-12-31",
        "garbage",
    ],
)
def test_from_iso_rejects(value: str) -> None:
    assert from_iso(value) is None


@pytest.mark.parametrize("value", [None, 20270301, 1.5, ["2027-03-01"]])
def test_from_iso_ignores_values_that_are_not_text(value: object) -> None:
    assert from_iso(value) is None  # type: ignore[arg-type]  # untyped JSON payloads


def _loose(day: date, keep_year: bool) -> LooseDate:
    return LooseDate(day.month, day.day, day.year if keep_year else None)


typed_dates = st.builds(
    _loose, st.dates(date(1900, 1, 1), date(LATEST_YEAR, 12, 31)), st.booleans()
)
any_dates = st.builds(_loose, st.dates(date(1900, 1, 1), date.max), st.booleans())


@given(typed_dates)
@settings(max_examples=200)
def test_shown_and_dotted_spellings_parse_back(loose: LooseDate) -> None:
    assert parse_date(loose.shown(), TODAY) == loose
    dotted = f"{loose.day:02d}.{loose.month:02d}"
    if loose.year is not None:
        dotted += f".{loose.year}"
    assert parse_date(dotted, TODAY) == loose


@given(any_dates)
@settings(max_examples=200)
def test_iso_round_trip(loose: LooseDate) -> None:
    assert from_iso(loose.iso()) == loose


# ---- anniversaries ----


def stepped(loose: LooseDate, start: date) -> date:
    """The anniversary found by walking the calendar one day at a time."""
    day = start
    while True:
        if (day.month, day.day) == (loose.month, loose.day):
            return day
        last_of_february = day.month == 2 and (day + timedelta(days=1)).month == 3
        if (loose.month, loose.day) == (2, 29) and last_of_february:
            return day  # 28 February in a common year, 29 in a leap year
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("loose", "start", "expected"),
    [
        (LooseDate(1, 1), date(2026, 12, 31), date(2027, 1, 1)),
        (LooseDate(12, 31, 1990), date(2027, 1, 1), date(2027, 12, 31)),
        (LooseDate(12, 31), date(2026, 12, 31), date(2026, 12, 31)),
        (LooseDate(5, 12, 1990), date(2026, 5, 12), date(2026, 5, 12)),  # the day itself
        (LooseDate(5, 12, 1990), date(2026, 5, 13), date(2027, 5, 12)),
        (LooseDate(5, 12, 2030), date(2026, 1, 1), date(2026, 5, 12)),  # the year is ignored
        (LooseDate(2, 29), date(2027, 1, 10), date(2027, 2, 28)),
        (LooseDate(2, 29, 2000), date(2027, 2, 28), date(2027, 2, 28)),
        (LooseDate(2, 29), date(2027, 3, 1), date(2028, 2, 29)),
        (LooseDate(2, 29), date(2028, 2, 28), date(2028, 2, 29)),  # not the 28th in a leap year
        (LooseDate(2, 29), date(2028, 2, 29), date(2028, 2, 29)),
        (LooseDate(2, 29), date(2100, 1, 1), date(2100, 2, 28)),  # 2100 is not a leap year
        (LooseDate(2, 28), date(2028, 2, 28), date(2028, 2, 28)),
    ],
)
def test_next_on_or_after(loose: LooseDate, start: date, expected: date) -> None:
    assert loose.next_on_or_after(start) == expected
    assert stepped(loose, start) == expected  # the reference agrees with the table


@given(any_dates, st.dates(date(1900, 1, 1), date(9998, 12, 31)))
@settings(max_examples=200)
def test_next_on_or_after_matches_walking_the_calendar(loose: LooseDate, start: date) -> None:
    assert loose.next_on_or_after(start) == stepped(loose, start)
