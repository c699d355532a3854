"""Rules by money and recency (`purchases:`, `revenue:`, `last_purchase:`) and events filtered
by their payload (`event: {name: purchase, where: {product: ...}}`), on both databases: the
leads they select are those the documented meaning selects, computed here in plain Python
from the purchases written; `leadbot check` refuses a malformed one in the scenario's
language."""

from __future__ import annotations

import random
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from bot.cli import check
from bot.rule_facts import LeadFacts, Reads, load_facts, load_facts_many, reads
from bot.rules import evaluate, explain
from bot.scenario.conditions import EventCount, Rule
from storage.database import Database
from storage.models import Event, Lead
from tests.analytics.test_rfm import NOW, Buyer, generate, write
from tests.conftest import FIXTURE_SCENARIO
from tests.test_rules import lead as fresh_lead

RULES = TypeAdapter(Rule)
DAY = timedelta(days=1)
FIELDS = (Lead.id, Lead.score, Lead.stage, Lead.funnel_stage, Lead.source)


def facts(purchases: int = 0, revenue: str = "0", days_ago: float | None = None) -> LeadFacts:
    return fresh_lead(
        stage="customer",
        funnel_stage="customer",
        purchases=purchases,
        revenue=Decimal(revenue),
        last_purchase=None if days_ago is None else NOW - timedelta(days=days_ago),
        now=NOW,
    )


@pytest.mark.parametrize(
    ("rule", "lead", "reason"),
    [
        ({"purchases": ">= 2"}, facts(2, "10", 1), "purchases 2 >= 2"),
        ({"purchases": ">= 2"}, facts(1, "10", 1), None),
        ({"purchases": "== 0"}, facts(), "purchases 0 == 0"),
        ({"revenue": ">= 10000"}, facts(3, "10000.00", 5), "revenue 10000 >= 10000"),
        ({"revenue": ">= 10000"}, facts(3, "9999.99", 5), None),
        (
            {"last_purchase": {"within": "90d"}},
            facts(1, "1", 90),
            f"last purchase {NOW - DAY * 90:%F}",
        ),
        ({"last_purchase": {"within": "90d"}}, facts(1, "1", 90.01), None),
        ({"last_purchase": {"within": "90d"}}, facts(), None),  # never bought
        (
            {"last_purchase": {"over": "180d"}},
            facts(1, "1", 181),
            f"last purchase {NOW - DAY * 181:%F}",
        ),
        ({"last_purchase": {"over": "180d"}}, facts(1, "1", 180), None),
        ({"last_purchase": {"over": "180d"}}, facts(), None),  # never bought: not lapsed either
        ({"not": {"purchases": ">= 1"}}, facts(), "not purchases >= 1"),
    ],
)
def test_evaluate_and_explain(rule: dict[str, Any], lead: LeadFacts, reason: str | None) -> None:
    parsed = RULES.validate_python(rule)
    assert evaluate(parsed, lead) is (reason is not None)
    assert explain(parsed, lead) == reason


def test_what_the_rules_read() -> None:
    rule = RULES.validate_python(
        yaml.safe_load(
            "all: [{revenue: '>= 5000'}, {event: {name: purchase, where: {product: course}}},"
            " {event: 'case_read'}]"
        )
    )
    needs = reads(rule)
    assert needs.money
    assert needs.events == frozenset({"case_read"})
    assert needs.matching == frozenset({EventCount(name="purchase", where={"product": "course"})})
    assert reads(RULES.validate_python({"score": 5})) == Reads()


@pytest.mark.parametrize(
    "written",
    [{"last_purchase": {}}, {"last_purchase": {"within": "90d", "over": "1d"}}],
)
def test_last_purchase_takes_one_span(written: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        RULES.validate_python(written)
    said = caught.value.errors()[0]["ctx"]["error"].say
    assert said.render("ru") == (
        "в last_purchase нужно что-то одно: within: или over: с длительностью, "
        "например {within: 90d}"
    )


# ---- on the databases: many leads, and one ----


def people(seed: int) -> list[Buyer]:
    return generate(seed=seed, customers=150)


def made(buyer: Buyer) -> list[tuple[Any, Decimal]]:
    return [(at, amount or Decimal(0)) for at, amount in buyer.made_by(NOW)]


# The documented meaning, in plain Python over the purchases as written.
EXPECTED = {
    "purchases >= 2": lambda b: len(made(b)) >= 2,
    "revenue >= 5000": lambda b: sum((a for _, a in made(b)), Decimal(0)) >= 5000,
    "within 60d": lambda b: bool(made(b)) and NOW - max(t for t, _ in made(b)) <= timedelta(60),
    "over 120d": lambda b: bool(made(b)) and NOW - max(t for t, _ in made(b)) > timedelta(120),
    "no purchase": lambda b: not made(b),
}
WRITTEN = {
    "purchases >= 2": {"purchases": ">= 2"},
    "revenue >= 5000": {"revenue": ">= 5000"},
    "within 60d": {"last_purchase": {"within": "60d"}},
    "over 120d": {"last_purchase": {"over": "120d"}},
    "no purchase": {"not": {"purchases": ">= 1"}},
}


async def selected(db: Database, rule: Rule) -> set[int]:
    async with db.unit_of_work() as uow:
        leads = (await uow.session.execute(select(*FIELDS).order_by(Lead.id))).all()
        found = await load_facts_many(uow, leads, reads(rule), now=NOW)
    return {lead_id for lead_id, lead_facts in found.items() if evaluate(rule, lead_facts)}


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_the_rule_selects_exactly_whom_it_says(db: Database, name: str) -> None:
    buyers = people(seed=41)
    await write(db, buyers)
    rule = RULES.validate_python(WRITTEN[name])

    chosen = await selected(db, rule)

    expected = {b.lead_id for b in buyers if EXPECTED[name](b)}
    assert chosen == expected
    assert 0 < len(expected) < len(buyers)


async def test_events_filtered_by_their_payload(db: Database) -> None:
    rng = random.Random(43)
    products = ["course", "audit", "book"]
    async with db.unit_of_work() as uow:
        leads = [Lead(created_at=NOW, updated_at=NOW) for _ in range(60)]
        uow.session.add_all(leads)
        await uow.session.flush()
        bought: dict[int, list[str]] = {}
        for lead in leads:
            bought[lead.id] = [rng.choice(products) for _ in range(rng.randrange(4))]
            uow.session.add_all(
                Event(
                    lead_id=lead.id,
                    name="purchase",
                    # a number as a till sends it: 100.0 for a book, 250 for the rest
                    payload={"product": p, "price": 100.0 if p == "book" else 250},
                    created_at=NOW,
                )
                for p in bought[lead.id]
            )
            # Another event with the same payload must not count as a purchase.
            uow.session.add(
                Event(
                    lead_id=lead.id, name="refund", payload={"product": "course"}, created_at=NOW
                )
            )
        await uow.commit()
    rule = RULES.validate_python(
        yaml.safe_load("event: {name: purchase, op: '>=', count: 2, where: {product: course}}")
    )

    chosen = await selected(db, rule)

    assert chosen == {lead_id for lead_id, items in bought.items() if items.count("course") >= 2}
    assert 0 < len(chosen) < len(leads)
    async with db.unit_of_work() as uow:  # one lead, in its own event's transaction
        lead_id = min(chosen)
        lead = await uow.session.get(Lead, lead_id)
        assert lead is not None
        one = await load_facts(uow, lead, reads(rule), now=NOW)
    assert explain(rule, one) == (
        f"purchase (product=course) {bought[lead_id].count('course')} >= 2"
    )
    # A number in `where` matches however the payload spelled it; text ignores case.
    books = RULES.validate_python(yaml.safe_load("event: {name: purchase, where: {price: 100}}"))
    assert await selected(db, books) == {i for i, items in bought.items() if "book" in items}
    shouted = RULES.validate_python(
        yaml.safe_load("event: {name: purchase, where: {product: BOOK}}")
    )
    assert await selected(db, shouted) == await selected(db, books)


# ---- leadbot check ----


def test_check_words_a_bad_rule_in_the_scenarios_language(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "sc"
    shutil.copytree(FIXTURE_SCENARIO, folder)
    funnel = folder / "funnel.yaml"
    text = funnel.read_text(encoding="utf-8")
    assert "      - tag: wants_audit" in text
    funnel.write_text(
        text.replace("      - tag: wants_audit", "      - last_purchase: {within: 90d, over: 1d}"),
        encoding="utf-8",
    )
    assert check(folder) == 1
    said = capsys.readouterr()
    assert "в last_purchase нужно что-то одно: within: или over:" in said.out + said.err
