"""The chart primitives: each renders an inline SVG for the page and a PNG for the chat, with
Cyrillic labels drawn in glyphs that have them; heat-map cells without a value stay blank;
user labels never turn into matplotlib's math markup."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import pytest
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font

from bot.analytics import charts

PNG = b"\x89PNG\r\n\x1a\n"

# Each primitive with Cyrillic in its title and labels; the words each must show.
BUILDERS: dict[str, tuple[Callable[[], Figure], list[str]]] = {
    "funnel": (
        lambda: charts.funnel([("Пришли", 120), ("Купили", 7)], "Воронка"),
        ["Воронка", "Пришли", "Купили", "7 (5,8%)"],
    ),
    "heatmap": (
        lambda: charts.heatmap(
            ["Неделя 1", "Неделя 2"], ["Сразу", "Через 1"], [[50.0, None], [None, 25.0]], "Когорты"
        ),
        ["Когорты", "Неделя 1", "Сразу", "50", "25"],
    ),
    "bars": (
        lambda: charts.bars(
            ["Сайт", "ВКонтакте"],
            {"Выручка": [1000.0, 250.0], "Расход": [400.0, None]},
            "Деньги",
            "Рубли",
            errors={"Расход": [20.0, None]},
        ),
        ["Деньги", "Сайт", "ВКонтакте", "Выручка", "Расход", "Рубли"],
    ),
    "lines": (
        lambda: charts.lines(
            ["Январь", "Февраль", "Март"], {"Индекс": [10.0, None, -5.0]}, "Индекс лояльности"
        ),
        ["Индекс лояльности", "Январь", "Март"],
    ),
}


def drawn_texts(svg: str) -> list[str]:
    """The texts matplotlib drew: it writes each one as a comment above its glyphs."""
    return re.findall(r"<!-- (.*?) -->", svg)


def glyph_ids(svg: str) -> set[str]:
    return set(re.findall(r'id="[^"]*?(DejaVuSans(?:-Bold)?-[0-9a-f]+)"', svg))


def dejavu_glyph(char: str, *, bold: bool = False) -> str:
    """The id matplotlib gives a character's glyph path in DejaVu Sans (or its bold face)."""
    face = FontProperties(family=charts.FONT, weight="bold" if bold else "normal")
    font = FT2Font(font_manager.findfont(face))
    index = font.get_char_index(ord(char))
    assert index != 0, f"DejaVu Sans has no glyph for {char!r}"
    return f"{font.postscript_name}-{index:x}"


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("name", BUILDERS)
def test_each_chart_renders_an_inline_svg_with_its_cyrillic_text_as_glyphs(name: str) -> None:
    build, words = BUILDERS[name]

    svg = charts.svg(build())

    assert svg.startswith('<svg width="100%" role="img"')
    assert svg.endswith("</svg>")
    assert "<?xml" not in svg
    assert "<!DOCTYPE" not in svg
    assert "viewBox=" in svg
    assert re.search(r"https?:|//", svg) is None  # not even a namespace or a metadata URL
    texts = drawn_texts(svg)
    for word in words:
        assert any(word in text for text in texts), (word, texts)
    # Text is drawn as paths of DejaVu Sans's own Cyrillic glyphs (no font needed to view it).
    ids = glyph_ids(svg)
    letters = {c for word in words for c in word if "а" <= c.lower() <= "я"}
    assert letters
    for letter in letters:
        assert dejavu_glyph(letter) in ids or dejavu_glyph(letter, bold=True) in ids, letter
    assert "<text" not in svg


@pytest.mark.parametrize("name", BUILDERS)
def test_each_chart_renders_a_png_and_is_cleared_after(name: str) -> None:
    build, _ = BUILDERS[name]
    figure = build()

    data = charts.png(figure, dpi=100)

    width, height = png_size(data)
    assert width == round(charts.WIDTH * 100)
    assert 200 <= height <= 1200
    assert len(data) > 5_000
    assert figure.axes == []  # cleared: nothing of it is kept once rendered
    assert png_size(charts.png(build(), dpi=50))[0] == round(charts.WIDTH * 50)


def test_a_figure_can_be_kept_for_a_second_format() -> None:
    figure = charts.funnel([("Пришли", 3)], "Воронка")
    svg = charts.svg(figure, keep=True)
    assert figure.axes
    assert png_size(charts.png(figure))[0] > 0
    assert "Пришли" in drawn_texts(svg)


def test_heat_map_cells_without_a_value_are_grey_and_blank() -> None:
    values: list[list[float | None]] = [[10.0, None, 30.0], [None, None, 7.5]]

    svg = charts.svg(charts.heatmap(["Н1", "Н2"], ["0", "1", "2"], values, "Когорты", "{:.1f}%"))

    written = [t for t in drawn_texts(svg) if t.endswith("%")]
    expected = [f"{v:.1f}%".replace(".", ",") for row in values for v in row if v is not None]
    assert sorted(written) == sorted(expected)
    # The empty colour fills exactly the cells without a value.
    blank = sum(v is None for row in values for v in row)
    assert svg.count(charts.EMPTY_CELL) == blank


def test_a_format_spec_works_as_well_as_a_template() -> None:
    svg = charts.svg(charts.heatmap(["a"], ["b"], [[0.123]], "t", ".2f"))
    assert "0,12" in drawn_texts(svg)  # with a decimal comma, as the tables write numbers


def test_a_heat_map_of_nothing_but_gaps_still_renders() -> None:
    svg = charts.svg(charts.heatmap(["Н1"], ["0", "1"], [[None, None]], "Пусто"))
    assert svg.count(charts.EMPTY_CELL) == 2


@pytest.mark.parametrize(
    "figure",
    [
        lambda: charts.funnel([], "Воронка"),
        lambda: charts.heatmap([], [], [], "Когорты"),
        lambda: charts.bars([], {}, "Деньги"),
        lambda: charts.lines([], {}, "NPS"),
    ],
)
def test_no_data_says_so(figure: Callable[[], Figure]) -> None:
    svg = charts.svg(figure())
    assert charts.NO_DATA in drawn_texts(svg)


def test_dollar_signs_in_labels_are_shown_not_read_as_math() -> None:
    source = "promo $5 and $6"

    svg = charts.svg(charts.funnel([(source, 3)], "Цена $10 — $20"))

    # Math markup would set "5 and " in italics (the oblique face) and drop the dollars.
    assert "Oblique" not in svg
    assert dejavu_glyph("$") in glyph_ids(svg)


def test_long_labels_are_cut() -> None:
    label = "Очень длинное название источника, которое не поместится на оси"

    svg = charts.svg(charts.bars([label], {"Лиды": [5.0]}, "Лиды"))

    [shown] = [t for t in drawn_texts(svg) if t.startswith("Очень")]
    assert shown.endswith("…")
    assert len(shown) < len(label)


def test_several_charts_on_one_page_have_ids_of_their_own() -> None:
    first = charts.svg(charts.funnel([("Пришли", 3)], "Воронка"))
    second = charts.svg(charts.funnel([("Пришли", 3)], "Воронка"))

    ids_first = set(re.findall(r'id="([^"]+)"', first))
    ids_second = set(re.findall(r'id="([^"]+)"', second))
    assert ids_first
    assert ids_second
    assert ids_first.isdisjoint(ids_second)
    # Every reference points at an id of its own chart.
    for svg, ids in ((first, ids_first), (second, ids_second)):
        for target in re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', svg):
            assert (target[0] or target[1]) in ids
