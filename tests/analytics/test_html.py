"""The report page: one self-contained HTML5 document (nothing fetched from anywhere), every
text escaped (source names and questions are what people typed), tables laid out from
`Table`s with `shown` cells, charts inlined as given and nothing else inlined raw."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from bot.analytics import charts
from bot.analytics.html import Section, page
from bot.analytics.tables import Table, shown

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr", "col", "area", "base"}


class Parsed(HTMLParser):
    """Tags with their attributes, the text, and whether every element was closed."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.mismatched: list[str] = []
        self.doctype = ""
        self.feed(text)
        self.close()

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.mismatched.append(tag)
            return
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def sample() -> list[Section]:
    chart = charts.svg(charts.funnel([("Пришли", 10), (HOSTILE, 4)], "Воронка " + HOSTILE))
    table = Table(
        title="Источники " + HOSTILE,
        columns=("Источник", "Лидов", "Выручка", "Доля", "День", HOSTILE),
        rows=(
            (HOSTILE, 1200, Decimal("2100000"), 12.5, date(2026, 11, 2), "текст"),
            ("vk", 0, None, None, None, "a & b"),
        ),
        note="Заметка " + HOSTILE,
    )
    return [
        Section("Воронка " + HOSTILE, [chart], [table]),
        Section("Пусто", [], [Table("Ничего", ("Вопрос", "Раз"), ())]),
    ]


def test_the_page_is_one_html5_document_in_russian_and_utf8() -> None:
    text = page("Отчёт", "за ноябрь", sample())
    parsed = Parsed(text)

    assert text.startswith("<!DOCTYPE html>\n")
    assert parsed.doctype.lower() == "doctype html"
    [(_, html)] = [t for t in parsed.tags if t[0] == "html"]
    assert html == {"lang": "ru"}
    assert ("meta", {"charset": "utf-8"}) in parsed.tags
    assert any(a.get("name") == "viewport" for tag, a in parsed.tags if tag == "meta")
    assert parsed.open == []  # every element closed...
    assert parsed.mismatched == []  # ...in order


def test_every_text_is_escaped() -> None:
    text = page("Отчёт " + HOSTILE, "подзаголовок " + HOSTILE, sample())
    parsed = Parsed(text)

    # Nothing of the hostile text became an element or an attribute.
    assert "script" not in {tag for tag, _ in parsed.tags}
    assert "img" not in {tag for tag, _ in parsed.tags}
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert re.search(r"<\s*script", text, re.IGNORECASE) is None
    # ...and it reads as the text it was, wherever it was put.
    words = "".join(parsed.text)
    for where in (
        "Отчёт ",
        "подзаголовок ",
        "Воронка ",
        "Источники ",
        "Заметка ",
    ):
        assert where + HOSTILE in words, where
    assert words.count(HOSTILE) >= 8  # title x2, subtitle, nav, section, table, column, cell, note


def test_nothing_is_fetched_from_anywhere() -> None:
    text = page("Отчёт", "за ноябрь", sample())
    parsed = Parsed(text)

    references = [
        value
        for _, attrs in parsed.tags
        for name, value in attrs.items()
        if name in {"src", "href", "xlink:href", "action", "srcset", "poster", "data"} and value
    ]
    references += re.findall(r"url\(([^)]*)\)", text)
    assert references  # the page links its sections and its charts their own parts...
    for reference in references:
        assert reference.strip("'\" ").startswith("#"), reference  # ...and only those
    assert "http://" not in text
    assert "https://" not in text
    assert "//" not in "".join(references)
    assert {"script", "link", "iframe", "object", "embed", "base"} & {
        t for t, _ in parsed.tags
    } == (set())
    assert "@import" not in text
    # The browser is told so as well: whatever slipped in would not load.
    [policy] = [
        a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policy is not None
    assert "default-src 'none'" in policy


def test_tables_are_laid_out_with_their_shown_cells() -> None:
    sections = sample()
    text = page("Отчёт", "", sections)
    parsed = Parsed(text)
    table = sections[0].tables[0]

    words = "".join(parsed.text)
    for row in table.rows:
        for cell in row:
            assert shown(cell) in words
    assert "2 100 000" in words  # money with thin groups, as `shown` has it
    assert "—" in words  # an empty cell
    assert "нет данных за период" in words  # a table without rows says so
    # Figures right, text left.
    assert '<td class="text">текст</td>' in text
    assert "<td>1 200</td>" in text


def test_a_chart_is_inlined_as_given_and_sized_for_a_phone() -> None:
    chart = charts.svg(charts.funnel([("Пришли", 10)], "Воронка"))

    text = page("Отчёт", "", [Section("Воронка", [chart], [])])

    assert f"<figure>{chart}</figure>" in text
    assert "width: 100%" in text  # and the stylesheet keeps it to the screen's width


@pytest.mark.parametrize(
    "chart",
    [
        "<p>not a chart</p>",
        "<svg><script>alert(1)</script></svg>",
        "<svg><foreignObject><div>x</div></foreignObject></svg>",
        '<svg width="1"></svg><script>alert(1)</script>',
    ],
)
def test_anything_but_an_svg_chart_is_refused(chart: str) -> None:
    with pytest.raises(ValueError, match="svg"):
        page("Отчёт", "", [Section("Раздел", [chart], [])])


def test_one_section_needs_no_table_of_contents() -> None:
    text = page("Отчёт", "", [Section("Единственный", [], [])])
    assert "<nav" not in text
    assert '<section id="section-1"><h2>Единственный</h2></section>' in text
