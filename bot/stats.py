"""Funnel statistics: how many leads of a period reached each hourglass stage, and where they
left it, for `leadbot stats` and the managers' `/stats`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.durations import DURATION_HINT, parse_duration
from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES
from bot.stages import RANK
from storage.models import Lead

GroupBy = Literal["source", "offer"]
NO_GROUP = "(none)"
# Sources in the managers' summary: enough to see the leaders, few enough for one message.
TOP_SOURCES = 10


@dataclass
class Cohort:
    """Leads of one period (and group): how many reached each funnel stage, where they left."""

    total: int = 0
    reached: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FUNNEL_STAGES, 0))
    side: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDE_STAGES, 0))

    def add(self, funnel_stage: str, stage: str, count: int) -> None:
        self.total += count
        # A stage name the scenario no longer knows still means the lead came in.
        rank = RANK.get(funnel_stage, 0)
        for reached in FUNNEL_STAGES[: rank + 1]:
            self.reached[reached] += count
        if stage in self.side:
            self.side[stage] += count

    def conversion(self, stage: str) -> float | None:
        """Percent of the previous funnel stage that reached this one; None for the first."""
        rank = RANK[stage]
        if rank == 0:
            return None
        return _percent(self.reached[stage], self.reached[FUNNEL_STAGES[rank - 1]])

    def share(self, stage: str) -> float | None:
        """Percent of all leads that reached this funnel stage, or are in this side stage."""
        count = self.side[stage] if stage in self.side else self.reached[stage]
        return _percent(count, self.total)


@dataclass(frozen=True)
class FunnelReport:
    """Leads created in [since, until); `groups` (largest first) only when asked `by`."""

    since: datetime
    until: datetime
    by: GroupBy | None
    overall: Cohort
    groups: dict[str, Cohort]


def period_bounds(
    *, now: datetime, period: str | None = None, since: str | None = None, until: str | None = None
) -> tuple[datetime, datetime]:
    """[since, until) from what an operator types: a duration back from now ("30d"), or UTC
    days YYYY-MM-DD with `until` the last day included. ValueError says what is wrong."""
    if since is None:
        if until is not None:
            raise ValueError("--until needs --since")
        try:
            return now - parse_duration(period or "30d"), now
        except ValueError:
            raise ValueError(f"--period {period!r}: {DURATION_HINT}") from None
    start = _utc_day(since, "--since")
    end = _utc_day(until, "--until") + timedelta(days=1) if until is not None else now
    if end <= start:
        raise ValueError("--until is before --since")
    return start, end


def _utc_day(text: str, option: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r}: use YYYY-MM-DD") from None
    return datetime.combine(day, time(), tzinfo=UTC)


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100 * part / whole


async def funnel_report(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    by: GroupBy | None = None,
) -> FunnelReport:
    """The funnel of leads created in [since, until), erased ones included (they stay,
    anonymous, for these counts); with `by`, also per source or offer."""
    columns = [Lead.funnel_stage, Lead.stage]
    if by is not None:
        columns.append({"source": Lead.source, "offer": Lead.offer}[by])
    # One row per (funnel stage, current stage, group): a handful, however many leads.
    query = (
        select(*columns, func.count())
        .where(Lead.created_at >= since, Lead.created_at < until)
        .group_by(*columns)
    )
    overall = Cohort()
    groups: dict[str, Cohort] = {}
    for row in await session.execute(query):
        funnel_stage, stage, count = row[0], row[1], row[-1]
        overall.add(funnel_stage, stage, count)
        if by is not None:
            group = row[2] if row[2] is not None else NO_GROUP
            groups.setdefault(group, Cohort()).add(funnel_stage, stage, count)
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
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = await funnel_report(session, since=day_start, until=now)
    week = await funnel_report(session, since=now - timedelta(days=7), until=now)
    month = await funnel_report(session, since=now - timedelta(days=30), until=now, by="source")
    periods = (today.overall, week.overall, month.overall)

    lines = ["Воронка: сегодня / 7 дней / 30 дней (лиды по дате прихода, UTC)"]
    for stage in FUNNEL_STAGES:
        lines.append(f"{stage}: " + " / ".join(str(c.reached[stage]) for c in periods))
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
