"""The managers' `/stats` answer: the funnel of the last 30 days as a picture, its key figures
as the picture's caption, and the longer text (today, 7 and 30 days, top sources) beside it.

The figures are read in one short transaction (`managers_figures`); the picture is drawn
after it, in a thread (`stats_answer`), so that no database lock is held while matplotlib
works and the event loop goes on serving."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics import sources
from bot.analytics.funnel import STAGE_LABELS
from bot.analytics.tables import percent, shown
from bot.analytics.window import Window
from bot.scenario.fields import FUNNEL_STAGES
from bot.scenario.model import Scenario
from bot.stats import FunnelReport, summary_reports, summary_text

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024  # Telegram's limit for a photo's caption
PICTURE_DPI = 100  # 800 px wide: sharp in a chat, a few tens of kilobytes
# The caption's lines: the stages a manager acts on.
KEY_STAGES = ("contact", "qualified", "handed_off", "customer")


@dataclass(frozen=True)
class ManagersFigures:
    """What `/stats` shows, read from the database: the text summary and the 30-day funnel."""

    text: str
    month: FunnelReport
    money: sources.Row  # the 30 days' leads: spend, customers, revenue, CPA, ROMI


@dataclass(frozen=True)
class StatsAnswer:
    """`/stats` as sent: a picture (None when it could not be drawn) with `caption` under
    it, and `text`, a message of its own."""

    caption: str
    text: str
    picture: bytes | None


async def managers_figures(
    session: AsyncSession, scenario: Scenario, *, now: datetime
) -> ManagersFigures:
    # The 30 days' funnel of the text is the picture's too: read once.
    today, week, month = await summary_reports(session, now=now)
    text = summary_text(today, week, month)
    zone = ZoneInfo(scenario.settings.timezone)
    window = Window(since=month.since, until=month.until, now=now, zone=zone)
    money = (await sources.figures(session, scenario, window)).total
    return ManagersFigures(text=text, month=month, money=money)


def _share(part: int, whole: int) -> str:
    value = percent(part, whole)
    return "—" if value is None else f"{shown(value)}%"


def key_figures(month: FunnelReport, money: sources.Row) -> str:
    """The caption: leads of 30 days, how many reached the stages managers act on, each with
    its share of all leads, and what they brought against what they cost."""
    reached = month.overall.reached
    total = month.overall.total
    lines = [
        "Воронка за 30 дней (лиды по дате прихода)",
        f"Лидов: {shown(total)}",
        *(
            f"{STAGE_LABELS[stage]}: {shown(reached[stage])} ({_share(reached[stage], total)})"
            for stage in KEY_STAGES
        ),
        f"Выручка: {shown(money.revenue)} ₽ от {shown(money.customers)} клиентов",
    ]
    if money.spend is not None:
        lines.append(
            f"Расход: {shown(money.spend)} ₽, CPA {shown(money.cpa)} ₽, ROMI {shown(money.romi)}%"
        )
    return "\n".join(lines)[:CAPTION_LIMIT]


def stats_picture(month: FunnelReport) -> bytes:
    """The PNG of `/stats`: the funnel of `month` by stage. CPU-bound: run it in a thread."""
    # Imported here: matplotlib takes half a second to load, which every `leadbot` command
    # (they all import the handoff desk) would otherwise pay before doing anything.
    from bot.analytics import charts

    stages = [(STAGE_LABELS[stage], month.overall.reached[stage]) for stage in FUNNEL_STAGES]
    since, until = month.since, month.until
    title = f"Воронка: {since:%d.%m.%Y} — {until:%d.%m.%Y}, лидов {shown(month.overall.total)}"
    return charts.png(charts.funnel(stages, title), dpi=PICTURE_DPI)


async def stats_answer(figures: ManagersFigures) -> StatsAnswer:
    """The answer with its picture drawn off the event loop; without the picture when
    drawing fails (the figures still go, as text)."""
    try:
        picture: bytes | None = await asyncio.to_thread(stats_picture, figures.month)
    except Exception:  # a picture is a nicety: the text must reach the managers anyway
        log.exception("the /stats picture could not be drawn")
        picture = None
    caption = key_figures(figures.month, figures.money)
    return StatsAnswer(caption=caption, text=figures.text, picture=picture)
