"""The NPS section on both databases: answers to the scale questions drawn from a seeded
random, written as rows with known times, and the promoters, passives, detractors and score
of each question, month, ISO week and source computed here from what was written; answers
exactly at a local month's or week's first midnight, in a zone with summer time."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.analytics import nps
from bot.analytics.window import Window
from bot.scenario.loader import load_scenario
from bot.scenario.model import Question, Scenario
from storage.database import Database
from storage.models import Answer, Lead
from tests.conftest import FIXTURE_SCENARIO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")  # summer time ends on 2026-10-25
SCALES = ("nps", "csat")  # the fixture's `nps` and one more, for a series per question
SOURCES = ("vk", "ya", None)


@dataclass
class Given:
    """An answer as written: the lead's source, the question, the text and when."""

    source: str | None
    question: str
    value: str
    at: datetime


def scenario() -> Scenario:
    base = load_scenario(FIXTURE_SCENARIO).scenario
    csat = Question(type="scale", text="Насколько вы довольны поддержкой?")
    return base.model_copy(update={"questions": {**base.questions, "csat": csat}})


def generate(seed: int, since: datetime, until: datetime, count: int = 300) -> list[Given]:
    """Answers of `count` leads, some outside [since, until), some not numbers, some to a
    question that is not a scale (none of which count)."""
    rng = random.Random(seed)
    span = int((until - since).total_seconds())
    found = []
    for _ in range(count):
        source = rng.choice(SOURCES)
        for question in rng.sample((*SCALES, "company_size"), rng.randint(1, 3)):
            at = since + timedelta(seconds=rng.randint(-5 * 86400, span + 3 * 86400))
            value = str(rng.choice((*range(11), 9, 10, 10, 8, 3)))  # more promoters
            if rng.random() < 0.03:
                value = rng.choice(("abc", "11", "-1", ""))
            found.append(Given(source, question, value, at))
    return found


async def write(db: Database, answers: list[Given]) -> None:
    """One lead per (source, ...) group of answers: a lead answers each question once."""
    async with db.unit_of_work() as uow:
        leads: list[tuple[Lead, list[Given]]] = []
        current: list[Given] = []
        for given in answers:
            if current and (
                given.source != current[0].source
                or given.question in {g.question for g in current}
            ):
                leads.append(
                    (Lead(created_at=NOW, updated_at=NOW, source=current[0].source), current)
                )
                current = []
            current.append(given)
        if current:
            leads.append((Lead(created_at=NOW, updated_at=NOW, source=current[0].source), current))
        uow.session.add_all([lead for lead, _ in leads])
        await uow.session.flush()
        uow.session.add_all(
            [
                Answer(
                    lead_id=lead.id, question=g.question, value=g.value, score=0, created_at=g.at
                )
                for lead, given in leads
                for g in given
            ]
        )
        await uow.commit()


def counted(answers: list[Given], window: Window, question: str) -> list[Given]:
    return [
        g
        for g in answers
        if g.question == question
        and window.since <= g.at < window.until
        and g.value in {str(n) for n in range(11)}
    ]


def score_of(answers: list[Given]) -> tuple[int, int, int, float | None]:
    values = [int(g.value) for g in answers]
    promoters = sum(v >= 9 for v in values)
    passives = sum(v in (7, 8) for v in values)
    detractors = sum(v <= 6 for v in values)
    score = 100 * (promoters - detractors) / len(values) if values else None
    return promoters, passives, detractors, score


def as_tuple(score: nps.Score) -> tuple[int, int, int, float | None]:
    return score.promoters, score.passives, score.detractors, score.nps


def month_labels(window: Window) -> list[str]:
    """Every calendar month from since's to the last instant's, counted on the calendar."""
    first = window.since.astimezone(window.zone)
    last = (window.until - timedelta(microseconds=1)).astimezone(window.zone)
    labels, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        labels.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return labels


def week_label(moment: datetime, zone: ZoneInfo) -> str:
    iso = moment.astimezone(zone).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def week_labels(window: Window) -> list[str]:
    labels: list[str] = []
    day = window.since.astimezone(window.zone).date()
    last = (window.until - timedelta(microseconds=1)).astimezone(window.zone).date()
    while day <= last:
        iso = day.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
        if label not in labels:
            labels.append(label)
        day += timedelta(days=1)
    return labels


async def figures_of(db: Database, window: Window) -> nps.NpsFigures:
    async with db.reading() as session:
        return await nps.figures(session, scenario(), window)


def check_against(found: nps.NpsFigures, answers: list[Given], window: Window) -> None:
    assert [q.question for q in found.questions] == list(SCALES)
    for q in found.questions:
        mine = counted(answers, window, q.question)
        assert mine, q.question  # a test of something
        assert as_tuple(q.score) == score_of(mine)
        assert q.score.answers == len(mine)
        months = Counter(f"{g.at.astimezone(window.zone):%Y-%m}" for g in mine)
        assert [p.label for p in q.months] == month_labels(window)
        for period in q.months:
            in_it = [g for g in mine if f"{g.at.astimezone(window.zone):%Y-%m}" == period.label]
            assert as_tuple(period.score) == score_of(in_it), period.label
        assert sum(p.score.answers for p in q.months) == sum(months.values())
        if window.until - window.since < timedelta(weeks=10):
            assert [p.label for p in q.weeks] == week_labels(window)
            for period in q.weeks:
                in_it = [g for g in mine if week_label(g.at, window.zone) == period.label]
                assert as_tuple(period.score) == score_of(in_it), period.label
        else:
            assert q.weeks == ()
        by_source = dict(q.sources)
        assert set(by_source) == {g.source for g in mine}
        for source, score in by_source.items():
            assert as_tuple(score) == score_of([g for g in mine if g.source == source]), source
        answers_per_source = [score.answers for _, score in q.sources]
        assert answers_per_source == sorted(answers_per_source, reverse=True)


async def test_nps_by_question_month_and_source(db: Database) -> None:
    window = Window(
        since=datetime(2026, 7, 31, 21, 0, tzinfo=UTC), until=NOW, now=NOW, zone=MOSCOW
    )
    answers = generate(seed=11, since=window.since, until=window.until)
    await write(db, answers)

    found = await figures_of(db, window)

    check_against(found, answers, window)
    assert len(found.questions[0].months) == 4  # August to November


async def test_a_short_window_is_split_by_iso_weeks_too(db: Database) -> None:
    window = Window(since=NOW - timedelta(days=30), until=NOW, now=NOW, zone=MOSCOW)
    answers = generate(seed=12, since=window.since, until=window.until, count=200)
    await write(db, answers)

    found = await figures_of(db, window)

    check_against(found, answers, window)
    assert len(found.questions[0].weeks) == 6  # W43 (from Saturday the 24th) to W48 (today)


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN).astimezone(UTC)


async def test_periods_part_at_local_midnights_across_summer_time(db: Database) -> None:
    """Answers a second each side of local midnights: a Monday in summer time, the Monday
    after it ends, and the first of November."""
    window = Window(since=berlin(2026, 10, 10), until=berlin(2026, 11, 10), now=NOW, zone=BERLIN)
    second = timedelta(seconds=1)
    moments = [
        berlin(2026, 10, 19) - second,  # Sunday of W42
        berlin(2026, 10, 19),  # Monday of W43, 22:00 UTC
        berlin(2026, 10, 26) - second,  # Sunday of W43
        berlin(2026, 10, 26),  # Monday of W44, 23:00 UTC: summer time is over
        berlin(2026, 11, 1) - second,  # October
        berlin(2026, 11, 1),  # November
        window.since - second,  # before the window
        window.since,  # its first instant
        window.until - second,  # its last second
        window.until,  # after it
    ]
    values = ("10", "0", "9", "7", "3", "10", "10", "8", "2", "10")
    answers = [
        Given(SOURCES[i % 3], "nps", value, at)
        for i, (value, at) in enumerate(zip(values, moments, strict=True))
    ] + [Given("vk", "csat", "9", berlin(2026, 10, 20, 12))]
    await write(db, answers)

    found = await figures_of(db, window)

    check_against(found, answers, window)
    weeks = {p.label: as_tuple(p.score)[:3] for p in found.questions[0].weeks}
    assert weeks == {
        "2026-W41": (0, 1, 0),  # the window's first instant (the 8); not the second before it
        "2026-W42": (1, 0, 0),  # Sunday the 18th, a second before midnight
        "2026-W43": (1, 0, 1),  # from Monday the 19th's midnight to Sunday the 25th's end
        "2026-W44": (1, 1, 1),  # from the 26th's midnight, an hour later in UTC
        "2026-W45": (0, 0, 0),
        "2026-W46": (0, 0, 1),  # the window's last second; not its end
    }
    months = {p.label: as_tuple(p.score)[:3] for p in found.questions[0].months}
    assert months == {"2026-10": (2, 2, 2), "2026-11": (1, 0, 1)}


async def test_an_empty_month_is_in_the_series_with_no_score(db: Database) -> None:
    window = Window(since=datetime(2026, 8, 1, tzinfo=MOSCOW), until=NOW, now=NOW, zone=MOSCOW)
    answers = [
        Given("vk", "nps", "10", datetime(2026, 8, 5, tzinfo=MOSCOW)),
        Given("vk", "nps", "5", datetime(2026, 10, 5, tzinfo=MOSCOW)),
        Given("ya", "nps", "6", datetime(2026, 10, 6, tzinfo=MOSCOW)),
    ]
    await write(db, answers)

    found = await figures_of(db, window)

    series = {p.label: p.score for p in found.questions[0].months}
    assert list(series) == ["2026-08", "2026-09", "2026-10", "2026-11"]
    assert series["2026-09"].answers == 0
    assert series["2026-09"].nps is None
    assert series["2026-08"].nps == 100.0
    assert series["2026-10"].nps == -100.0
    assert found.questions[0].score.nps == pytest.approx(100 * (1 - 2) / 3)
    assert found.questions[1].score.answers == 0  # csat: nobody answered


async def test_the_tables(db: Database) -> None:
    window = Window(since=NOW - timedelta(days=20), until=NOW, now=NOW, zone=MOSCOW)
    answers = generate(seed=13, since=window.since, until=window.until, count=60)
    await write(db, answers)
    found = await figures_of(db, window)

    tables = nps.tables(found)

    summary = tables[0]
    assert [row[1] for row in summary.rows] == list(SCALES)
    for row in summary.rows:
        mine = counted(answers, window, str(row[1]))
        promoters, passives, detractors, score = score_of(mine)
        assert row[2:] == (len(mine), promoters, passives, detractors, pytest.approx(score))
    titles = [table.title for table in tables[1:]]
    assert titles == [
        f"NPS «{q}» по {split}" for q in SCALES for split in ("месяцам", "неделям", "источникам")
    ]
    by_source = tables[3]
    assert {row[0] for row in by_source.rows} == {
        g.source or nps.NO_SOURCE for g in counted(answers, window, "nps")
    }


async def test_a_scenario_without_scale_questions(db: Database) -> None:
    base = load_scenario(FIXTURE_SCENARIO).scenario
    plain = base.model_copy(
        update={"questions": {k: q for k, q in base.questions.items() if q.type != "scale"}}
    )
    window = Window(since=NOW - timedelta(days=20), until=NOW, now=NOW, zone=MOSCOW)
    async with db.reading() as session:
        found = await nps.figures(session, plain, window)
    assert found.questions == ()
    [table] = nps.tables(found)
    assert table.rows == ()
    assert "type: scale" in table.note
