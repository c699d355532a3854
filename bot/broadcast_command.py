"""`leadbot broadcast`: queue a broadcast for a segment (or, with --dry-run, show whom it would
reach, the message and when it would go out), follow its runs (--status) and cancel what is
still queued of one (--cancel). The running bot sends; this only writes the outbox."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import yaml
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import broadcast_texts as texts
from bot import broadcasts, sequences
from bot.app import prepare_database
from bot.clock import SystemClock
from bot.delivery.ad_limit import AdLog
from bot.delivery.outcomes import ADVERTISING
from bot.pacing import DEFAULT_LIMITS
from bot.scenario.checks import SIMPLE_PLACEHOLDERS, placeholders
from bot.scenario.conditions import Rule
from bot.scenario.loader import LoadedScenario, load_scenario
from bot.scenario.model import Broadcast, Scenario, parse_local_moment
from bot.settings import Settings
from bot.timing import out_of_quiet_hours, zone_of
from storage import broadcast_runs
from storage.database import Database
from storage.models import BroadcastRun, OutboxRow

RUNS_SHOWN = 20  # runs `--status` lists without an id
AD_LOG_FIELDS = (
    OutboxRow.lead_id,
    OutboxRow.kind,
    OutboxRow.payload,
    OutboxRow.status,
    OutboxRow.sent_at,
    OutboxRow.due_at,
)

# `missing(url, given)`: the CLI's refusal of a SQLite file that is not there (it prints why).
Missing = Callable[[str, str | None], bool]


class Refused(Exception):
    """The command cannot go on; the message says why, in one line."""


@dataclass(frozen=True)
class Request:
    """A broadcast as the command line and the scenario describe it."""

    broadcast_id: str
    text: str
    defined: Broadcast | None  # from the scenario (`--step`), else an ad-hoc text
    segment: Rule
    segment_text: str | None  # --segment as typed
    where: str  # how problems name the segment
    at: datetime | None


async def broadcast(settings: Settings, args: argparse.Namespace, missing: Missing) -> int:
    try:
        if args.status is not None or args.cancel is not None:
            if args.segment or args.at or args.dry_run:
                raise Refused("--status и --cancel не сочетаются с --segment, --at и --dry-run")
            return await _follow(settings, args, missing)
        loaded = load_scenario(args.scenario or settings.scenario_dir)
        request = _request(loaded.scenario, args)
        url = args.db or settings.database_url
        if missing(url, args.db):
            return 2
        db = Database(url)
        try:
            await prepare_database(db)
            await _check_names(db, loaded.scenario, request)
            if args.dry_run:
                await _dry_run(db, loaded, request)
            else:
                await _queue(db, loaded.scenario, request)
            return 0
        finally:
            await db.dispose()
    except Refused as refused:
        print(f"leadbot: {refused}", file=sys.stderr)
        return 2


def _request(s: Scenario, args: argparse.Namespace) -> Request:
    defined = s.broadcasts.get(args.step) if args.step else None
    if args.step and defined is None:
        known = sorted(s.broadcasts)
        close = difflib.get_close_matches(args.step, known, n=1)
        hint = (
            f" — возможно, имелось в виду {close[0]!r}?"
            if close
            else f" (есть: {', '.join(known)})"
            if known
            else " (раздел broadcasts: пуст)"
        )
        raise Refused(f"в сценарии нет рассылки {args.step!r}{hint}")
    if defined is not None and defined.schedule is not None:
        raise Refused(
            f"рассылка {args.step!r} уходит сама (every:); разовую отправьте с --text и "
            "--segment, а ход её отправок смотрите в --status"
        )
    if args.segment:
        try:
            segment = TypeAdapter(Rule).validate_python(yaml.safe_load(args.segment))
        except (ValidationError, yaml.YAMLError) as exc:
            raise Refused(texts.segment_syntax("--segment", exc)) from None
    elif defined is not None:
        segment = defined.segment
    else:
        raise Refused("--text нужен --segment: кому отправить")
    try:
        at = parse_local_moment(args.at) if args.at else defined.at if defined else None
    except ValueError:
        raise Refused(
            f'--at {args.at!r}: нужно "ГГГГ-ММ-ДД ЧЧ:ММ", например "2026-12-01 11:00"'
        ) from None
    if defined is None:
        codes = {f"promo.{p}{part}" for p in s.promos for part in ("", ".expires")}
        allowed = {*SIMPLE_PLACEHOLDERS, *codes}
        unknown = [name for name in placeholders(args.text) if name not in allowed]
        if unknown:
            names = ", ".join(f"{{{name}}}" for name in sorted(SIMPLE_PLACEHOLDERS))
            raise Refused(
                f"в --text можно {names} и {{promo.<id>}} промокодов сценария, "
                f"но не {{{unknown[0]}}}"
            )
    return Request(
        broadcast_id=args.step or broadcasts.adhoc_id(args.text, args.segment),
        text=defined.text if defined else args.text,
        defined=defined,
        segment=segment,
        segment_text=args.segment,
        where="--segment" if args.segment else f"broadcasts.{args.step}.segment",
        at=at,
    )


async def _check_names(db: Database, s: Scenario, request: Request) -> None:
    """A name nothing knows is a typo, not a segment of nobody: refused, with the closest
    known name."""
    unknown = await broadcasts.unknown_names(db, s, request.segment)
    if unknown:
        lines = [texts.unknown_name(request.where, name) for name in unknown]
        raise Refused("\n".join(lines[:1] + [f"leadbot: {line}" for line in lines[1:]]))


async def _dry_run(db: Database, loaded: LoadedScenario, request: Request) -> None:
    s, now = loaded.scenario, SystemClock().now()
    crowd = await broadcasts.audience(db, request.segment, now=now, rfm_limits=s.settings.rfm)
    had = await broadcasts.already_queued(db, request.broadcast_id, crowd.reachable)
    coming = [lead for lead in crowd.reachable if lead not in had]
    origin = "из сценария" if request.defined else "с текстом из командной строки"
    print(
        f"Пробный запуск: рассылка {request.broadcast_id} {origin}. В очередь ничего не ставится."
    )
    print("\n".join(texts.audience_lines(crowd, len(had))))
    print()
    sample_id = next(iter(coming or crowd.reachable), crowd.first_matched)
    sample = await broadcasts.sample_lead(db, s, sample_id) if sample_id is not None else None
    defined = request.defined
    lines = texts.preview_lines(
        request.text,
        sample.values if sample else {},
        defined.buttons if defined else [],
        defined.file if defined else None,
        sample,
    )
    print("\n".join(lines))
    print()
    window = await broadcasts.forecast(db, s, coming, at=request.at, now=now)
    window.held = await _held_by_ad_limit(db, s, window, now)
    limits = {channel: limit.overall.rate for channel, limit in DEFAULT_LIMITS.items()}
    print("\n".join(texts.window_lines(window, s.settings, request.at, now, limits)))


async def _held_by_ad_limit(
    db: Database, s: Scenario, window: broadcasts.Forecast, now: datetime
) -> dict[int, datetime]:
    """The leads `settings.ad_limit` would hold back, and until when, by the advertising
    they had and what is queued for them before this broadcast (the worker's own `AdLog`)."""
    limit = s.settings.ad_limit
    if limit is None or not window.dues:
        return {}
    since, until = min(window.dues.values()) - limit.per, max(window.dues.values())
    ads = AdLog(limit)
    lead_ids = list(window.dues)
    for start in range(0, len(lead_ids), broadcast_runs.CHUNK):
        query = select(*AD_LOG_FIELDS).where(
            OutboxRow.lead_id.in_(lead_ids[start : start + broadcast_runs.CHUNK]),
            OutboxRow.kind.in_(sorted(ADVERTISING)),
            or_(
                OutboxRow.status == "sending",
                (OutboxRow.status == "pending") & (OutboxRow.due_at <= until),
                (OutboxRow.status == "sent") & (OutboxRow.sent_at > since),
            ),
        )
        async with db.reading() as session:
            rows = (await session.execute(query)).all()
        for lead_id, kind, payload, status, sent_at, due in rows:
            step = sequences.step_of(s, payload) if kind == sequences.STEP else None
            if step is not None and step.service:
                continue  # no advertising, as the worker counts
            if status == "pending" and due > window.dues[lead_id]:
                continue  # after this broadcast: it is that one that waits
            ads.count(
                lead_id, sent_at if status == "sent" else now if status == "sending" else due
            )
    held = {}
    for lead_id, due in window.dues.items():
        free = ads.free_at(lead_id, due)
        if free is not None and free > due:
            zone = zone_of(window.timezones.get(lead_id), s.settings.timezone)
            held[lead_id] = out_of_quiet_hours(free, zone, s.settings.quiet_hours)
    return held


async def _queue(db: Database, s: Scenario, request: Request) -> None:
    now = SystemClock().now()
    crowd = await broadcasts.audience(db, request.segment, now=now, rfm_limits=s.settings.rfm)
    run_id = await broadcasts.start_run(
        db,
        request.broadcast_id,
        now=now,
        text=None if request.defined else request.text,
        segment=request.segment_text,
        at=request.at,
    )
    queued = await broadcasts.enqueue(
        db,
        s,
        request.broadcast_id,
        crowd.reachable,
        now=now,
        text=None if request.defined else request.text,
        at=request.at,
        run=run_id,
    )
    print("\n".join(texts.audience_lines(crowd, len(crowd.reachable) - queued)))
    if not queued:
        await broadcasts.forget_run(db, run_id)
        print("Ничего нового не поставлено в очередь.")
        return
    print(
        f"Поставлено в очередь: {texts.messages(queued)}, рассылка {run_id}. Отправляет "
        "работающий бот, в пределах лимитов платформ и в своё время у каждого лида."
    )
    print(
        f"Ход: leadbot broadcast --status {run_id}; отменить: leadbot broadcast --cancel {run_id}"
    )


async def _follow(settings: Settings, args: argparse.Namespace, missing: Missing) -> int:
    url = args.db or settings.database_url
    if missing(url, args.db):
        return 2
    db = Database(url)
    try:
        await prepare_database(db)
        if args.cancel is not None:
            await _cancel(db, args.cancel)
        elif args.status:
            await _status_of(db, args.status)
        else:
            await _status_all(db)
        return 0
    finally:
        await db.dispose()


async def _status_all(db: Database) -> None:
    lines, now = [], SystemClock().now()
    async with db.reading() as session:  # the records are read as they are printed
        runs, older = await broadcast_runs.latest_runs(session, RUNS_SHOWN)
        for run in runs:
            lines += texts.run_lines(run, await broadcast_runs.progress(session, run), now)
    if older:
        lines.insert(0, f"(и ещё {older} ранее; подробно об одной: leadbot broadcast --status ID)")
    print("\n".join(lines) if runs else "Рассылок ещё не было.")


async def _status_of(db: Database, run_id: str) -> None:
    async with db.reading() as session:
        run = await _run(session, run_id)
        progress = await broadcast_runs.progress(session, run, reasons=True)
        lines = texts.run_lines(run, progress, SystemClock().now(), detailed=True)
    print("\n".join(lines))


async def _cancel(db: Database, run_id: str) -> None:
    now = SystemClock().now()
    async with db.unit_of_work() as uow:
        run = await _run(uow.session, run_id)
        cancelled = await broadcast_runs.cancel_run(uow.session, run, now=now)
        await uow.commit()
    print(
        f"Рассылка {run_id} отменена: из очереди снято {texts.messages(cancelled)}. "
        "Уже отправленное не вернуть; то, что уходило в эту секунду, дойдёт."
    )
    await _status_of(db, run_id)


async def _run(session: AsyncSession, run_id: str) -> BroadcastRun:
    run = await broadcast_runs.get_run(session, run_id)
    if run is not None:
        return run
    known = await broadcast_runs.run_ids(session)
    close = difflib.get_close_matches(run_id, known, n=1)
    hint = f" — возможно, имелось в виду {close[0]!r}?" if close else ""
    raise Refused(f"нет рассылки {run_id!r}{hint} (все: leadbot broadcast --status)")
