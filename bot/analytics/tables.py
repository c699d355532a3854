"""A report's figures as plain tables: the text report, the HTML page and the JSON of
`GET /api/stats` are all made from these, so each section is laid out once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

Cell = str | int | float | Decimal | date | datetime | None


@dataclass(frozen=True)
class Table:
    """A titled grid; `note` is one line under it (say, why a winner is not named yet)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


def shown(cell: Cell) -> str:
    """A cell as a Russian reader writes numbers: groups of thousands apart, a decimal comma;
    money to the kopeck only when there are kopecks, shares to one decimal."""
    if cell is None:
        return "—"
    if isinstance(cell, bool):
        return "да" if cell else "нет"
    if isinstance(cell, Decimal):
        return _russian(f"{cell:,.0f}" if cell == cell.to_integral() else f"{cell:,.2f}")
    if isinstance(cell, float):
        return _russian(f"{cell:,.1f}").removesuffix(",0")
    if isinstance(cell, int):
        return _russian(f"{cell:,}")
    if isinstance(cell, datetime):
        return f"{cell:%Y-%m-%d %H:%M}"
    if isinstance(cell, date):
        return cell.isoformat()
    return cell


def _russian(number: str) -> str:
    return number.replace(",", " ").replace(".", ",")


def percent(part: int | float | Decimal, whole: int | float | Decimal) -> float | None:
    """`part` as a percent of `whole`; None (shown «—») when there is no whole."""
    return None if not whole else float(100 * part / whole)


def text_lines(table: Table) -> list[str]:
    """The table in a fixed-width font: the first column left, the others right."""
    grid = [list(table.columns), *([shown(cell) for cell in row] for row in table.rows)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(table.columns))]
    lines = [table.title]
    for row in grid:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    if not table.rows:
        lines.append("  нет данных за период")
    if table.note:
        lines.append("  " + table.note)
    return lines
