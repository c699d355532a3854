"""Per step and per broadcast: how many leads got it, how many pressed or opened one of its
buttons after it, and how many unsubscribed with it as the last message they had.

A click is an event whose details name the message (`sequence` and `step`, or `broadcast`):
the engine adds them when a step's or broadcast's button is pressed or its tracked link
opened (bot/engine/requests.py, bot/outside.py). Events recorded before that carry neither
and count as nobody's click. The SQL helpers here are shared with the A/B section (ab.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import FromClause, Select, Subquery, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from bot.analytics.tables import Table, percent
from bot.analytics.window import Window
from bot.scenario.model import Scenario
from storage.models import Event

SENDS = ("step_sent", "broadcast_sent")


def step_sends(
    since: datetime,
    until: datetime,
    *,
    steps: Collection[tuple[str, str]] | None = None,
    by_variant: bool = False,
) -> Subquery:
    """One row per lead and step sent in [since, until) (and variant, with `by_variant`):
    lead_id, sequence, step[, variant], sent_at (the first send); of those (sequence, step)
    only, when named."""
    sequence = Event.payload["sequence"].as_string()
    step = Event.payload["step"].as_string()
    raw = select(
        Event.lead_id,
        sequence.label("sequence"),
        step.label("step"),
        Event.payload["variant"].as_string().label("variant"),
        Event.created_at,
    ).where(Event.name == "step_sent", Event.created_at >= since, Event.created_at < until)
    if steps is not None:
        raw = raw.where(or_(*(and_(sequence == seq, step == step_id) for seq, step_id in steps)))
    inner = raw.subquery()
    # Grouped over a subquery's columns: PostgreSQL does not see two renderings of a JSON
    # extraction (each with its own bound key) as the same GROUP BY expression.
    keys = [inner.c.lead_id, inner.c.sequence, inner.c.step]
    if by_variant:
        keys.append(inner.c.variant)
    return select(*keys, func.min(inner.c.created_at).label("sent_at")).group_by(*keys).subquery()


def broadcast_sends(since: datetime, until: datetime) -> Subquery:
    """One row per lead and broadcast sent in [since, until): lead_id, broadcast, sent_at."""
    inner = (
        select(
            Event.lead_id,
            Event.payload["broadcast"].as_string().label("broadcast"),
            Event.created_at,
        )
        .where(Event.name == "broadcast_sent", Event.created_at >= since, Event.created_at < until)
        .subquery()
    )
    keys = [inner.c.lead_id, inner.c.broadcast]
    return select(*keys, func.min(inner.c.created_at).label("sent_at")).group_by(*keys).subquery()


def click_events(scenario: Scenario) -> list[str]:
    """The events a click on a step's or broadcast's button records: a tracked link's
    `link_clicked` and the buttons' own events. Reading clicks by name keeps the read on
    the events' name index instead of every event's JSON."""
    return sorted({"link_clicked", *scenario.button_events()})


def last_clicks(names: Collection[str], until: datetime, *, broadcasts: bool = False) -> Subquery:
    """Per lead and message (sequence and step, or broadcast): its last click before
    `until`, as `at`. Joined to the sends, "clicked after the send" is `at >= sent_at`: one
    grouped pass over the clicks instead of a lookup per send."""
    keys = ("broadcast",) if broadcasts else ("sequence", "step")
    inner = (
        select(Event.lead_id, *(Event.payload[k].as_string().label(k) for k in keys))
        .add_columns(Event.created_at)
        .where(Event.name.in_(sorted(names)), Event.created_at < until)
        .subquery()
    )
    columns = [inner.c.lead_id, *(inner.c[k] for k in keys)]
    return select(*columns, func.max(inner.c.created_at).label("at")).group_by(*columns).subquery()


def last_of(latest: Select[Any]) -> Subquery:
    """`latest` (lead_id and a moment) as one row per lead with its last moment, `at`."""
    inner = latest.subquery()
    return (
        select(inner.c.lead_id, func.max(inner.c[1]).label("at"))
        .group_by(inner.c.lead_id)
        .subquery()
    )


def joined(sends: Subquery, *lasts: Subquery) -> FromClause:
    """The sends with each "last moment" subquery beside them, by lead (and by message for
    clicks); a send with none has NULLs there."""
    joined_: FromClause = sends
    for last in lasts:
        on = [last.c.lead_id == sends.c.lead_id]
        on += [last.c[k] == sends.c[k] for k in ("sequence", "step", "broadcast") if k in last.c]
        joined_ = joined_.outerjoin(last, and_(*on))
    return joined_


def after(last: Subquery, sends: Subquery) -> ColumnElement[bool]:
    """The lead's last moment in `last` is at or after the send: it happened after it."""
    return last.c.at >= sends.c.sent_at


def leads_where(condition: ColumnElement[bool], sends: Subquery) -> ColumnElement[int]:
    """COUNT(DISTINCT lead) of the rows of `sends` where `condition` holds."""
    return func.count(func.distinct(case((condition, sends.c.lead_id))))


@dataclass(frozen=True)
class SendRow:
    sequence: str | None  # None for a broadcast
    message: str  # the step's id, or the broadcast's
    sent: int
    clicked: int
    unsubscribed: int


@dataclass(frozen=True)
class SendFigures:
    steps: tuple[SendRow, ...]
    broadcasts: tuple[SendRow, ...]


async def figures(session: AsyncSession, scenario: Scenario, window: Window) -> SendFigures:
    since, until = window.since, window.until
    unsubscribed = await _unsubscribed(session, since, until)
    names = click_events(scenario)
    steps, clicks = step_sends(since, until), last_clicks(names, until)
    step_rows = await session.execute(
        select(
            steps.c.sequence,
            steps.c.step,
            func.count(func.distinct(steps.c.lead_id)),
            leads_where(after(clicks, steps), steps),
        )
        .select_from(joined(steps, clicks))
        .group_by(steps.c.sequence, steps.c.step)
    )
    order = {
        (seq_id, step.id): (n, i)
        for n, (seq_id, seq) in enumerate(scenario.sequences.items())
        for i, step in enumerate(seq.steps)
    }
    found = [
        SendRow(seq, step, sent, clicked, unsubscribed.get((seq, step), 0))
        for seq, step, sent, clicked in step_rows
    ]
    unknown = (len(order), 0)  # steps since removed from the scenario go last
    found.sort(
        key=lambda r: (order.get((r.sequence, r.message), unknown), r.sequence or "", r.message)
    )
    casts, cast_clicks = broadcast_sends(since, until), last_clicks(names, until, broadcasts=True)
    cast_rows = await session.execute(
        select(
            casts.c.broadcast,
            func.count(func.distinct(casts.c.lead_id)),
            leads_where(after(cast_clicks, casts), casts),
        )
        .select_from(joined(casts, cast_clicks))
        .group_by(casts.c.broadcast)
    )
    broadcasts = sorted(
        (
            SendRow(None, b or "", sent, clicked, unsubscribed.get((None, b), 0))
            for b, sent, clicked in cast_rows
        ),
        key=lambda r: r.message,
    )
    return SendFigures(tuple(found), tuple(broadcasts))


async def _unsubscribed(
    session: AsyncSession, since: datetime, until: datetime
) -> dict[tuple[str | None, str], int]:
    """(sequence, step) or (None, broadcast) -> leads whose `unsubscribed` (before `until`)
    followed that message as the last one they had been sent, sent in [since, until).
    A correlated subquery per unsubscribe finds that message: unsubscribes are few."""
    unsub, send = aliased(Event), aliased(Event)
    latest = (
        select(send.id)
        .where(
            send.lead_id == unsub.lead_id,
            send.name.in_(SENDS),
            send.created_at <= unsub.created_at,
        )
        .order_by(send.created_at.desc(), send.id.desc())
        .limit(1)
        .correlate(unsub)
        .scalar_subquery()
    )
    gone = (
        select(unsub.lead_id, latest.label("send_id"))
        .where(unsub.name == "unsubscribed", unsub.created_at >= since, unsub.created_at < until)
        .subquery()
    )
    last = (
        select(
            gone.c.lead_id,
            Event.payload["sequence"].as_string().label("sequence"),
            Event.payload["step"].as_string().label("step"),
            Event.payload["broadcast"].as_string().label("broadcast"),
        )
        .join(Event, Event.id == gone.c.send_id)
        .where(Event.created_at >= since)
        .subquery()
    )
    rows = await session.execute(
        select(
            last.c.sequence,
            last.c.step,
            last.c.broadcast,
            func.count(func.distinct(last.c.lead_id)),
        ).group_by(last.c.sequence, last.c.step, last.c.broadcast)
    )
    found: dict[tuple[str | None, str], int] = {}
    for sequence, step, broadcast, count in rows:
        key = (None, broadcast) if broadcast is not None else (sequence, step)
        found[key] = found.get(key, 0) + count
    return found


COLUMNS = ("Отправлено", "Кликнули", "% кликов", "Отписались", "% отписок")


def _figures_of(row: SendRow) -> tuple[int, int, float | None, int, float | None]:
    return (
        row.sent,
        row.clicked,
        percent(row.clicked, row.sent),
        row.unsubscribed,
        percent(row.unsubscribed, row.sent),
    )


def tables(figures: SendFigures) -> list[Table]:
    note = "клик — нажатие кнопки или переход по ссылке из этого сообщения после отправки"
    return [
        Table(
            "Шаги цепочек: отправки, клики и отписки",
            ("Цепочка", "Шаг", *COLUMNS),
            tuple((r.sequence, r.message, *_figures_of(r)) for r in figures.steps),
            note,
        ),
        Table(
            "Рассылки: отправки, клики и отписки",
            ("Рассылка", *COLUMNS),
            tuple((r.message, *_figures_of(r)) for r in figures.broadcasts),
            "отписка засчитывается последнему сообщению, которое лид получил до неё",
        ),
    ]
