"""Lost reasons and the questions the FAQ missed, on both databases: texts written in other
case and spacing (Cyrillic too, which SQLite's lower() leaves alone) are one entry."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bot.analytics import misses
from bot.analytics.window import Window
from bot.scenario.loader import load_scenario
from storage.database import Database
from storage.models import Event, Handoff, Lead
from tests.conftest import FIXTURE_SCENARIO

SINCE = datetime(2026, 10, 5, tzinfo=UTC)
UNTIL = datetime(2026, 11, 2, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
MSK = ZoneInfo("Europe/Moscow")
REASONS = ["дорого", "купили у конкурентов", "не сейчас", "нет бюджета", "Too expensive"] + [
    f"редкая причина {n}" for n in range(25)
]
QUESTIONS = ["сколько стоит доставка", "есть ли рассрочка", "где вы находитесь"] + [
    f"вопрос номер {n}" for n in range(40)
]


def spelled(text: str, rng: random.Random) -> str:
    """The same words as a person might type them: other case, extra spaces."""
    words = [
        w.upper() if rng.random() < 0.3 else w.capitalize() if rng.random() < 0.3 else w
        for w in text.split()
    ]
    gap = "  " if rng.random() < 0.3 else " "
    return " " * rng.randrange(2) + gap.join(words) + "\n" * rng.randrange(2)


def moment(rng: random.Random) -> datetime:
    """Mostly in the window, some in the fortnight before it and after it."""
    return SINCE - timedelta(days=14) + timedelta(minutes=rng.randrange(56 * 24 * 60))


async def generate(
    db: Database, seed: int
) -> tuple[Counter[str], Counter[str], int, dict[str, datetime], dict[str, datetime], int]:
    """Handoffs closed as lost (with reasons) and not a fit, and unmatched messages; what
    fell in the window, by the text each was made from."""
    rng = random.Random(seed)
    reasons: Counter[str] = Counter()
    questions: Counter[str] = Counter()
    last: dict[str, datetime] = {}
    reason_last: dict[str, datetime] = {}
    not_fit = erased = 0
    # Common reasons often, rare ones once or twice: a long tail past the top 20.
    reason_weights = [40, 25, 15, 10, 8] + [3] * 25
    question_weights = [30, 20, 12] + [2] * 40
    async with db.unit_of_work() as uow:
        leads = [Lead(created_at=SINCE, updated_at=SINCE) for _ in range(500)]
        uow.session.add_all(leads)
        await uow.session.flush()
        handoffs, events = [], []
        for lead in leads[:300]:
            closed = moment(rng)
            inside = SINCE <= closed < UNTIL
            kind = rng.choices(("lost", "not_fit", "won", "claimed"), (6, 2, 1, 1))[0]
            row = {"lead_id": lead.id, "status": kind, "rule": "r", "qualified_at": closed}
            if kind == "lost":
                reason = rng.choices(REASONS, reason_weights)[0]
                # A reason a manager left empty, or an erased lead's: «без причины».
                text = None if rng.random() < 0.05 else spelled(reason, rng)
                row |= {"closed_at": closed, "reason": text}
                key = misses.NO_REASON if text is None else reason.lower()
                if inside:
                    reasons[key] += 1
                    reason_last[key] = max(reason_last.get(key, closed), closed)
            elif kind in ("not_fit", "won"):
                row |= {"closed_at": closed, "reason": None}
                not_fit += inside and kind == "not_fit"
            handoffs.append(row)
        for lead in leads:
            for _ in range(rng.randrange(3)):
                at = moment(rng)
                inside = SINCE <= at < UNTIL
                if rng.random() < 0.03:  # an erased lead's message: no text kept
                    events.append(
                        {
                            "lead_id": lead.id,
                            "name": "unmatched_text",
                            "payload": {},
                            "created_at": at,
                        }
                    )
                    erased += inside
                    continue
                question = rng.choices(QUESTIONS, question_weights)[0]
                events.append(
                    {
                        "lead_id": lead.id,
                        "name": "unmatched_text",
                        "payload": {"text": spelled(question, rng)},
                        "created_at": at,
                    }
                )
                if inside:
                    questions[question] += 1
                    last[question] = max(last.get(question, at), at)
            # A question the FAQ did answer is no miss.
            events.append(
                {
                    "lead_id": lead.id,
                    "name": "faq_answered",
                    "payload": {"match": "цена"},
                    "created_at": SINCE + timedelta(days=1),
                }
            )
        await uow.session.execute(insert(Handoff), handoffs)
        await uow.session.execute(insert(Event), events)
        await uow.commit()
    return reasons, questions, not_fit, reason_last, last, erased


def window() -> Window:
    return Window(since=SINCE, until=UNTIL, now=NOW, zone=MSK)


def ranked(counts: Counter[str], last: dict[str, datetime] | None = None) -> list[str]:
    """Most frequent first; a tie by the latest moment, then by the text."""
    latest = last or {}
    return sorted(
        (t for t in counts if counts[t]),
        key=lambda t: (-counts[t], -latest[t].timestamp() if t in latest else 0, t),
    )


async def test_lost_reasons_are_ranked_with_case_and_spacing_variants_merged(
    db: Database,
) -> None:
    reasons, _, not_fit, reason_last, _, _ = await generate(db, seed=31)
    async with db.unit_of_work() as uow:
        figures = await misses.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window()
        )
    lost = sum(reasons.values())
    order = ranked(reasons, reason_last)
    assert (figures.lost, figures.not_fit) == (lost, not_fit)
    assert [(r.text.lower(), r.deals) for r in figures.reasons] == [
        (t, reasons[t]) for t in order[: misses.TOP_REASONS]
    ]
    assert len(order) > misses.TOP_REASONS  # the tail is really there
    assert figures.other_reasons == sum(reasons[t] for t in order[misses.TOP_REASONS :])
    assert figures.other_reason_texts == len(order) - misses.TOP_REASONS
    # «Дорого», «ДОРОГО » and « дорого» are one reason, shown as most managers wrote it.
    assert reasons["дорого"] > 10
    assert figures.reasons[0].text.lower() == "дорого"
    assert "  " not in "".join(r.text for r in figures.reasons)

    closed, table, _ = misses.tables(figures)
    assert closed.rows == (("отказ (lost)", lost), ("не наш клиент (not_fit)", not_fit))
    assert table.rows[0][1:] == (reasons["дорого"], 100 * reasons["дорого"] / lost)
    assert table.rows[-1][1] == figures.other_reasons
    assert sum(row[1] for row in table.rows) == lost


async def test_the_questions_the_faq_missed_are_ranked_with_the_last_time_asked(
    db: Database,
) -> None:
    _, questions, _, _, last, erased = await generate(db, seed=32)
    async with db.unit_of_work() as uow:
        figures = await misses.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window()
        )
    order = ranked(questions, last)
    assert figures.unmatched == sum(questions.values()) + erased
    assert [(q.text.lower(), q.times, q.last_asked) for q in figures.questions] == [
        (t, questions[t], last[t]) for t in order[: misses.TOP_QUESTIONS]
    ]
    assert all(q.last_asked.tzinfo == MSK for q in figures.questions)
    assert figures.other_questions == sum(questions[t] for t in order[misses.TOP_QUESTIONS :])
    assert figures.other_question_texts == len(order) - misses.TOP_QUESTIONS > 0
    assert figures.without_text == erased > 0

    *_, table = misses.tables(figures)
    assert table.rows[-1] == ("текст удалён по просьбе лида", erased, None)
    assert sum(row[1] for row in table.rows) == figures.unmatched


async def test_a_quiet_window_has_empty_tables(db: Database) -> None:
    async with db.unit_of_work() as uow:
        figures = await misses.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window()
        )
    assert (figures.lost, figures.not_fit, figures.unmatched) == (0, 0, 0)
    closed, reasons, questions = misses.tables(figures)
    assert closed.rows == (("отказ (lost)", 0), ("не наш клиент (not_fit)", 0))
    assert (reasons.rows, questions.rows) == ((), ())


def test_texts_are_grouped_trimmed_in_lower_case_with_one_space() -> None:
    assert misses.normalised("  Сколько   СТОИТ\nдоставка? ") == "сколько стоит доставка?"
    assert misses.normalised(None) == ""
