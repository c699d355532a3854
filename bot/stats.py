"""Funnel statistics: how many leads of a period reached each hourglass stage, and where they
left it, for `leadbot stats` and the managers' `/stats`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics.funnel import Counts, count_funnel
from bot.analytics.tables import percent
from bot.durations import parse_duration
from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES

GroupBy = Literal["source", "offer"]
# What a marketer reads when a period is mistyped (bot.durations.DURATION_HINT, in Russian).
PERIOD_HINT = "нужно целое число и единица m, h, d или w (30m, 1h, 2d, 1w)"
NO_GROUP = "(none)"
# Sources in the managers' summary: enough to see the leaders, few enough for one message.
TOP_SOURCES = 10


# Leads of one period (and group): how many reached each stage (counted as in the report's
# funnel, bot.analytics.funnel: a purchase from outside is not a handoff), where they are now.
Cohort = Counts


@dataclass(frozen=True)
class FunnelReport:
    """Leads created in [since, until); `groups` (largest first) only when asked `by`."""

    since: datetime
    until: datetime
    by: GroupBy | None
    overall: Cohort
    groups: dict[str, Cohort]


def period_bounds(
    *,
    now: datetime,
    period: str | None = None,
    since: str | None = None,
    until: str | None = None,
    zone: tzinfo = UTC,
) -> tuple[datetime, datetime]:
    """[since, until) from what an operator types: a duration back from now ("30d"), or
    days YYYY-MM-DD of `zone` (the report's is the scenario's: a marketer's "November" is
    November where the business is) with `until` the last day included. ValueError says
    what is wrong."""
    if since is None:
        if until is not None:
            raise ValueError("--until нужен вместе с --since")
        try:
            return now - parse_duration(period or "30d"), now
        except ValueError:
            raise ValueError(f"--period {period!r}: {PERIOD_HINT}") from None
    start = _midnight(since, "--since", zone)
    end = _midnight(until, "--until", zone, after=1) if until is not None else now
    if end <= start:
        raise ValueError("--until раньше --since")
    return start, end


def _midnight(text: str, option: str, zone: tzinfo, after: int = 0) -> datetime:
    """The start of day `text` (plus `after` days) in `zone`, in UTC."""
    try:
        day = date.fromisoformat(text) + timedelta(days=after)
    except ValueError:
        raise ValueError(f"{option} {text!r}: нужна дата ГГГГ-ММ-ДД") from None
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


async def funnel_report(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    by: GroupBy | None = None,
) -> FunnelReport:
    """The funnel of leads created in [since, until), erased ones included (they stay,
    anonymous, for these counts); with `by`, also per source or offer."""
    overall, found = await count_funnel(session, since=since, until=until, by=by)
    groups = {NO_GROUP if name is None else name: cohort for name, cohort in found}
    ordered = dict(sorted(groups.items(), key=lambda item: (-item[1].total, item[0])))
    return FunnelReport(since=since, until=until, by=by, overall=overall, groups=ordered)


def _format_percent(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}".removesuffix(".0") + "%"


def _table(cohort: Cohort, indent: str = "") -> list[str]:
    width = max(len(stage) for stage in (*FUNNEL_STAGES, *SIDE_STAGES))
    lines = [f"{indent}{'stage':<{width}}  {'leads':>6}  {'from previous':>13}  {'of all':>6}"]
    for stage in FUNNEL_STAGES:
        conversion = _format_percent(cohort.conversion(stage))
        share = _format_percent(cohort.share(stage))
        lines.append(
            f"{indent}{stage:<{width}}  {cohort.reached[stage]:>6}  {conversion:>13}  {share:>6}"
        )
        if stage == "customer":
            # Who bought through a manager (measured on handed_off) and who without one.
            for label, count, of_previous in (
                ("  by manager", cohort.via_manager, cohort.manager_conversion()),
                ("  no manager", cohort.without_manager, None),
            ):
                conversion = _format_percent(of_previous)
                share = _format_percent(percent(count, cohort.total))
                lines.append(f"{indent}{label:<{width}}  {count:>6}  {conversion:>13}  {share:>6}")
    lines.append(f"{indent}where the rest are now:")
    for stage in SIDE_STAGES:
        share = _format_percent(cohort.share(stage))
        lines.append(f"{indent}{stage:<{width}}  {cohort.side[stage]:>6}  {'':>13}  {share:>6}")
    return lines


def format_report(report: FunnelReport) -> str:
    """The report as a plain-text table for the terminal; each group below the overall one."""
    period = f"{report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC"
    lines = [f"Leads created {period}: {report.overall.total}", ""]
    lines += _table(report.overall)
    for name, cohort in report.groups.items():
        leads = "lead" if cohort.total == 1 else "leads"
        lines += ["", f"{report.by} {name}: {cohort.total} {leads}", *_table(cohort, "  ")]
    return "\n".join(lines)


async def managers_summary(session: AsyncSession, *, now: datetime) -> str:
    """The `/stats` answer in the managers' chat: the funnel today, for 7 and 30 days side by
    side, and the top sources of 30 days. Plain text, no table: Telegram shows it in a
    proportional font."""
    return summary_text(*await summary_reports(session, now=now))


async def summary_reports(
    session: AsyncSession, *, now: datetime
) -> tuple[FunnelReport, FunnelReport, FunnelReport]:
    """The funnels of `/stats`: today (UTC), 7 days, and 30 days by source."""
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = await funnel_report(session, since=day_start, until=now)
    week = await funnel_report(session, since=now - timedelta(days=7), until=now)
    month = await funnel_report(session, since=now - timedelta(days=30), until=now, by="source")
    return today, week, month


def summary_text(today: FunnelReport, week: FunnelReport, month: FunnelReport) -> str:
    periods = (today.overall, week.overall, month.overall)

    lines = ["Воронка: сегодня / 7 дней / 30 дней (лиды по дате прихода, UTC)"]
    for stage in FUNNEL_STAGES:
        lines.append(f"{stage}: " + " / ".join(str(c.reached[stage]) for c in periods))
        if stage == "customer":
            without = " / ".join(str(c.without_manager) for c in periods)
            lines.append(f"  из них без менеджера: {without}")
    lines.append("Сейчас вне воронки:")
    for stage in SIDE_STAGES:
        lines.append(f"{stage}: " + " / ".join(str(c.side[stage]) for c in periods))

    lines += ["", "Источники за 30 дней (лидов, из них дошли до qualified):"]
    top = list(month.groups.items())[:TOP_SOURCES]
    for name, cohort in top:
        source = "без источника" if name == NO_GROUP else name
        qualified = cohort.reached["qualified"]
        lines.append(f"{source}: {cohort.total}, qualified {qualified}")
    if not top:
        lines.append("лидов не было")
    elif len(month.groups) > TOP_SOURCES:
        lines.append(f"и ещё источников: {len(month.groups) - TOP_SOURCES}")
    return "\n".join(lines)
