"""The funnel of the leads that arrived in the window: how many reached each stage, where the
rest are now, and (with `by`) the same per source or offer.

A lead's `funnel_stage` is the furthest stage it reached, and a purchase moves it straight to
`customer` (bot.outside, bot.redemption), so counting a lead at every stage below its
`funnel_stage` put buyers who never met a manager under `handed_off`. The stages from
`qualified` up are therefore counted from what really happened:

- handed_off: a manager took the lead: a `stage_changes` row to `handed_off` (the claim), a
  handoff that was claimed (`claimed_at`, or claimed / won / lost), or `funnel_stage` still
  `handed_off`. A handoff that is only open is a card nobody took yet: that lead is qualified.
- customer: bought: a `purchase` event, a `stage_changes` row to `customer` (a purchase or a
  won deal; a merge carries it over), or `funnel_stage` `customer`. Split into «через
  менеджера» (also handed_off) and «без менеджера», and handed_off -> customer is measured on
  the first only.
- qualified: passed the qualify rule or a handoff request (a handoff row, a stage change to
  qualified or handed_off, `funnel_stage` qualified or handed_off) OR bought. A purchase is
  the strongest sign of a qualified lead, and counting buyers keeps every later stage a part
  of this one, so the conversions stay below 100 %.
- advocate: `funnel_stage` `advocate` (a referral reward; it needs no purchase).

The stages below `qualified` are counted by `funnel_stage` as before: whoever got further
passed them (a buyer from the website was engaged, whatever the chat saw). `bot.stats` (the
`leadbot stats` table and the managers' `/stats`) uses `count_funnel` too, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.analytics.tables import Cell, Table, percent
from bot.analytics.window import Window
from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES
from bot.scenario.model import Scenario
from storage.models import Event, Handoff, Lead, StageChange

_RANK = {stage: rank for rank, stage in enumerate(FUNNEL_STAGES)}
# Only leads this far can have a handoff, a purchase or a stage change up there: the
# evidence is looked up for them alone.
_UPPER = ("qualified", "handed_off", "customer", "advocate")
# The stage a conversion is measured from. Customers come from the qualified (the buyers
# without a manager never were handed off); those through a manager from handed_off.
PREVIOUS = {
    "engaged": "new",
    "contact": "engaged",
    "warming": "contact",
    "qualified": "warming",
    "handed_off": "qualified",
    "customer": "qualified",
    "advocate": "customer",
}
STAGE_LABELS = {
    "new": "пришли (new)",
    "engaged": "вовлеклись (engaged)",
    "contact": "оставили контакт (contact)",
    "warming": "прогрев (warming)",
    "qualified": "квалифицированы (qualified)",
    "handed_off": "у менеджера (handed_off)",
    "customer": "купили (customer)",
    "advocate": "рекомендуют (advocate)",
}
SIDE_LABELS = {
    "lost": "потеряны (lost)",
    "unsubscribed": "отписались (unsubscribed)",
    "blocked": "заблокировали бота (blocked)",
}
GROUP_NAMES = {"source": "Источник", "offer": "Предложение"}
NO_GROUP_NAMES = {"source": "(без источника)", "offer": "(без предложения)"}


@dataclass(frozen=True)
class Counts:
    """Leads of one period (and group): how many reached each stage, where they are now."""

    total: int
    reached: dict[str, int]  # funnel stage -> leads that reached it (see the module's note)
    side: dict[str, int]  # side stage -> leads in it now
    via_manager: int  # customers who were handed off
    without_manager: int  # customers who never were

    def conversion(self, stage: str) -> float | None:
        """Percent of the stage it is measured from (PREVIOUS) that reached `stage`."""
        if stage not in PREVIOUS:
            return None
        return percent(self.reached[stage], self.reached[PREVIOUS[stage]])

    def manager_conversion(self) -> float | None:
        """Percent of the handed-off leads that bought."""
        return percent(self.via_manager, self.reached["handed_off"])

    def share(self, stage: str) -> float | None:
        """Percent of all leads that reached this funnel stage, or are in this side stage."""
        count = self.side[stage] if stage in self.side else self.reached[stage]
        return percent(count, self.total)


@dataclass(frozen=True)
class FunnelFigures:
    by: str | None  # "source" or "offer" when split, else None
    overall: Counts
    groups: tuple[tuple[str | None, Counts], ...]  # largest first; None: no source / offer


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    # 1/0, not a boolean: both databases group and sum it alike; the CASE keeps the
    # subqueries away from the leads below `qualified`.
    return case((and_(Lead.funnel_stage.in_(_UPPER), condition), 1), else_=0)


def _changed_to(*stages: str) -> Any:
    return exists().where(StageChange.lead_id == Lead.id, StageChange.to_stage.in_(stages))


def _evidence() -> list[ColumnElement[int]]:
    """Per lead: took (a manager took it), bought, qualified (by rule or request)."""
    took = or_(
        Lead.funnel_stage == "handed_off",
        _changed_to("handed_off"),
        exists().where(
            Handoff.lead_id == Lead.id,
            or_(Handoff.claimed_at.is_not(None), Handoff.status.in_(("claimed", "won", "lost"))),
        ),
    )
    bought = or_(
        Lead.funnel_stage == "customer",
        _changed_to("customer"),
        exists().where(Event.lead_id == Lead.id, Event.name == "purchase"),
    )
    qualified = or_(
        Lead.funnel_stage.in_(("qualified", "handed_off")),
        _changed_to("qualified", "handed_off"),
        exists().where(Handoff.lead_id == Lead.id),
    )
    return [
        _flag(took).label("took"),
        _flag(bought).label("bought"),
        _flag(qualified).label("qualified"),
    ]


async def count_funnel(
    session: AsyncSession, *, since: datetime, until: datetime, by: str | None = None
) -> tuple[Counts, tuple[tuple[str | None, Counts], ...]]:
    """The funnel of leads created in [since, until), erased ones included (they stay,
    anonymous, for these counts); with `by` ("source" or "offer"), also per group."""
    group = {"source": Lead.source, "offer": Lead.offer}.get(by or "")
    per_lead = select(
        Lead.funnel_stage,
        Lead.stage,
        *_evidence(),
        *([group.label("grp")] if group is not None else []),
    ).where(Lead.created_at >= since, Lead.created_at < until)
    inner = per_lead.subquery()
    keys = [inner.c.funnel_stage, inner.c.stage, inner.c.took, inner.c.bought, inner.c.qualified]
    if group is not None:
        keys.append(inner.c.grp)
    # One row per combination: a few dozen, however many leads.
    rows = (await session.execute(select(*keys, func.count()).group_by(*keys))).all()
    overall = _counts([(*row[:5], row[-1]) for row in rows])
    if group is None:
        return overall, ()
    buckets: dict[str | None, list[Any]] = {}
    for row in rows:
        buckets.setdefault(row[5], []).append((*row[:5], row[-1]))
    groups = [(name, _counts(bucket)) for name, bucket in buckets.items()]
    groups.sort(key=lambda item: (-item[1].total, item[0] is None, item[0] or ""))
    return overall, tuple(groups)


def _counts(rows: list[Any]) -> Counts:
    """Counts from (funnel_stage, stage, took, bought, qualified, leads) rows."""
    reached = dict.fromkeys(FUNNEL_STAGES, 0)
    side = dict.fromkeys(SIDE_STAGES, 0)
    total = via = without = 0
    for funnel_stage, stage, took, bought, qualified, count in rows:
        total += count
        # A stage name the scenario no longer knows still means the lead came in.
        rank = _RANK.get(funnel_stage, 0)
        for below in FUNNEL_STAGES[: min(rank, _RANK["warming"]) + 1]:
            reached[below] += count
        if took or bought or qualified:
            reached["qualified"] += count
        if took:
            reached["handed_off"] += count
        if bought:
            reached["customer"] += count
            if took:
                via += count
            else:
                without += count
        if funnel_stage == "advocate":
            reached["advocate"] += count
        if stage in side:
            side[stage] += count
    return Counts(total, reached, side, via, without)


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> FunnelFigures:
    by = window.by if window.by in ("source", "offer") else None
    overall, groups = await count_funnel(session, since=window.since, until=window.until, by=by)
    return FunnelFigures(by=by, overall=overall, groups=groups)


def _stage_rows(c: Counts) -> list[tuple[Cell, ...]]:
    rows: list[tuple[Cell, ...]] = []
    for stage in FUNNEL_STAGES:
        rows.append((STAGE_LABELS[stage], c.reached[stage], c.conversion(stage), c.share(stage)))
        if stage == "customer":
            via = c.via_manager
            rows.append(("  через менеджера", via, c.manager_conversion(), percent(via, c.total)))
            rows.append(
                ("  без менеджера", c.without_manager, None, percent(c.without_manager, c.total))
            )
    return rows


def tables(figures: FunnelFigures) -> list[Table]:
    c = figures.overall
    funnel = Table(
        title=f"Воронка: лиды, пришедшие за период ({c.total})",
        columns=("Стадия", "Лидов", "Из предыдущей, %", "Из пришедших, %"),
        rows=tuple(_stage_rows(c)),
        note=(
            "«Купили» — доля от квалифицированных; «через менеджера» — от тех, кто был у "
            "менеджера; «без менеджера» — покупка пришла через API, промокод или сайт, "
            "менеджер лида не брал. Квалифицированы — по правилу, по просьбе или купили."
        ),
    )
    side = Table(
        title="Где остальные сейчас",
        columns=("Стадия", "Лидов", "Из пришедших, %"),
        rows=tuple((SIDE_LABELS[s], c.side[s], c.share(s)) for s in SIDE_STAGES),
    )
    result = [funnel, side]
    if figures.by is not None:
        result.append(_groups_table(figures))
    return result


def _groups_table(figures: FunnelFigures) -> Table:
    assert figures.by is not None
    rows = tuple(
        (
            NO_GROUP_NAMES[figures.by] if name is None else name,
            g.total,
            *(g.reached[s] for s in FUNNEL_STAGES[1:6]),
            g.via_manager,
            g.without_manager,
            g.reached["advocate"],
            *(g.side[s] for s in SIDE_STAGES),
            g.share("qualified"),
            g.share("customer"),
        )
        for name, g in figures.groups
    )
    by_what = "источникам" if figures.by == "source" else "предложениям"
    return Table(
        title=f"Воронка по {by_what}",
        columns=(
            GROUP_NAMES[figures.by],
            "Пришли",
            "Вовлеклись",
            "Контакт",
            "Прогрев",
            "Квалиф.",
            "У менеджера",
            "Купили через менеджера",
            "Купили без менеджера",
            "Рекомендуют",
            "Потеряны",
            "Отписались",
            "Заблокировали",
            "Квалиф. из пришедших, %",
            "Купили из пришедших, %",
        ),
        rows=rows,
    )
