"""`/metrics` over real HTTP from the bot's own web server, parsed by prometheus-client's parser:
after the test drives updates through the engine and rows through a worker, every counter is
what the test did, counted here on its own, and the outbox figures are what the table holds."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.app import App, _serve_http
from bot.clock import FakeClock
from bot.handoff import RELAY
from bot.messages import Incoming, Kind
from bot.metrics import Metrics, delivery_outcome
from bot.redemption import Redemptions
from bot.settings import Settings
from storage.database import Database
from storage.models import OutboxRow
from tests.delivery.harness import fake_clock_worker
from tests.prospect import Prospect
from tests.test_handoff import Desk, walk_to_qualified

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_for(db: Database, port: int, **extra: object) -> Settings:
    return Settings(_env_file=None, database_url=db.url, http_port=port, **extra)  # type: ignore[call-arg]


@asynccontextmanager
async def bot_web_server(settings: Settings, app: App) -> AsyncIterator[str]:
    """The web server exactly as `serve` starts it, with no messenger: its base URL."""
    runner = await _serve_http(settings, app, [], app.redemptions())
    assert runner is not None
    try:
        yield f"http://{settings.http_host}:{settings.http_port}"
    finally:
        await runner.cleanup()


async def scrape(base: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def with_prefix(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def rows_with(db: Database, status: str) -> int:
    async with db.unit_of_work() as uow:
        query = select(func.count()).select_from(OutboxRow).where(OutboxRow.status == status)
        return int((await uow.session.execute(query)).scalar_one())


async def test_metrics_count_what_the_bot_did(db: Database, clock: FakeClock) -> None:
    metrics = Metrics()
    desk = Desk(db, clock)  # managers' chat and a CRM: a qualified lead gets a card
    desk.funnel.metrics = metrics
    waited: list[float] = []

    async def sleep(seconds: float) -> None:  # a pacing wait moves the fake clock
        waited.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    worker = fake_clock_worker(
        desk.funnel,
        {"telegram": desk.transport},
        managers={"telegram": desk.chat},
        crm=desk.crm,
        sleep=sleep,
    )

    # Updates: Anna walks to qualified (6), Boris starts (1), an update delivered twice.
    await walk_to_qualified(Prospect(desk.funnel, "1001"))
    await Prospect(desk.funnel, "1002", first_name="Борис").start()
    twice = Incoming(
        channel="telegram", external_id="1002", kind=Kind.TEXT, text="цена", event_key="tg:77"
    )
    for _ in range(2):
        await desk.funnel.handle(twice)
    handled, duplicates = 6 + 1 + 1, 1

    # Four answers of a manager to Anna at once: one chat, so they wait for its slots.
    now = clock.now()
    async with db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        lead_id = found[0].id
        for n in range(4):
            await uow.outbox.enqueue(
                idempotency_key=f"relay:metrics:{n}",
                channel="telegram",
                kind=RELAY,
                due_at=now,
                now=now,
                lead_id=lead_id,
                payload={"text": f"Ответ {n}", "manager": "Ольга"},
            )
        await uow.commit()
    desk.transport.fail_next(ConnectionResetError("connection reset by peer"))  # one retry
    await worker.tick()
    clock.advance(timedelta(seconds=10))  # past the retry's backoff
    await worker.drain()

    # Two promo codes that do not exist.
    redemptions = Redemptions(desk.funnel)
    for code in ("NOPE-1", "NOPE-2"):
        assert (await redemptions.redeem(code, source="till", by="Иван")).status == "unknown"

    # A row due 90 s ago that no worker has claimed yet: the lag.
    async with db.unit_of_work() as uow:
        await uow.outbox.enqueue(
            idempotency_key="relay:metrics:late",
            channel="telegram",
            kind=RELAY,
            due_at=clock.now() - timedelta(seconds=90),
            now=clock.now(),
            lead_id=lead_id,
            payload={"text": "Поздний ответ", "manager": "Ольга"},
        )
        await uow.commit()

    app = App(Settings(_env_file=None), db, desk.funnel.scenarios, desk.funnel, clock, metrics)  # type: ignore[call-arg]
    settings = settings_for(db, free_port(), http_always=True)
    async with bot_web_server(settings, app) as base:
        samples = await scrape(base)

    updates = with_prefix(samples, "leadbot_updates_handled_total")
    assert updates == {
        frozenset({("channel", "telegram"), ("outcome", "handled")}): handled,
        frozenset({("channel", "telegram"), ("outcome", "duplicate")}): duplicates,
    }
    count = value(samples, "leadbot_update_duration_seconds_count", channel="telegram")
    assert count == handled + duplicates
    assert value(samples, "leadbot_update_duration_seconds_sum", channel="telegram") > 0

    sent = await rows_with(db, "sent")
    assert sent >= 4 + 2  # the answers, the card and the CRM export at least
    by_outcome: dict[str, float] = {}
    for labels, v in with_prefix(samples, "leadbot_messages_total").items():
        outcome = dict(labels)["outcome"]
        by_outcome[outcome] = by_outcome.get(outcome, 0) + v
    assert by_outcome == {"sent": sent, "retried": 1}
    # The same rows by channel: the CRM export is the `crm` channel's.
    assert value(samples, "leadbot_messages_total", channel="crm", outcome="sent") == len(
        desk.crm.exported
    )

    assert len(desk.chat.cards()) == 1
    assert with_prefix(samples, "leadbot_handoff_cards_posted_total") == {
        frozenset({("channel", "telegram"), ("purpose", "card")}): 1
    }

    assert len(waited) >= 3  # four messages to one chat at one a second
    assert value(samples, "leadbot_pacing_waits_total", channel="telegram") == len(waited)
    seconds = value(samples, "leadbot_pacing_wait_seconds_total", channel="telegram")
    assert seconds == pytest.approx(sum(waited))

    assert with_prefix(samples, "leadbot_promo_redemptions_total") == {
        frozenset({("outcome", "unknown")}): 2
    }

    pending = await rows_with(db, "pending")
    assert pending >= 1
    assert value(samples, "leadbot_outbox_pending_rows") == pending
    assert value(samples, "leadbot_outbox_lag_seconds") == pytest.approx(90)
    assert value(samples, "leadbot_scrape_error") == 0


async def test_each_bot_counts_in_its_own_registry(sqlite_db: Database, clock: FakeClock) -> None:
    """No global registry: two bots in one process expose only their own numbers."""
    first, second = Metrics(), Metrics()
    first.update_handled("telegram", "handled", 0.01)
    assert first.registry is not second.registry
    text = (await second.scrape(sqlite_db, clock.now)).decode()
    assert "leadbot_updates_handled_total{" not in text
    assert (
        'leadbot_updates_handled_total{channel="telegram",outcome="handled"} 1.0'
        in (await first.scrape(sqlite_db, clock.now)).decode()
    )


def test_a_decided_rows_outcome() -> None:
    assert delivery_outcome("retry", "pending") == "retried"
    assert delivery_outcome("retry", "failed") == "failed"
    assert delivery_outcome("pending", "pending") == "deferred"
    assert delivery_outcome("cancelled", "cancelled") == "cancelled"
    assert delivery_outcome("skipped", "skipped") == "skipped"


async def test_no_web_server_unless_something_needs_it(
    sqlite_db: Database, clock: FakeClock
) -> None:
    """Bots side by side (the e2e tests) must not fight for a port: only HTTP_ALWAYS or a
    reason of its own starts the server."""
    desk = Desk(sqlite_db, clock)
    app = App(Settings(_env_file=None), sqlite_db, desk.funnel.scenarios, desk.funnel, clock)  # type: ignore[call-arg]
    settings = settings_for(sqlite_db, free_port())
    assert await _serve_http(settings, app, [], app.redemptions()) is None
