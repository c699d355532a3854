"""The whole report: every section's figures for one window, in one read-only transaction,
and the text and JSON made from their tables (the HTML page is `bot.analytics.page`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics import ab, cohorts, conversation, funnel, misses, nps, rfm, sends, sources
from bot.analytics.tables import Table, shown, text_lines
from bot.analytics.window import By, Window
from bot.scenario.model import Scenario
from bot.stats import period_bounds

Figures = Callable[[AsyncSession, Scenario, Window], Awaitable[Any]]
Tables = Callable[[Any], list[Table]]


@dataclass(frozen=True)
class Section:
    key: str  # the JSON key, stable for API users
    title: str
    figures: Figures
    tables: Tables


# In the order a marketer asks: how many came and went where, for what money, who stays, what
# they think, which texts work, where the talk loses them, what to fix.
SECTIONS: tuple[Section, ...] = (
    Section("funnel", "Воронка", funnel.figures, funnel.tables),
    Section("sources", "Источники и деньги", sources.figures, sources.tables),
    Section("cohorts", "Когорты", cohorts.figures, cohorts.tables),
    Section("rfm", "RFM-сегменты клиентов", rfm.figures, rfm.tables),
    Section("nps", "NPS", nps.figures, nps.tables),
    Section("ab", "A/B-тесты", ab.figures, ab.tables),
    Section("sends", "Сообщения и рассылки", sends.figures, sends.tables),
    Section(
        "conversation", "Где уходят внутри предложений", conversation.figures, conversation.tables
    ),
    Section("misses", "Причины отказов и вопросы без ответа", misses.figures, misses.tables),
)


def window_for(
    scenario: Scenario,
    now: datetime,
    *,
    period: str | None = None,
    since: str | None = None,
    until: str | None = None,
    by: By | None = None,
) -> Window:
    """The report's window from what the marketer typed (`leadbot report`, `GET /api/stats`):
    days of the scenario's zone. ValueError says what is wrong, in one line."""
    zone = ZoneInfo(scenario.settings.timezone)
    start, end = period_bounds(now=now, period=period, since=since, until=until, zone=zone)
    return Window(since=start, until=end, now=now, zone=zone, by=by)


@dataclass(frozen=True)
class Report:
    window: Window
    figures: dict[str, Any]  # section key -> that section's figures

    def tables(self, key: str) -> list[Table]:
        return next(s.tables for s in SECTIONS if s.key == key)(self.figures[key])


async def build(
    session: AsyncSession,
    scenario: Scenario,
    window: Window,
    only: Sequence[str] | None = None,
) -> Report:
    """Every section (or those named in `only`) over the window, read in the caller's
    transaction, so the sections agree with each other."""
    figures = {}
    for section in SECTIONS:
        if only is None or section.key in only:
            figures[section.key] = await section.figures(session, scenario, window)
    return Report(window, figures)


def text(report: Report) -> str:
    """The report for the terminal: a heading, then each section's tables."""
    w = report.window
    since, until = w.since.astimezone(w.zone), w.until.astimezone(w.zone)
    lines = [f"Отчёт за {since:%d.%m.%Y %H:%M} — {until:%d.%m.%Y %H:%M} ({w.zone.key})"]
    for section in SECTIONS:
        if section.key not in report.figures:
            continue
        lines += ["", f"== {section.title} =="]
        for table in report.tables(section.key):
            lines += ["", *text_lines(table)]
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    """`GET /api/stats`: the tables as shown (so a dashboard needs no knowledge of the
    sections) and the raw figures (numbers, not strings, for those who compute)."""
    w = report.window
    sections = {}
    for section in SECTIONS:
        if section.key not in report.figures:
            continue
        sections[section.key] = {
            "title": section.title,
            "tables": [_table_json(t) for t in report.tables(section.key)],
            "figures": _plain(report.figures[section.key]),
        }
    return {
        "since": w.since.isoformat(),
        "until": w.until.isoformat(),
        "timezone": w.zone.key,
        "sections": sections,
    }


def _table_json(table: Table) -> dict[str, Any]:
    return {
        "title": table.title,
        "columns": list(table.columns),
        "rows": [[_plain(cell) for cell in row] for row in table.rows],
        "shown": [[shown(cell) for cell in row] for row in table.rows],
        "note": table.note,
    }


def _plain(value: Any) -> Any:
    """Figures as JSON: money as a string (no binary rounding), moments in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
