"""NPS of every `scale` question (the 0..10 buttons): promoters answered 9 or 10, passives 7
or 8, detractors 0 to 6; the score is % promoters − % detractors, from −100 to 100.

What counts: a lead's latest answer to the question (the `answers` table keeps one per lead
and question), when it was given in the window; an answer that is not a whole number from 0
to 10 (none should be: the buttons and the parser give only those) counts nowhere.

Splits: by calendar month of the answer in the scenario's zone, every month the window
touches (empty ones too, so a chart of NPS over time has no holes); also by ISO week
(Monday to Sunday, local) when the window is shorter than `WEEKS_UNDER` (10 weeks), where
months alone would be one or two points; and by the lead's source (its first `src_` tag),
whatever `window.by` asks, since where promoters come from is the question NPS answers.
Periods are bounded by local midnights computed here, so a month is exact in any zone and
across a change of summer time, on both databases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import String, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.analytics.tables import Table
from bot.analytics.window import Window
from bot.scenario.model import Scenario
from storage.models import Answer, Lead

PROMOTER_VALUES = ("9", "10")
PASSIVE_VALUES = ("7", "8")
DETRACTOR_VALUES = tuple(str(n) for n in range(7))
WEEKS_UNDER = timedelta(weeks=10)
NO_SOURCE = "без источника"
_UTC = ZoneInfo("UTC")
_TITLE_LIMIT = 60  # a question's text in a table title, cut


@dataclass(frozen=True)
class Score:
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    # Fields, not properties, so that the JSON of the report carries them too.
    answers: int = field(init=False)
    nps: float | None = field(init=False)  # % promoters − % detractors; None: no answers

    def __post_init__(self) -> None:
        answers = self.promoters + self.passives + self.detractors
        object.__setattr__(self, "answers", answers)
        score = 100 * (self.promoters - self.detractors) / answers if answers else None
        object.__setattr__(self, "nps", score)

    def __add__(self, other: Score) -> Score:
        return Score(
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )


@dataclass(frozen=True)
class Period:
    label: str  # "2026-11" for a month, "2026-W47" for an ISO week
    start: datetime  # its first local midnight, in the window's zone (may be before `since`)
    score: Score


@dataclass(frozen=True)
class QuestionNps:
    question: str  # the question's id
    text: str  # what the lead was asked
    score: Score  # the whole window
    months: tuple[Period, ...]  # every month the window touches, oldest first
    weeks: tuple[Period, ...]  # every ISO week, for windows under WEEKS_UNDER; else empty
    sources: tuple[tuple[str | None, Score], ...]  # most answers first; None: no source


@dataclass(frozen=True)
class NpsFigures:
    questions: tuple[QuestionNps, ...]  # the scenario's scale questions, in its order


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> NpsFigures:
    asked = [q_id for q_id, q in scenario.questions.items() if q.type == "scale"]
    if not asked:
        return NpsFigures(())
    months = _months(window)
    weeks = _weeks(window) if window.until - window.since < WEEKS_UNDER else []
    by_month = await _counts(session, asked, window, _bucket(months))
    by_week = await _counts(session, asked, window, _bucket(weeks)) if weeks else {}
    by_source = await _counts(session, asked, window, Lead.source)
    found = []
    for q_id in asked:
        sources = sorted(
            ((source, score) for (q, source), score in by_source.items() if q == q_id),
            key=lambda item: (-item[1].answers, item[0] or ""),
        )
        found.append(
            QuestionNps(
                question=q_id,
                text=scenario.questions[q_id].text,
                score=sum((score for _, score in sources), Score()),
                months=_series(months, by_month, q_id),
                weeks=_series(weeks, by_week, q_id),
                sources=tuple(sources),
            )
        )
    return NpsFigures(tuple(found))


# A period: its label, its first local midnight and where the next one starts (UTC).
_Span = tuple[str, datetime, datetime]


def _months(window: Window) -> list[_Span]:
    local = window.since.astimezone(window.zone)
    year, month = local.year, local.month
    spans = []
    while True:
        start = datetime(year, month, 1, tzinfo=window.zone)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        end = datetime(year, month, 1, tzinfo=window.zone).astimezone(_UTC)
        spans.append((f"{start:%Y-%m}", start, end))
        if end >= window.until:
            return spans


def _weeks(window: Window) -> list[_Span]:
    monday = window.first_monday.astimezone(window.zone).date()
    spans = []
    while True:
        start = datetime(monday.year, monday.month, monday.day, tzinfo=window.zone)
        monday += timedelta(days=7)
        end = datetime(monday.year, monday.month, monday.day, tzinfo=window.zone)
        iso = start.isocalendar()
        spans.append((f"{iso.year}-W{iso.week:02d}", start, end.astimezone(_UTC)))
        if end >= window.until:
            return spans


def _bucket(spans: list[_Span]) -> ColumnElement[str]:
    """The label of the period an answer's time falls in, as SQL (the answer is in the
    window, so in one of the periods)."""
    whens = [(Answer.created_at < end, label) for label, _, end in spans[:-1]]
    return case(*whens, else_=spans[-1][0]) if whens else literal(spans[0][0], String)


async def _counts(
    session: AsyncSession, asked: list[str], window: Window, key: ColumnElement[str | None]
) -> dict[tuple[str, str | None], Score]:
    """Promoters, passives and detractors per question and `key` (a period, a source)."""
    kind = case(
        (Answer.value.in_(PROMOTER_VALUES), "promoter"),
        (Answer.value.in_(PASSIVE_VALUES), "passive"),
        else_="detractor",
    )
    # Grouped outside: PostgreSQL does not see a CASE with bound values in GROUP BY as the
    # one in SELECT, so the keys are computed in a subquery first.
    rows = (
        select(Answer.question.label("question"), key.label("key"), kind.label("kind"))
        .join(Lead, Lead.id == Answer.lead_id)
        .where(
            Answer.question.in_(asked),
            Answer.value.in_(PROMOTER_VALUES + PASSIVE_VALUES + DETRACTOR_VALUES),
            Answer.created_at >= window.since,
            Answer.created_at < window.until,
        )
        .subquery("answers_in_window")
    )
    query = select(rows.c.question, rows.c.key, rows.c.kind, func.count()).group_by(
        rows.c.question, rows.c.key, rows.c.kind
    )
    counts: dict[tuple[str, str | None], dict[str, int]] = defaultdict(dict)
    for question, found_key, found_kind, number in await session.execute(query):
        counts[(question, found_key)][found_kind] = int(number)
    return {
        where: Score(kinds.get("promoter", 0), kinds.get("passive", 0), kinds.get("detractor", 0))
        for where, kinds in counts.items()
    }


def _series(
    spans: list[_Span], counts: dict[tuple[str, str | None], Score], question: str
) -> tuple[Period, ...]:
    return tuple(
        Period(label, start, counts.get((question, label), Score())) for label, start, _ in spans
    )


def tables(figures: NpsFigures) -> list[Table]:
    columns = ("Ответов", "Промоутеры (9–10)", "Нейтральные (7–8)", "Критики (0–6)", "NPS")
    note = (
        "NPS = % промоутеров − % критиков, от −100 до 100; у каждого лида учтён последний "
        "ответ на вопрос, если он дан за период."
    )
    if not figures.questions:
        note = "В сценарии нет вопросов type: scale — NPS считать не из чего."
    summary = Table(
        "NPS по вопросам",
        ("Вопрос", "id", *columns),
        tuple((_cut(q.text), q.question, *_cells(q.score)) for q in figures.questions),
        note,
    )
    found = [summary]
    for q in figures.questions:
        if not q.score.answers:
            continue
        found.append(
            _split(f"NPS «{q.question}» по месяцам", "Месяц", columns, _periods(q.months))
        )
        if q.weeks:
            found.append(
                _split(f"NPS «{q.question}» по неделям", "Неделя", columns, _periods(q.weeks))
            )
        sources = ((source or NO_SOURCE, score) for source, score in q.sources)
        found.append(_split(f"NPS «{q.question}» по источникам", "Источник", columns, sources))
    return found


def _periods(periods: tuple[Period, ...]) -> Iterator[tuple[str, Score]]:
    return ((period.label, period.score) for period in periods)


def _split(
    title: str, first: str, columns: tuple[str, ...], rows: Iterator[tuple[str, Score]]
) -> Table:
    return Table(title, (first, *columns), tuple((name, *_cells(score)) for name, score in rows))


def _cells(score: Score) -> tuple[int, int, int, int, float | None]:
    return score.answers, score.promoters, score.passives, score.detractors, score.nps


def _cut(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _TITLE_LIMIT else line[: _TITLE_LIMIT - 1] + "…"
