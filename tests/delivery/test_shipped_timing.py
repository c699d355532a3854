"""The shipped audit and guide chains played out on a fake clock: the day each message arrives.

The expected moments are worked out here from the YAML itself (scenarios/sequences.yaml and
the `settings:` of scenarios/main.yaml), by the rules the docs give, not by the code under
test: `after` counts from the last step actually sent (the chain's start before any), a
skipped `if:` step adds nothing, `at:` with whole days is that local time that many dates on,
and a message over `ad_limit` waits until the oldest of the last `max` is `per` old.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.clock import FakeClock
from bot.outside import LeadRef, OutsideEvents
from bot.scenario.loader import load_scenario
from storage.database import Database
from storage.models import OutboxRow
from tests.conftest import SHIPPED_SCENARIO
from tests.delivery.harness import MSK, START, Bench, utc

SEQUENCES: dict[str, Any] = yaml.safe_load(
    (SHIPPED_SCENARIO / "sequences.yaml").read_text(encoding="utf-8")
)["sequences"]
SETTINGS: dict[str, Any] = yaml.safe_load(
    (SHIPPED_SCENARIO / "main.yaml").read_text(encoding="utf-8")
)["settings"]
SERVICE = {
    chain: {step["id"] for step in sequence["steps"] if step.get("service")}
    for chain, sequence in SEQUENCES.items()
}
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DAY = timedelta(days=1)


def duration(text: str) -> timedelta:
    amount, unit = re.fullmatch(r"(\d+)([mhdw])", text).groups()  # type: ignore[union-attr]
    return timedelta(**{UNITS[unit]: int(amount)})


@dataclass(frozen=True)
class Plan:
    moments: dict[str, datetime]  # step id -> when it arrives
    held: list[str]  # steps the advertising limit put off


def plan(chain: str, received: list[str], start: datetime) -> Plan:
    """When each step of `received` (the steps of `chain` the lead gets; every other step is
    skipped) arrives, for a chain started at `start`."""
    limit = SETTINGS["ad_limit"]
    most, per = int(limit["max"]), duration(limit["per"])
    base, moments, held = start, {}, []
    skipped_until = start
    for step in SEQUENCES[chain]["steps"]:
        after = duration(step.get("after", "0m"))
        if "at" in step:
            assert after % DAY == timedelta(0), "the shipped `at:` steps wait whole days"
            day = base.astimezone(MSK).date() + timedelta(days=after.days)
            due = datetime.combine(day, time.fromisoformat(step["at"]), MSK).astimezone(UTC)
        else:
            due = base + after
        if step["id"] not in received:
            skipped_until = max(skipped_until, due)
            continue
        # A skipped step is decided at its own due moment; one due after the step that
        # follows it would hold that step back. The shipped chains have none such.
        assert due >= skipped_until, (step["id"], due, skipped_until)
        # A `service:` step is no advertising: the limit neither holds nor counts it.
        earlier = sorted(m for s, m in moments.items() if s not in SERVICE[chain])
        if (
            step["id"] not in SERVICE[chain]
            and len(earlier) >= most
            and due < earlier[-most] + per
        ):
            due = earlier[-most] + per
            held.append(step["id"])
        # Every moment here is between 10:00 and 21:00 in Moscow, so quiet hours move none.
        assert 10 <= due.astimezone(MSK).hour < 21, (step["id"], due)
        moments[step["id"]] = base = due
    assert list(moments) == received
    return Plan(moments, held)


def shown(moments: list[datetime]) -> list[str]:
    """Day of the chain and Moscow time: "d4 12:15" (a message of several parts goes out
    a second apart, so seconds are left out)."""
    first = START.astimezone(MSK).date()
    return [
        f"d{(m.astimezone(MSK).date() - first).days} {m.astimezone(MSK):%H:%M}" for m in moments
    ]


async def arrivals(bench: Bench, external_id: str) -> tuple[list[str], list[datetime]]:
    """The steps the lead got, in order, and when each went out."""
    lead_id = await bench.lead_id(external_id)
    query = (
        select(OutboxRow.payload, OutboxRow.sent_at)
        .where(
            OutboxRow.lead_id == lead_id,
            OutboxRow.kind == "step",
            OutboxRow.status == "sent",
        )
        .order_by(OutboxRow.sent_at)
    )
    async with bench.db.unit_of_work() as uow:
        rows = (await uow.session.execute(query)).all()
    return [payload["step"] for payload, _ in rows], [sent_at for _, sent_at in rows]


def assert_within_limit(moments: list[datetime], steps: list[str], chain: str) -> None:
    """No `max` + 1 advertising messages (service steps aside) within `per`."""
    moments = [m for m, step in zip(moments, steps, strict=True) if step not in SERVICE[chain]]
    most, per = int(SETTINGS["ad_limit"]["max"]), duration(SETTINGS["ad_limit"]["per"])
    for first, last in zip(moments, moments[most:], strict=False):
        assert last - first >= per, shown([first, last])


AUDIT_ANSWERS = ("Мария", "+7 916 123-45-67", "До 10")


@pytest.mark.parametrize(
    ("role", "received"),
    [
        ("Принимаю решение", ["prepare", "next_decision_maker", "case_1c", "promo"]),
        ("Подбираю варианты руководителю", ["prepare", "next_champion", "case_1c", "promo"]),
        ("Отвечаю за IT и интеграции", ["prepare", "next_other", "case_1c", "promo"]),
    ],
)
async def test_after_the_audit_the_alternatives_take_one_slot(
    db: Database, clock: FakeClock, role: str, received: list[str]
) -> None:
    bench = Bench(db, load_scenario(SHIPPED_SCENARIO), clock)
    await bench.take_offer("audit", answers=(*AUDIT_ANSWERS, role, "Битрикс24", "Пропустить"))
    # The audit takes place that afternoon: `not_reached` is skipped, one `next_*` fits.
    await bench.run_until(utc(11, 23, 12))
    await OutsideEvents(bench.funnel).record(LeadRef(lead_id=await bench.lead_id()), "audit_held")
    await bench.run_until(utc(12, 31))

    expected = plan("audit_followup", received, START)
    assert expected.held == []  # the shipped delays keep within the limit by themselves
    steps, moments = await arrivals(bench, "1001")
    assert steps == received
    assert shown(moments) == shown(list(expected.moments.values()))
    assert shown(moments) == ["d0 12:15", "d3 12:15", "d7 12:15", "d11 12:15"]
    assert_within_limit(moments, steps, "audit_followup")
    assert await bench.runs() == {"audit_followup": "finished"}


async def test_when_the_audit_never_happens_the_service_steps_do_not_hold_the_case_back(
    db: Database, clock: FakeClock
) -> None:
    bench = Bench(db, load_scenario(SHIPPED_SCENARIO), clock)
    await bench.take_offer(
        "audit", answers=(*AUDIT_ANSWERS, "Принимаю решение", "Битрикс24", "Пропустить")
    )
    await bench.run_until(utc(12, 31))

    received = ["prepare", "not_reached", "case_1c", "promo"]
    expected = plan("audit_followup", received, START)
    # `prepare` and `not_reached` are about the booking, not advertising: the case is the
    # first advertising message, 4 days after `not_reached`.
    assert SERVICE["audit_followup"] == {"prepare", "not_reached"}
    assert expected.held == []
    steps, moments = await arrivals(bench, "1001")
    assert steps == received
    assert shown(moments) == shown(list(expected.moments.values()))
    assert shown(moments) == ["d0 12:15", "d1 11:00", "d5 11:00", "d9 11:00"]
    assert_within_limit(moments, steps, "audit_followup")


@pytest.mark.parametrize(
    ("role", "cta"),
    [
        ("Принимаю решение", "cta_decision_maker"),
        ("Подбираю варианты руководителю", "cta_champion"),
        ("Буду работать в CRM", "cta_other"),
    ],
)
async def test_the_guide_chain_sends_one_call_to_action_in_its_slot(
    sqlite_db: Database, clock: FakeClock, role: str, cta: str
) -> None:
    bench = Bench(sqlite_db, load_scenario(SHIPPED_SCENARIO), clock)
    prospect = await bench.take_offer("guide", answers=("anna@company.ru",))
    received = ["check_in", "role", "pricing", cta, "promo"]
    expected = plan("guide_warmup", received, START)
    await bench.run_until(expected.moments["role"])
    question = bench.transport.sent[-1].message
    assert question.text == "Какая у вас роль в выборе CRM?"
    prospect.last = [question]
    await prospect.press(role)
    await bench.run_until(utc(12, 31))

    assert expected.held == []
    steps, moments = await arrivals(bench, "1001")
    assert steps == received
    assert shown(moments) == shown(list(expected.moments.values()))
    assert shown(moments) == ["d0 13:00", "d3 13:00", "d8 11:00", "d11 11:00", "d15 11:00"]
    assert_within_limit(moments, steps, "guide_warmup")
