"""`leadbot report --html`: the report as one self-contained page, each section's charts above
its tables. Drawing is CPU work: callers in async code run `render` in a thread."""

from __future__ import annotations

from decimal import Decimal

from matplotlib.figure import Figure

from bot.analytics import charts, html
from bot.analytics.ab import AbFigures, StepTest
from bot.analytics.cohorts import Cohorts
from bot.analytics.conversation import ConversationFigures
from bot.analytics.funnel import STAGE_LABELS, FunnelFigures
from bot.analytics.nps import NpsFigures, QuestionNps
from bot.analytics.report import SECTIONS, Report
from bot.analytics.rfm import RfmFigures
from bot.analytics.sources import SourceFigures
from bot.scenario.fields import FUNNEL_STAGES

NAMELESS = "без источника"


def render(report: Report) -> str:
    w = report.window
    since, until = w.since.astimezone(w.zone), w.until.astimezone(w.zone)
    subtitle = f"{since:%d.%m.%Y %H:%M} — {until:%d.%m.%Y %H:%M} ({w.zone.key})"
    sections = []
    for section in SECTIONS:
        if section.key not in report.figures:
            continue
        drawn = [charts.svg(fig) for fig in _charts(report.figures[section.key])]
        sections.append(html.Section(section.title, drawn, report.tables(section.key)))
    return html.page("Отчёт Leadbot", subtitle, sections)


def _charts(figures: object) -> list[Figure]:
    """The pictures of a section; a section with nothing worth drawing has none."""
    if isinstance(figures, FunnelFigures):
        reached = figures.overall.reached
        stages = [(STAGE_LABELS[s], reached[s]) for s in FUNNEL_STAGES]
        return [charts.funnel(stages, "Воронка: лиды, пришедшие за период")]
    if isinstance(figures, SourceFigures):
        return _money(figures)
    if isinstance(figures, Cohorts):
        return [
            charts.heatmap(
                figures.week_labels,
                figures.offset_labels,
                shares,
                f"{what}: доля лидов недели прихода, %",
                "{:.0f}%",
            )
            for what, shares in (
                ("Квалифицированы", figures.qualified),
                ("Купили", figures.customers),
            )
        ]
    if isinstance(figures, RfmFigures) and figures.customers:
        titles = [s.title for s in figures.segments]
        return [
            charts.bars(
                titles,
                {"Выручка": [float(s.revenue) for s in figures.segments]},
                "Выручка по RFM-сегментам",
                "₽",
            )
        ]
    if isinstance(figures, NpsFigures):
        return [_nps(q) for q in figures.questions if q.score.answers]
    if isinstance(figures, AbFigures):
        return [_ab(test) for test in figures.tests]
    if isinstance(figures, ConversationFigures):
        return [
            charts.funnel(
                [("Взяли", talk.took), *((s.label, s.reached) for s in talk.steps)],
                f"«{talk.title}»: сколько дошло до каждого шага",
            )
            for talk in figures.offers
            if talk.took
        ]
    return []


def _money(figures: SourceFigures) -> list[Figure]:
    rows = [r for r in figures.sources if r.leads or r.spend]
    if not rows:
        return []
    names = [r.key or NAMELESS for r in rows]
    return [
        charts.bars(
            names,
            {
                "Выручка": [float(r.revenue) for r in rows],
                "Расход": [_float(r.spend) for r in rows],
            },
            "Выручка и расход по источникам",
            "₽",
        ),
        charts.bars(
            names,
            {"CPL": [_float(r.cpl) for r in rows], "CPA": [_float(r.cpa) for r in rows]},
            "Цена лида и клиента по источникам",
            "₽",
        ),
    ]


def _nps(question: QuestionNps) -> Figure:
    periods = question.weeks or question.months
    return charts.lines(
        [p.label for p in periods],
        {"NPS": [p.score.nps for p in periods]},
        f"NPS: {question.text}",
        "NPS",
    )


def _ab(test: StepTest) -> Figure:
    variants = test.variants
    names = [v.variant for v in variants]

    def rate(part: str) -> list[float | None]:
        return [100 * getattr(v, part) / v.sent if v.sent else None for v in variants]

    return charts.bars(
        names,
        {"Клик, %": rate("clicked"), "Цель, %": rate("goal"), "Покупка, %": rate("purchased")},
        f"A/B {test.sequence}.{test.step}: цель — {test.goal}",
        "%",
    )


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
