"""Where prospects leave inside an offer: of those who took it in the window, how many met
each step (the consent, each question in the order the offer asks them, the magnet) and what
they did there.

The bot does not record the moment a question is asked, so "reached" is read from what the
lead did: a lead reached a step when it passed every earlier one (answered, skipped, or had
the answer already, so the bot did not ask) or left a trace at this step or a later one
(a lead the bot passed by without a trace still reached what follows). At each step a lead is
counted once, in the first of: answered (consent given), skipped, passed without being asked
(«уже знали»), refused (consent declined; a required question refused ends the offer), left
(reached it and went no further). Everything after the first take of the offer in the window
counts, up to now: the answer to a question asked on Friday evening may come on Monday.

The figures are one aggregate query per offer: the per-lead flags (a MAX over the lead's
events, found through the index on events(lead_id, name)) grouped into their few distinct
combinations, which are then walked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from bot.analytics.tables import Cell, Table, percent
from bot.analytics.window import Window
from bot.answers import CONTACT_TYPES
from bot.scenario.model import Offer, Scenario
from storage.models import Event

# The events that say what a lead did inside an offer.
_TRACES = (
    "answered",
    "question_skipped",
    "question_refused",
    "consent_given",
    "consent_declined",
    "marketing_consent_given",
    "marketing_consent_declined",
    "contact_shared",
    "magnet_delivered",
)
PERSONAL_DATA_STEP = "consent"
MARKETING_STEP = "marketing"


@dataclass(frozen=True)
class Step:
    """One step of an offer's conversation; the five outcomes add up to `reached`."""

    key: str  # "consent", "marketing" or the question's id
    label: str
    reached: int
    answered: int  # a question answered, a consent given
    skipped: int
    known: int  # passed without being asked: answered or shared before
    refused: int  # a required question refused, a consent declined
    left: int  # reached it and did nothing more


@dataclass(frozen=True)
class OfferTalk:
    offer: str
    title: str
    took: int  # leads who took the offer in the window
    steps: tuple[Step, ...]
    delivered: int  # of them, got the magnet


@dataclass(frozen=True)
class ConversationFigures:
    offers: tuple[OfferTalk, ...]  # in the scenario's order


@dataclass(frozen=True)
class _Spec:
    """What to look for at one step: which flag columns hold each outcome."""

    key: str
    label: str
    answered: str
    skipped: str | None
    known: str | None
    refused: str | None
    refusal_passes: bool = False  # advertising: either answer lets the offer go on


def _has_consent_step(offer: Offer) -> bool:
    # bot.engine.offers.resume asks the consents before questions and before a chain.
    return bool(offer.ask) or offer.then.start is not None


def _specs(scenario: Scenario, offer: Offer) -> list[_Spec]:
    specs = []
    if _has_consent_step(offer):
        specs.append(
            _Spec(
                PERSONAL_DATA_STEP,
                "согласие на обработку данных",
                "pd_yes",
                None,
                "pd_before",
                "pd_no",
            )
        )
        if scenario.consent.marketing:
            specs.append(
                _Spec(
                    MARKETING_STEP,
                    "согласие на рассылку",
                    "mk_yes",
                    None,
                    "mk_before",
                    "mk_no",
                    refusal_passes=True,
                )
            )
    for index, question_id in enumerate(offer.ask):
        question = scenario.questions.get(question_id)
        text = question.text if question is not None else ""
        label = f"{question_id}: {text[:40]}" if text else question_id
        specs.append(_Spec(question_id, label, f"a{index}", f"s{index}", f"k{index}", f"r{index}"))
    return specs


def _flag_columns(
    scenario: Scenario, offer_id: str, offer: Offer, taken: Any, e: Any
) -> list[ColumnElement[int]]:
    """Per lead, 1 when its events show the thing, else 0: MAX over the lead's events."""
    after = e.created_at >= taken.c.t0
    before = e.created_at < taken.c.t0
    question = e.payload["question"].as_string()
    of_offer = e.payload["offer"].as_string() == offer_id

    def flag(name: str, condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.max(case((condition, 1), else_=0)).label(name)

    columns = [
        flag("pd_yes", and_(e.name == "consent_given", after)),
        flag("pd_before", and_(e.name == "consent_given", before)),
        flag("pd_no", and_(e.name == "consent_declined", after, of_offer)),
        flag("mk_yes", and_(e.name == "marketing_consent_given", after)),
        flag(
            "mk_before",
            and_(e.name.in_(("marketing_consent_given", "marketing_consent_declined")), before),
        ),
        flag("mk_no", and_(e.name == "marketing_consent_declined", after)),
        flag("delivered", and_(e.name == "magnet_delivered", after, of_offer)),
    ]
    names = [q for q, spec in scenario.questions.items() if spec.type == "name"]
    for index, question_id in enumerate(offer.ask):
        spec = scenario.questions.get(question_id)
        kind = spec.type if spec is not None else "text"
        # What bot.engine.offers.known reads: the answer, a name answered to any name
        # question, or a contact of the kind (shared or given before).
        same = names if kind == "name" else [question_id]
        known = and_(e.name == "answered", question.in_(same))
        if kind in CONTACT_TYPES:
            shared = and_(e.name == "contact_shared", e.payload["kind"].as_string() == kind)
            known = or_(known, shared)
        columns += [
            flag(f"a{index}", and_(e.name == "answered", question == question_id, after)),
            flag(
                f"s{index}",
                and_(e.name == "question_skipped", question == question_id, of_offer, after),
            ),
            flag(f"k{index}", and_(known, before)),
            flag(
                f"r{index}",
                and_(e.name == "question_refused", question == question_id, of_offer, after),
            ),
        ]
    return columns


async def _combinations(
    session: AsyncSession,
    scenario: Scenario,
    offer_id: str,
    offer: Offer,
    since: datetime,
    until: datetime,
) -> list[tuple[dict[str, int], int]]:
    """The distinct per-lead flag combinations among the leads who took the offer, counted."""
    taken = (
        select(Event.lead_id, func.min(Event.created_at).label("t0"))
        .where(
            Event.name == "offer_taken",
            Event.created_at >= since,
            Event.created_at < until,
            Event.payload["offer"].as_string() == offer_id,
        )
        .group_by(Event.lead_id)
        .subquery()
    )
    e = aliased(Event)
    flags = _flag_columns(scenario, offer_id, offer, taken, e)
    per_lead = (
        select(taken.c.lead_id, *flags)
        .select_from(taken.outerjoin(e, and_(e.lead_id == taken.c.lead_id, e.name.in_(_TRACES))))
        .group_by(taken.c.lead_id)
        .subquery()
    )
    keys = [per_lead.c[column.name] for column in flags]
    # A lead with no trace at all gets NULL from MAX over the outer join: the same as 0.
    cleaned = [func.coalesce(key, literal(0)).label(key.name) for key in keys]
    grouped = select(*cleaned, func.count()).group_by(*cleaned)
    rows = (await session.execute(grouped)).all()
    names = [key.name for key in keys]
    return [(dict(zip(names, row[:-1], strict=True)), row[-1]) for row in rows]


def _walk(specs: list[_Spec], combos: list[tuple[dict[str, int], int]]) -> tuple[Step, ...]:
    """Each combination's path through the steps, summed (a loop over a few dozen rows)."""
    tally = {spec.key: dict.fromkeys(("reached", "a", "s", "k", "r", "l"), 0) for spec in specs}
    for flags, count in combos:

        def on(column: str | None, flags: dict[str, int] = flags) -> bool:
            return column is not None and bool(flags[column])

        # later[i]: a trace at step i or after it (the magnet counts as the last step's).
        later = [False] * (len(specs) + 1)
        later[-1] = on("delivered")
        for i in range(len(specs) - 1, -1, -1):
            spec = specs[i]
            trace = on(spec.answered) or on(spec.skipped) or on(spec.refused)
            later[i] = later[i + 1] or trace
        reached = True  # taking the offer is the first move
        for i, spec in enumerate(specs):
            if not reached:
                break
            answered, skipped, refused = on(spec.answered), on(spec.skipped), on(spec.refused)
            passed = answered or skipped or on(spec.known) or (refused and spec.refusal_passes)
            goes_on = later[i + 1] or passed
            cell = tally[spec.key]
            cell["reached"] += count
            if answered:
                cell["a"] += count
            elif skipped:
                cell["s"] += count
            elif refused and spec.refusal_passes:
                cell["r"] += count
            elif goes_on:
                cell["k"] += count
            elif refused:
                cell["r"] += count
            else:
                cell["l"] += count
            reached = goes_on
    return tuple(
        Step(
            spec.key,
            spec.label,
            tally[spec.key]["reached"],
            tally[spec.key]["a"],
            tally[spec.key]["s"],
            tally[spec.key]["k"],
            tally[spec.key]["r"],
            tally[spec.key]["l"],
        )
        for spec in specs
    )


async def figures(
    session: AsyncSession, scenario: Scenario, window: Window
) -> ConversationFigures:
    talks = []
    for offer_id, offer in scenario.offers.items():
        combos = await _combinations(
            session, scenario, offer_id, offer, window.since, window.until
        )
        specs = _specs(scenario, offer)
        took = sum(count for _, count in combos)
        delivered = sum(count for flags, count in combos if flags["delivered"])
        talks.append(OfferTalk(offer_id, offer.title, took, _walk(specs, combos), delivered))
    return ConversationFigures(tuple(talks))


def tables(figures: ConversationFigures) -> list[Table]:
    summary = Table(
        title="Предложения: взяли и дошли до материала",
        columns=("Предложение", "Взяли", "Получили материал", "Получили, %"),
        rows=tuple(
            (f"{t.title} ({t.offer})", t.took, t.delivered, percent(t.delivered, t.took))
            for t in figures.offers
        ),
    )
    result = [summary]
    for talk in figures.offers:
        if not talk.took:
            continue
        rows: list[tuple[Cell, ...]] = [
            ("взяли предложение", talk.took, None, None, None, None, None, None)
        ]
        for s in talk.steps:
            rows.append(
                (
                    s.label,
                    s.reached,
                    s.answered,
                    s.skipped,
                    s.known,
                    s.refused,
                    s.left,
                    percent(s.left, s.reached),
                )
            )
        rows.append(("получили материал", talk.delivered, None, None, None, None, None, None))
        result.append(
            Table(
                title=f"Разговор в предложении «{talk.title}» ({talk.offer})",
                columns=(
                    "Шаг",
                    "Дошли",
                    "Ответили / дали",
                    "Пропустили",
                    "Уже знали",
                    "Отказались",
                    "Ушли здесь",
                    "Ушли, % от дошедших",
                ),
                rows=tuple(rows),
                note=(
                    "Момент вопроса бот не записывает: «дошли» — прошли прежние шаги или "
                    "оставили след здесь или дальше; «уже знали» — бот не спрашивал, ответ "
                    "был раньше; «ушли здесь» — дошли и ничего не ответили."
                ),
            )
        )
    return result
