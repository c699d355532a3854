"""The rule `rfm: <segment>` on both databases: it selects exactly the customers the
documented thresholds put in the segment at the clock's now (in a broadcast's segment and a
step's `if:` as the scenario writes them), and `leadbot check` and `leadbot broadcast
--segment` refuse a segment name that does not exist, with the one probably meant."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from bot.cli import check, main
from bot.clock import FakeClock
from bot.rule_facts import LeadFacts, Reads, load_facts, load_facts_many, reads
from bot.rules import evaluate, explain
from bot.scenario.conditions import RFM_SEGMENTS, RfmRule, RfmSegment, Rule
from bot.scenario.loader import load_scenario
from bot.scenario.settings import RfmSettings
from storage import migrate
from storage.database import Database
from storage.models import Lead
from tests.analytics.test_rfm import (
    NOW,
    SEGMENT_IDS,
    Buyer,
    expected_segment,
    generate,
    write,
)
from tests.conftest import FIXTURE_SCENARIO
from tests.test_rules import lead as fresh_lead

RULES = TypeAdapter(Rule)
FIELDS = (Lead.id, Lead.score, Lead.stage, Lead.funnel_stage, Lead.source)


def facts(segment: str | None) -> LeadFacts:
    return fresh_lead(stage="customer", funnel_stage="customer", rfm=segment)


# ---- the rule itself ----


def test_the_segment_ids_are_those_of_the_report() -> None:
    assert get_args(RfmSegment) == tuple(RFM_SEGMENTS) == SEGMENT_IDS


def test_one_segment_or_a_list() -> None:
    assert RULES.validate_python({"rfm": "at_risk"}) == RfmRule(rfm=("at_risk",))
    assert RULES.validate_python(yaml.safe_load("{rfm: [at_risk, lost]}")) == RfmRule(
        rfm=("at_risk", "lost")
    )
    assert reads(RULES.validate_python({"not": {"rfm": "lost"}})) == Reads(rfm=True)


@pytest.mark.parametrize(
    ("segment", "rule", "holds", "reason"),
    [
        ("at_risk", {"rfm": "at_risk"}, True, "rfm at_risk"),
        ("lost", {"rfm": ["at_risk", "lost"]}, True, "rfm lost"),
        ("loyal", {"rfm": "at_risk"}, False, None),
        (None, {"rfm": ["champions", "loyal", "new", "at_risk", "lost"]}, False, None),
        (None, {"not": {"rfm": "lost"}}, True, "not rfm lost"),
        ("lost", {"not": {"rfm": ["at_risk", "lost"]}}, False, None),
    ],
)
def test_evaluate_and_explain(
    segment: str | None, rule: dict[str, Any], holds: bool, reason: str | None
) -> None:
    parsed = RULES.validate_python(rule)
    assert evaluate(parsed, facts(segment)) is holds
    assert explain(parsed, facts(segment)) == reason


@pytest.mark.parametrize(
    ("written", "english", "russian"),
    [
        (
            "champs",
            "unknown RFM segment 'champs'; did you mean 'champions'?",
            "неизвестный RFM-сегмент 'champs'; может быть, 'champions'?",
        ),
        (
            "Под угрозой",
            "unknown RFM segment 'Под угрозой'; did you mean 'at_risk'?",
            "неизвестный RFM-сегмент 'Под угрозой'; может быть, 'at_risk'?",
        ),
        (
            ["loyal", "xyz"],
            "unknown RFM segment 'xyz' (known: champions, loyal, new, at_risk, lost)",
            "неизвестный RFM-сегмент 'xyz' (есть: champions, loyal, new, at_risk, lost)",
        ),
    ],
)
def test_an_unknown_segment_is_refused_with_a_suggestion(
    written: Any, english: str, russian: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RULES.validate_python({"rfm": written})
    [error] = caught.value.errors()
    said = error["ctx"]["error"].say
    assert (said.render("en"), said.render("ru")) == (english, russian)


# ---- the facts, loaded for many leads at the clock's now ----


async def segments_by_rule(
    db: Database, rule: Rule, clock: FakeClock, limits: RfmSettings | None = None
) -> set[int]:
    async with db.unit_of_work() as uow:
        leads = (await uow.session.execute(select(*FIELDS).order_by(Lead.id))).all()
        found = await load_facts_many(uow, leads, reads(rule), now=clock.now(), rfm_limits=limits)
    return {lead_id for lead_id, lead_facts in found.items() if evaluate(rule, lead_facts)}


def expected_ids(
    people: list[Buyer], segments: set[str], clock: FakeClock, limits: RfmSettings
) -> set[int]:
    return {b.lead_id for b in people if expected_segment(b, clock.now(), limits) in segments}


@pytest.mark.parametrize(
    ("rule", "segments"),
    [
        ({"rfm": "at_risk"}, {"at_risk"}),
        ({"rfm": ["champions", "loyal"]}, {"champions", "loyal"}),
        ({"not": {"rfm": "lost"}}, {"champions", "loyal", "new", "at_risk", None}),
    ],
)
async def test_the_rule_selects_exactly_the_segment(
    db: Database, rule: dict[str, Any], segments: set[str | None]
) -> None:
    people = generate(seed=29, customers=120)
    await write(db, people)
    clock, limits = FakeClock(NOW), RfmSettings()
    parsed = RULES.validate_python(rule)

    chosen = await segments_by_rule(db, parsed, clock)

    expected = expected_ids(people, segments, clock, limits)  # type: ignore[arg-type]
    assert chosen == expected
    assert 0 < len(expected) < len(people)


async def test_the_rule_reads_the_segment_at_the_clocks_now(db: Database) -> None:
    """The same purchases; the clock moves on and customers lapse into `at_risk`."""
    people = generate(seed=31, customers=80)
    await write(db, people)
    clock = FakeClock(NOW)
    limits = RfmSettings(
        recent=timedelta(days=10),
        lapsing=timedelta(days=40),
        lost=timedelta(days=300),
        frequent=2,
        big=Decimal(500),
    )
    rule = RULES.validate_python({"rfm": "at_risk"})

    before = await segments_by_rule(db, rule, clock, limits)
    clock.advance(timedelta(days=45))
    after = await segments_by_rule(db, rule, clock, limits)

    assert before == expected_ids(people, {"at_risk"}, FakeClock(NOW), limits)
    assert after == expected_ids(people, {"at_risk"}, clock, limits)
    assert before != after


async def test_load_facts_of_one_lead(db: Database) -> None:
    lapsing = Buyer(purchases=[(NOW - timedelta(days=100), Decimal(10))])
    never = Buyer()
    await write(db, [lapsing, never])
    rule = RULES.validate_python({"rfm": "at_risk"})
    async with db.unit_of_work() as uow:
        got = {}
        for buyer in (lapsing, never):
            lead = await uow.session.get(Lead, buyer.lead_id)
            assert lead is not None
            got[buyer.lead_id] = await load_facts(uow, lead, reads(rule), now=NOW)
    assert got[lapsing.lead_id].rfm == "at_risk" == expected_segment(lapsing, NOW, RfmSettings())
    assert got[never.lead_id].rfm is None
    assert explain(rule, got[lapsing.lead_id]) == "rfm at_risk"


# ---- in the scenario: a broadcast's segment and a step's `if:` ----


def write_scenario(folder: Path, segment: Any, step_if: Any, **settings: Any) -> Path:
    shutil.copytree(FIXTURE_SCENARIO, folder)
    path = folder / "funnel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["broadcasts"] = {"winback": {"segment": segment, "text": "Давно не виделись!"}}
    steps = data["sequences"]["audit_followup"]["steps"]
    steps.append({"id": "winback", "after": "30d", "text": "Вернуться?", "if": step_if})
    data["settings"].update(settings)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


async def test_a_broadcast_segment_and_a_step_if_select_at_risk(
    db: Database, tmp_path: Path
) -> None:
    folder = write_scenario(
        tmp_path / "sc",
        {"rfm": "at_risk"},
        {"all": [{"rfm": ["at_risk"]}, {"not": {"tag": "enterprise"}}]},
        rfm={"lapsing": "60d", "lost": "200d"},
    )
    s = load_scenario(folder).scenario
    limits = s.settings.rfm
    assert (limits.lapsing, limits.lost) == (timedelta(days=60), timedelta(days=200))
    people = generate(seed=41, customers=100)
    await write(db, people)
    clock = FakeClock(NOW)
    step = next(x for x in s.sequences["audit_followup"].steps if x.id == "winback")
    assert step.if_ is not None

    by_segment = await segments_by_rule(db, s.broadcasts["winback"].segment, clock, limits)
    by_if = await segments_by_rule(db, step.if_, clock, limits)

    expected = expected_ids(people, {"at_risk"}, clock, limits)
    assert by_segment == by_if == expected
    assert expected
    assert expected != expected_ids(people, {"at_risk"}, clock, RfmSettings())


def run_check(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = check(folder)
    out, err = capsys.readouterr()
    return code, out + err


def test_leadbot_check_refuses_an_unknown_segment_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_scenario(tmp_path / "sc", {"rfm": "champs"}, {"rfm": ["at_risk", "lsot"]})

    code, printed = run_check(folder, capsys)

    assert code == 1
    lines = printed.splitlines()
    segment = [line for line in lines if "broadcasts.winback.segment" in line]
    step_if = [line for line in lines if "sequences.audit_followup.steps[1].if" in line]
    assert len(segment) == len(step_if) == 1, printed
    assert segment[0].endswith("неизвестный RFM-сегмент 'champs'; может быть, 'champions'?")
    assert step_if[0].endswith("неизвестный RFM-сегмент 'lsot'; может быть, 'lost'?")
    assert lines[-1].startswith("2 ошибки")


def test_leadbot_check_accepts_the_segments_and_refuses_thresholds_out_of_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_scenario(tmp_path / "good", {"rfm": "at_risk"}, {"rfm": "champions"})
    assert run_check(good, capsys)[0] == 0
    bad = write_scenario(
        tmp_path / "bad", {"rfm": "at_risk"}, {"rfm": "lost"}, rfm={"recent": "120d"}
    )
    code, printed = run_check(bad, capsys)
    assert code == 1
    assert "settings.rfm: пороги RFM идут по возрастанию: recent < lapsing < lost" in printed


def test_leadbot_broadcast_refuses_an_unknown_segment_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_scenario(tmp_path / "sc", {"rfm": "at_risk"}, {"rfm": "lost"})
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"

    async def make() -> None:
        database = Database(url)
        try:
            await migrate.upgrade(database.engine)
        finally:
            await database.dispose()

    asyncio.run(make())
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("DATABASE_", "SCENARIO_", "TELEGRAM_", "VK_", "LOG_")):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main(
            ["broadcast", "--text", "Привет", "--segment", "{rfm: champs}", "--dry-run",
             "--scenario", str(folder), "--db", url]
        )  # fmt: skip
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert (
        err
        == "leadbot: --segment: rfm: неизвестный RFM-сегмент 'champs'; может быть, 'champions'?\n"
    )
