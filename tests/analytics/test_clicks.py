"""Clicks attributed to their message: a press of a step's button (through the engine's
`requests.press`) and a tracked link opened (`OutsideEvents.click`) record the step or the
broadcast they belong to, unless two places have the same button. Then the per step and
per broadcast section: sent, clicked and unsubscribed after it, against rows written here."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bot.analytics import sends
from bot.analytics.window import Window
from bot.clock import FakeClock
from bot.outside import OutsideEvents
from storage.database import Database
from storage.models import Event, Lead, TrackedLink
from tests.delivery.harness import Bench, load, scenario_folder, utc
from tests.prospect import events_of

EXTRA = """
sequences:
  clicks:
    steps:
      - id: hello
        after: 1h
        text: "Как вам гайд?"
        variants: {b: "Понравился гайд?"}
        buttons:
          - {text: "Записаться", event: audit_booked, reply: "Записали"}
          - {text: "Цены", url: "https://example.com/prices", event: prices_opened}
broadcasts:
  promo:
    segment: {offer: guide}
    text: "Акция"
    buttons:
      - {text: "Акция", url: "https://example.com/promo"}
      - {text: "Кейс", url: "https://example.com/case", event: case_read}
"""


async def bench_with_step(db: Database, clock: FakeClock, tmp_path: Path) -> tuple[Bench, int]:
    bench = Bench(db, load(scenario_folder(tmp_path, EXTRA, guide_starts="clicks")), clock)
    await bench.take_guide("1001")
    await bench.run_until(utc(11, 23, 12))
    [sent] = await bench.events("1001", "step_sent")
    assert sent["step"] == "hello"
    return bench, await bench.lead_id("1001")


async def link(db: Database, lead_id: int, url: str, event: str) -> str:
    token = secrets.token_urlsafe(12)
    async with db.unit_of_work() as uow:
        uow.session.add(
            TrackedLink(token=token, lead_id=lead_id, url=url, event=event, created_at=utc(11, 23))
        )
        await uow.commit()
    return token


async def test_a_pressed_step_button_names_its_step(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench, lead_id = await bench_with_step(db, clock, tmp_path)
    [message] = [s.message for s in bench.transport.sent if s.external_id == "1001"][-1:]
    [action] = [b.action for row in message.buttons for b in row if b.text == "Записаться"]
    assert action is not None
    reply = await bench.press("1001", action)
    assert reply[0].text == "Записали"
    assert await events_of(db, lead_id, "audit_booked") == [
        {"button": True, "sequence": "clicks", "step": "hello"}
    ]


async def test_an_opened_link_names_its_step_or_broadcast_when_only_one_has_it(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench, lead_id = await bench_with_step(db, clock, tmp_path)
    outside = OutsideEvents(bench.funnel)
    prices = await link(db, lead_id, "https://example.com/prices", "prices_opened")
    assert (await outside.click(prices) or "").startswith("https://example.com/prices")
    step = {"sequence": "clicks", "step": "hello"}
    assert await events_of(db, lead_id, "prices_opened") == [{"via": "link", **step}]
    promo = await link(db, lead_id, "https://example.com/promo", "")
    await outside.click(promo)
    # the fixture's guide_warmup has the same case link as the broadcast: nobody's click
    case = await link(db, lead_id, "https://example.com/case", "case_read")
    await outside.click(case)
    assert await events_of(db, lead_id, "link_clicked") == [
        {"url": "https://example.com/prices", **step},
        {"url": "https://example.com/promo", "broadcast": "promo"},
        {"url": "https://example.com/case"},
    ]
    assert await events_of(db, lead_id, "case_read") == [{"via": "link"}]


# ---- per step and per broadcast ----

SINCE = datetime(2026, 11, 2, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=14)
MESSAGES = [("clicks", "hello"), ("guide_warmup", "check_in"), (None, "promo"), (None, "news")]


async def test_sent_clicked_and_unsubscribed_after_each_message(
    db: Database, tmp_path: Path
) -> None:
    scenario = load(scenario_folder(tmp_path, EXTRA)).scenario
    rng = random.Random(7)
    async with db.unit_of_work() as uow:
        rows = [{"created_at": SINCE, "updated_at": SINCE} for _ in range(300)]
        ids = list((await uow.session.execute(insert(Lead).returning(Lead.id), rows)).scalars())
        await uow.commit()
    events: list[dict[str, object]] = []
    want = {m: {"sent": set(), "clicked": set(), "gone": set()} for m in MESSAGES}

    def event(lead_id: int, name: str, payload: dict[str, object], at: datetime) -> None:
        events.append({"lead_id": lead_id, "name": name, "payload": payload, "created_at": at})

    for lead_id in ids:
        got: list[tuple[datetime, tuple[str | None, str]]] = []
        for message in rng.sample(MESSAGES, rng.randint(0, 3)):
            at = SINCE + timedelta(seconds=rng.randint(-2 * 86400, 16 * 86400))
            seq, name = message
            place = {"broadcast": name} if seq is None else {"sequence": seq, "step": name}
            if seq is None:
                event(lead_id, "broadcast_sent", place, at)
            else:
                event(lead_id, "step_sent", {**place, "variant": "a"}, at)
            got.append((at, message))
            counted = SINCE <= at < UNTIL
            if counted:
                want[message]["sent"].add(lead_id)
            if rng.random() < 0.3:
                clicked_at = at + timedelta(hours=rng.randint(1, 100))
                event(lead_id, "link_clicked", {"url": "u", **place}, clicked_at)
                if counted and clicked_at < UNTIL:
                    want[message]["clicked"].add(lead_id)
            if rng.random() < 0.1:  # before the send, or without the message's name
                event(lead_id, "link_clicked", {"url": "u", **place}, at - timedelta(hours=1))
                event(lead_id, "audit_booked", {"button": True}, at + timedelta(hours=1))
        if got and rng.random() < 0.25:
            gone_at = SINCE + timedelta(seconds=rng.randint(0, 15 * 86400))
            event(lead_id, "unsubscribed", {}, gone_at)
            before = [(at, m) for at, m in got if at <= gone_at]
            if before and gone_at < UNTIL:
                at, message = max(before)
                if at >= SINCE:
                    want[message]["gone"].add(lead_id)
    async with db.unit_of_work() as uow:
        await uow.session.execute(insert(Event), events)
        await uow.commit()
    async with db.reading() as session:
        figures = await sends.figures(
            session, scenario, Window(SINCE, UNTIL, UNTIL, ZoneInfo("Europe/Moscow"))
        )
    found = {(r.sequence, r.message): r for r in [*figures.steps, *figures.broadcasts]}
    for message, expected in want.items():
        row = found[message]
        assert (row.sent, row.clicked, row.unsubscribed) == (
            len(expected["sent"]),
            len(expected["clicked"]),
            len(expected["gone"]),
        ), message
    assert all(want[m]["gone"] for m in MESSAGES)
    assert [(r.sequence, r.message) for r in figures.steps] == MESSAGES[:2]
    assert [r.message for r in figures.broadcasts] == ["news", "promo"]
    step_table, _ = sends.tables(figures)
    assert step_table.rows[0][:4] == (
        "clicks",
        "hello",
        found[MESSAGES[0]].sent,
        found[MESSAGES[0]].clicked,
    )
