"""What to fix: why deals were lost (ranked), how many leads were not a fit, and the questions
the FAQ could not answer (ranked, so the marketer knows what to add to it).

Texts are grouped as the marketer would read them: trimmed, in lower case, runs of spaces
(and line breaks) collapsed. SQLite's lower() folds ASCII only, and PostgreSQL's folds
Cyrillic only when the database's LC_CTYPE knows it (not in a "C" database), so lower case
cannot be left to SQL without a branch per dialect or a function registered on every SQLite
connection (storage's business, not a report's). So SQL groups by the trimmed text as typed,
with the counts and the last moment, and the variants of one text (the same words in other
case or spacing: few, as they are already grouped) are merged here. What a row shows is the
spelling most people used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics.tables import Table, percent
from bot.analytics.window import Window
from bot.scenario.model import Scenario
from storage.models import Event, Handoff

TOP_REASONS = 20
TOP_QUESTIONS = 30
NO_REASON = "без причины"  # what bot.handoff writes for an empty answer; erased leads' too


@dataclass(frozen=True)
class Reason:
    text: str
    deals: int


@dataclass(frozen=True)
class Question:
    text: str
    times: int
    last_asked: datetime  # in the report's time zone


@dataclass(frozen=True)
class MissesFigures:
    lost: int  # handoffs closed as lost in the window
    not_fit: int  # ... and as not a fit
    reasons: tuple[Reason, ...]  # the TOP_REASONS most frequent, most frequent first
    other_reasons: int  # lost deals with any other reason
    other_reason_texts: int  # how many other reasons
    unmatched: int  # messages the FAQ could not answer in the window
    questions: tuple[Question, ...]  # the TOP_QUESTIONS most asked
    other_questions: int  # messages with any other text
    other_question_texts: int
    without_text: int  # messages of leads who since erased their data: no text kept


def normalised(text: str | None) -> str:
    """The form texts are grouped by: trimmed, lower case, one space between words."""
    return " ".join((text or "").split()).lower()


@dataclass
class _Group:
    count: int = 0
    last: datetime | None = None
    spellings: dict[str, int] | None = None

    def add(self, spelling: str, count: int, last: datetime | None) -> None:
        self.count += count
        if last is not None and (self.last is None or last > self.last):
            self.last = last
        self.spellings = self.spellings or {}
        self.spellings[spelling] = self.spellings.get(spelling, 0) + count

    @property
    def shown(self) -> str:
        spellings = self.spellings or {}
        # The commonest spelling; on a tie the one with fewer capitals (rarely the shouted
        # one), then the first in alphabetical order, so it is stable.
        return (
            min(spellings, key=lambda s: (-spellings[s], sum(c.isupper() for c in s), s))
            if spellings
            else ""
        )


def _merge(rows: list[Any], empty: str | None) -> list[_Group]:
    """(text, count, last) rows grouped by normalised text, most frequent first; an empty
    text is `empty`, or left out when `empty` is None."""
    groups: dict[str, _Group] = {}
    for text, count, last in rows:
        spelling = " ".join((text or "").split())
        if not spelling:
            if empty is None:
                continue
            spelling = empty
        groups.setdefault(normalised(spelling), _Group()).add(spelling, count, last)
    return sorted(
        groups.values(),
        key=lambda g: (-g.count, -(g.last.timestamp() if g.last else 0), g.shown),
    )


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> MissesFigures:
    closed = (
        Handoff.status.in_(("lost", "not_fit")),
        Handoff.closed_at >= window.since,
        Handoff.closed_at < window.until,
    )
    statuses = dict(
        (
            await session.execute(
                select(Handoff.status, func.count()).where(*closed).group_by(Handoff.status)
            )
        ).all()
    )
    reason = func.trim(Handoff.reason)
    reason_rows = (
        await session.execute(
            select(reason, func.count(), func.max(Handoff.closed_at))
            .where(*closed, Handoff.status == "lost")
            .group_by(reason)
        )
    ).all()
    reasons = _merge(list(reason_rows), NO_REASON)

    text = func.trim(Event.payload["text"].as_string())
    question_rows = (
        await session.execute(
            select(text, func.count(), func.max(Event.created_at))
            .where(
                Event.name == "unmatched_text",
                Event.created_at >= window.since,
                Event.created_at < window.until,
            )
            .group_by(text)
        )
    ).all()
    # An erased lead's message keeps no text: it still counts among the misses, unranked.
    unmatched = sum(count for _, count, _ in question_rows)
    questions = _merge(list(question_rows), None)
    top_questions = questions[:TOP_QUESTIONS]
    with_text = sum(g.count for g in questions)
    return MissesFigures(
        lost=statuses.get("lost", 0),
        not_fit=statuses.get("not_fit", 0),
        reasons=tuple(Reason(g.shown, g.count) for g in reasons[:TOP_REASONS]),
        other_reasons=sum(g.count for g in reasons[TOP_REASONS:]),
        other_reason_texts=len(reasons[TOP_REASONS:]),
        unmatched=unmatched,
        questions=tuple(Question(g.shown, g.count, _local(g.last, window)) for g in top_questions),
        other_questions=sum(g.count for g in questions[TOP_QUESTIONS:]),
        other_question_texts=len(questions[TOP_QUESTIONS:]),
        without_text=unmatched - with_text,
    )


def _local(moment: datetime | None, window: Window) -> datetime:
    assert moment is not None  # every grouped row has its moment
    return moment.astimezone(window.zone)


def tables(figures: MissesFigures) -> list[Table]:
    closed = Table(
        title="Закрыты без сделки за период",
        columns=("Итог", "Лидов"),
        rows=(("отказ (lost)", figures.lost), ("не наш клиент (not_fit)", figures.not_fit)),
    )
    reason_rows = [(r.text, r.deals, percent(r.deals, figures.lost)) for r in figures.reasons]
    if figures.other_reasons:
        reason_rows.append(
            (
                f"остальные ({figures.other_reason_texts})",
                figures.other_reasons,
                percent(figures.other_reasons, figures.lost),
            )
        )
    reasons = Table(
        title="Причины отказов",
        columns=("Причина", "Сделок", "Доля, %"),
        rows=tuple(reason_rows),
        note="Причины сгруппированы без учёта регистра и лишних пробелов.",
    )
    question_rows = [(q.text, q.times, q.last_asked) for q in figures.questions]
    if figures.other_questions:
        label = f"остальные ({figures.other_question_texts})"
        question_rows.append((label, figures.other_questions, None))
    if figures.without_text:
        question_rows.append(("текст удалён по просьбе лида", figures.without_text, None))
    questions = Table(
        title=f"Вопросы, на которые FAQ не ответил ({figures.unmatched})",
        columns=("Вопрос", "Раз", "Последний раз"),
        rows=tuple(question_rows),
        note="Частые вопросы стоит добавить в FAQ сценария.",
    )
    return [closed, reasons, questions]
