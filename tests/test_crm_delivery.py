"""A qualified lead exported to Bitrix24 by the real delivery worker, against a fake portal that
fails the way Bitrix24 does (tests/crm_fake.py). Each test checks what managers would notice
(how many leads the CRM holds) and what the outbox row says, never how long anything took."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.crm import BITRIX24, CrmExporter
from bot.delivery.outcomes import MAX_ATTEMPTS
from bot.engine.funnel import Funnel
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import CRM_EXPORT, Routes
from storage.database import Database
from storage.models import Event, OutboxRow
from tests.conftest import FIXTURE_SCENARIO
from tests.crm_fake import VALIDATION_ERROR, FakeBitrix24, running
from tests.delivery.harness import RecordingTransport, fake_clock_worker
from tests.prospect import Prospect, snapshot
from tests.test_handoff import walk_to_qualified

# Seconds the exporter waits for the portal; a hanging portal outlasts it.
CLIENT_TIMEOUT = 0.3


@dataclass(frozen=True)
class ExportRow:
    status: str
    attempts: int
    last_error: str | None
    due_at: datetime


class Handoffs:
    """The engine routing handed-off leads to Bitrix24, and a delivery worker exporting them
    with the real exporter, on one database and fake clock."""

    def __init__(self, db: Database, clock: FakeClock, portal: FakeBitrix24) -> None:
        self.db = db
        self.clock = clock
        self.portal = portal
        scenarios = ActiveScenario(load_scenario(FIXTURE_SCENARIO))
        self.funnel = Funnel(db, scenarios, clock, routes=Routes(crm=(BITRIX24,)))
        self.exporter = CrmExporter(bitrix24_url=portal.webhook_url, timeout=CLIENT_TIMEOUT)
        self.worker = fake_clock_worker(
            self.funnel, {"telegram": RecordingTransport(clock)}, crm=self.exporter
        )

    async def hand_off(self) -> None:
        """A prospect qualifies; the worker then does what is due."""
        await walk_to_qualified(Prospect(self.funnel, external_id="1001"))
        await self.worker.drain()
        assert (await snapshot(self.db, "1001")).stage == "qualified"

    async def export_row(self) -> ExportRow:
        async with self.db.reading() as session:
            [row] = (
                await session.execute(select(OutboxRow).where(OutboxRow.kind == CRM_EXPORT))
            ).scalars()
            return ExportRow(row.status, row.attempts, row.last_error, row.due_at)

    async def retry(self) -> ExportRow:
        """Move the clock to when the row is due again and let the worker run."""
        row = await self.export_row()
        self.clock.advance(max(row.due_at - self.clock.now(), timedelta(0)))
        await self.worker.drain()
        return await self.export_row()

    async def exported(self) -> list[dict[str, Any]]:
        """The `crm_exported` events: which CRM record each export ended as."""
        async with self.db.reading() as session:
            query = select(Event.payload).where(Event.name == "crm_exported")
            return list((await session.execute(query)).scalars())


@pytest.fixture
async def portal() -> AsyncIterator[FakeBitrix24]:
    async with running() as fake:
        yield fake


@pytest.fixture
async def desk(db: Database, clock: FakeClock, portal: FakeBitrix24) -> AsyncIterator[Handoffs]:
    handoffs = Handoffs(db, clock, portal)
    try:
        yield handoffs
    finally:
        await handoffs.exporter.aclose()


def only_lead(portal: FakeBitrix24) -> dict[str, Any]:
    [lead] = portal.leads.values()
    return lead


async def test_a_lead_exports_once_with_its_origin(desk: Handoffs, portal: FakeBitrix24) -> None:
    await desk.hand_off()

    lead = only_lead(portal)
    assert (lead["ORIGINATOR_ID"], lead["NAME"]) == ("leadbot", "Анна Петрова")
    assert (await desk.export_row()).status == "sent"
    assert await desk.exported() == [{"target": BITRIX24, "id": lead["ID"]}]


async def test_a_lead_bitrix24_refuses_fails_after_one_attempt_with_the_reason(
    desk: Handoffs, portal: FakeBitrix24
) -> None:
    portal.refuse_next()

    await desk.hand_off()
    row = await desk.export_row()
    desk.clock.advance(timedelta(days=1))
    await desk.worker.drain()

    assert (row.status, row.attempts) == ("failed", 1)
    assert (
        row.last_error == f"bitrix24 refused: bitrix24 crm.lead.add: HTTP 400: {VALIDATION_ERROR}"
    )
    assert (await desk.export_row()).status == "failed"
    assert portal.methods().count("crm.lead.add") == 1
    assert portal.leads == {}
    assert await desk.exported() == []


def fail_add_500(portal: FakeBitrix24) -> None:
    portal.fail_next(method="crm.lead.add")


def fail_list_500(portal: FakeBitrix24) -> None:
    portal.fail_next(502, "", "Bad Gateway", method="crm.lead.list")


def limit_add(portal: FakeBitrix24) -> None:
    portal.limit_next(method="crm.lead.add")


def hang_add(portal: FakeBitrix24) -> None:
    portal.hang_next(method="crm.lead.add")


def hang_list(portal: FakeBitrix24) -> None:
    portal.hang_next(method="crm.lead.list")


@pytest.mark.parametrize(
    ("fail", "seen"),
    [
        (fail_add_500, "crm.lead.add: HTTP 500: INTERNAL_SERVER_ERROR"),
        (fail_list_500, "crm.lead.list: HTTP 502: Bad Gateway"),
        (limit_add, "crm.lead.add: HTTP 503: QUERY_LIMIT_EXCEEDED"),
        (hang_add, "crm.lead.add: TimeoutError"),
        (hang_list, "crm.lead.list: TimeoutError"),
    ],
    ids=["add-500", "list-502", "add-query-limit", "add-timeout", "list-timeout"],
)
async def test_a_passing_failure_is_retried_and_the_lead_created_once(
    desk: Handoffs, portal: FakeBitrix24, fail: Callable[[FakeBitrix24], None], seen: str
) -> None:
    fail(portal)

    await desk.hand_off()
    failed = await desk.export_row()
    retried = await desk.retry()

    assert failed.status == "pending"
    assert failed.last_error is not None
    assert seen in failed.last_error
    assert retried.status == "sent"
    lead = only_lead(portal)
    assert await desk.exported() == [{"target": BITRIX24, "id": lead["ID"]}]


@pytest.mark.parametrize("hang", [False, True], ids=["connection-dropped", "timed-out"])
async def test_a_lead_created_whose_answer_was_lost_is_not_duplicated(
    desk: Handoffs, portal: FakeBitrix24, hang: bool
) -> None:
    portal.lose_answer_next(hang=hang)

    await desk.hand_off()
    failed = await desk.export_row()
    retried = await desk.retry()

    assert failed.status == "pending"
    assert retried.status == "sent"
    lead = only_lead(portal)
    assert await desk.exported() == [{"target": BITRIX24, "id": lead["ID"]}]
    assert portal.methods().count("crm.lead.add") == 1


async def test_a_portal_that_keeps_failing_is_given_up_after_the_last_attempt(
    desk: Handoffs, portal: FakeBitrix24
) -> None:
    portal.fail_next(method="crm.lead.add", times=MAX_ATTEMPTS + 1)

    await desk.hand_off()
    row = await desk.export_row()
    while row.status == "pending":
        row = await desk.retry()

    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert row.last_error is not None
    assert "INTERNAL_SERVER_ERROR" in row.last_error
    assert portal.methods().count("crm.lead.add") == MAX_ATTEMPTS
    assert portal.leads == {}
