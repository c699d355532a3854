"""The report as one self-contained HTML page (`leadbot report --html FILE`): the sections'
charts inline as SVG and their tables, styled inline. It opens from a file, offline: no
script, no font, stylesheet or image from anywhere, and a Content-Security-Policy that would
refuse one if it slipped in. Every text is escaped: source names, questions and FAQ texts are
what people typed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from html import escape

from bot.analytics.tables import Table, shown

# Nothing may be fetched; inline styles only. Inline <svg> is part of the document, not a
# fetched image, so it needs no permission.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
_UNSAFE_CHART = re.compile(r"<\s*(script|foreignobject|iframe|object|embed)\b", re.I)

STYLE = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body {
  margin: 0; padding: 16px; background: #f5f6f8; color: #1d1d1f;
  font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
}
main { max-width: 1000px; margin: 0 auto; }
header h1 { font-size: 1.6em; margin: 0 0 4px; }
header p { margin: 0 0 16px; color: #555; }
nav ol { margin: 0 0 16px; padding-left: 1.4em; columns: 2 14em; }
nav a { color: #0060a8; }
section {
  background: #fff; border-radius: 8px; padding: 16px; margin: 0 0 16px;
  box-shadow: 0 1px 2px rgba(0, 0, 0, .08);
}
section h2 { font-size: 1.25em; margin: 0 0 12px; }
figure { margin: 0 0 16px; }
figure svg { display: block; width: 100%; height: auto; }
.table { overflow-x: auto; margin: 0 0 16px; }
table { border-collapse: collapse; min-width: 100%; font-size: .92em; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
th { background: #f0f2f5; text-align: right; }
td { text-align: right; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
td.text { text-align: left; white-space: normal; }
tbody tr:nth-child(even) { background: #fafbfc; }
.note { color: #555; font-size: .9em; margin: 4px 0 0; }
.empty { color: #777; }
@media (max-width: 600px) {
  body { padding: 8px; font-size: 15px; }
  section { padding: 10px; }
  th, td { padding: 3px 6px; }
}
@media print {
  body { background: #fff; }
  section { box-shadow: none; break-inside: avoid; }
}
"""


@dataclass(frozen=True)
class Section:
    """One part of the report: its heading, charts (inline `<svg>` from charts.svg) and
    tables, in that order."""

    title: str
    charts: Sequence[str] = field(default_factory=tuple)
    tables: Sequence[Table] = field(default_factory=tuple)


def _numeric(cell: object) -> bool:
    return isinstance(cell, int | float | Decimal | date | datetime) or cell is None


def _table(table: Table) -> str:
    head = "".join(f'<th scope="col">{escape(column)}</th>' for column in table.columns)
    rows = []
    for row in table.rows:
        cells = []
        for number, cell in enumerate(row):
            text = escape(shown(cell))
            if number == 0:
                cells.append(f'<th scope="row">{text}</th>')
            elif _numeric(cell):
                cells.append(f"<td>{text}</td>")
            else:
                cells.append(f'<td class="text">{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    if not table.rows:
        rows.append(
            f'<tr><td class="empty text" colspan="{max(1, len(table.columns))}">'
            "нет данных за период</td></tr>"
        )
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return (
        f'<div class="table"><table><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}</div>"
    )


def _chart(chart: str) -> str:
    """A chart made by charts.svg, inlined as it is; anything else is refused, since it goes
    into the page unescaped."""
    text = chart.strip()
    if not text.startswith("<svg") or not text.endswith("</svg>") or _UNSAFE_CHART.search(text):
        raise ValueError("a chart must be an <svg> element made by bot.analytics.charts.svg")
    return f"<figure>{text}</figure>"


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page as text, to be written as UTF-8."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ru">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>",
    ]
    if len(sections) > 1:
        links = "".join(
            f'<li><a href="#section-{number}">{escape(section.title)}</a></li>'
            for number, section in enumerate(sections, start=1)
        )
        parts.append(f'<nav aria-label="Разделы"><ol>{links}</ol></nav>')
    for number, section in enumerate(sections, start=1):
        body = "".join(_chart(chart) for chart in section.charts)
        body += "".join(_table(table) for table in section.tables)
        parts.append(
            f'<section id="section-{number}"><h2>{escape(section.title)}</h2>{body}</section>'
        )
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)
