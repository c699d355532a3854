"""Experiments that finish themselves: weights split the leads deterministically, the decision
job records a supported winner once even when two run at once, announces it in the managers'
chat, and from then on new leads get the winner while those who had the step keep theirs.
And what `leadbot check` says about a test written wrong."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot import sequences
from bot.analytics import ab
from bot.analytics.experiments import decide
from bot.analytics.window import Window
from bot.clock import FakeClock
from bot.handoff import MANAGERS_POST
from bot.scenario.loader import ScenarioError, load_scenario
from bot.scenario.model import Step
from bot.scoring import Routes
from storage.database import Database
from storage.models import Event, ExperimentDecision, Lead, OutboxRow
from tests.analytics.test_ab import own_p
from tests.delivery.harness import MSK, Bench, fake_clock_worker, load, scenario_folder
from tests.delivery.test_gates import ManagersChat

TEXTS = {"a": "Вариант А", "b": "Вариант Б"}
AUTO = """
sequences:
  ab:
    steps:
      - id: hello
        after: 1h
        text: "Вариант А"
        variants: {b: "Вариант Б"}
        weights: {a: 90, b: 10}
        auto: true
        min_sent: 30
        buttons: [{text: "Записаться", event: audit_booked, reply: "Записали"}]
"""
CLICKS = {"a": 0.05, "b": 0.40}


def test_weights_give_their_shares_over_ten_thousand_leads() -> None:
    step = Step(
        id="s", text="a", variants={"b": "b", "c": "c"}, weights={"a": 70, "b": 15, "c": 15}
    )
    shares = Counter(sequences.variant_of(lead_id, "chain", step) for lead_id in range(1, 10_001))
    assert abs(shares["a"] - 7000) < 200, shares
    assert abs(shares["b"] - 1500) < 150, shares
    assert abs(shares["c"] - 1500) < 150, shares
    again = Counter(sequences.variant_of(lead_id, "chain", step) for lead_id in range(1, 10_001))
    assert again == shares  # a hash, not a coin


def test_equal_shares_keep_the_variants_leads_had_before_weights() -> None:
    step = Step(id="s", text="a", variants={"b": "b", "c": "c"})
    for lead_id in range(1, 2000):
        digest = hashlib.sha256(f"{lead_id}:chain:s".encode()).digest()
        before = ["a", "b", "c"][int.from_bytes(digest[:4], "big") % 3]
        assert sequences.variant_of(lead_id, "chain", step) == before


def test_a_decided_winner_is_what_a_new_lead_gets() -> None:
    step = Step(id="s", text="a", variants={"b": "b"}, weights={"a": 99, "b": 1})
    assert {sequences.variant_of(i, "c", step, "b") for i in range(200)} == {"b"}
    # a winner the scenario no longer has: the split as written
    assert sequences.variant_of(7, "c", step, "z") == sequences.variant_of(7, "c", step)


async def history(db: Database, bench: Bench, leads: int, seed: int) -> dict[str, list[int]]:
    """Leads who had the step (variant by the real hash) and clicked it, b far more often:
    the sends and clicks each variant has, as written."""
    rng = random.Random(seed)
    step = bench.scenarios.current.scenario.sequences["ab"].steps[0]
    now = bench.clock.now() - timedelta(days=5)
    async with db.unit_of_work() as uow:
        rows = [{"created_at": now, "updated_at": now} for _ in range(leads)]
        ids = list((await uow.session.execute(insert(Lead).returning(Lead.id), rows)).scalars())
        events = []
        counts = {"a": [0, 0], "b": [0, 0]}
        for lead_id in ids:
            variant = sequences.variant_of(lead_id, "ab", step)
            place = {"sequence": "ab", "step": "hello"}
            events.append(
                {
                    "lead_id": lead_id,
                    "name": "step_sent",
                    "payload": {**place, "variant": variant},
                    "created_at": now,
                }
            )
            counts[variant][0] += 1
            if rng.random() < CLICKS[variant]:
                counts[variant][1] += 1
                events.append(
                    {
                        "lead_id": lead_id,
                        "name": "audit_booked",
                        "payload": {"button": True, **place},
                        "created_at": now + timedelta(hours=2),
                    }
                )
        await uow.session.execute(insert(Event), events)
        await uow.commit()
    return counts


async def sent_variant(bench: Bench, external_id: str) -> tuple[str, str]:
    [event] = await bench.events(external_id, "step_sent")
    [text] = bench.transport.texts(external_id)[-1:]
    return event["variant"], text


async def test_the_job_decides_once_announces_and_new_leads_get_the_winner(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(db, load(scenario_folder(tmp_path, AUTO, guide_starts="ab")), clock)
    routes = Routes(managers=("telegram",))
    early = [f"20{i:02}" for i in range(6)]
    for external_id in early:
        await bench.take_guide(external_id)
    await bench.run_until(clock.now() + timedelta(hours=2))
    before = {external_id: await sent_variant(bench, external_id) for external_id in early}
    assert await decide(db, bench.scenarios, clock, routes) == []  # six sends: too few
    counts = await history(db, bench, 700, seed=4)
    assert min(sent for sent, _ in counts.values()) >= 30
    assert own_p(*counts["a"][::-1], *counts["b"][::-1]) < 0.05

    made = await asyncio.gather(*(decide(db, bench.scenarios, clock, routes) for _ in range(2)))
    assert sorted(len(m) for m in made) == [0, 1]
    [decision] = [d for m in made for d in m]
    assert (decision.sequence, decision.step, decision.winner) == ("ab", "hello", "b")
    assert await decide(db, bench.scenarios, clock, routes) == []  # decided already
    async with db.unit_of_work() as uow:
        rows = (await uow.session.execute(select(ExperimentDecision))).scalars().all()
        recorded = [(r.sequence, r.step, r.winner, r.why["sent"]) for r in rows]
        query = select(OutboxRow.lead_id, OutboxRow.payload).where(OutboxRow.kind == MANAGERS_POST)
        posts = (await uow.session.execute(query)).all()
    early_sent = Counter(variant for variant, _ in before.values())
    sent = {v: counts[v][0] + early_sent[v] for v in "ab"}
    assert recorded == [("ab", "hello", "b", sent)]
    [(lead_id, payload)] = posts
    assert lead_id is None
    assert "Победил вариант b" in payload["text"]

    # the announcement goes out through the delivery worker like any managers' post
    chat = ManagersChat()
    worker = fake_clock_worker(
        bench.funnel, {"telegram": bench.transport}, managers={"telegram": chat}
    )
    assert await worker.tick() == 1
    [(text, _)] = chat.posts
    assert text.startswith("🏁 A/B-тест завершён: цепочка ab, шаг hello.")

    # new leads get b whatever their hash says; those who had the step keep theirs
    late = [f"30{i:02}" for i in range(8)]
    for external_id in late:
        await bench.take_guide(external_id)
    await bench.run_until(clock.now() + timedelta(hours=2))
    step = bench.scenarios.current.scenario.sequences["ab"].steps[0]
    hashed = [sequences.variant_of(await bench.lead_id(e), "ab", step) for e in late]
    assert "a" in hashed  # 90 % of them would get a without the decision
    for external_id in late:
        assert await sent_variant(bench, external_id) == ("b", TEXTS["b"])
    for external_id in early:
        assert await sent_variant(bench, external_id) == before[external_id]

    # and the report says when and why
    now = clock.now()
    async with db.reading() as session:
        figures = await ab.figures(
            session,
            bench.scenarios.current.scenario,
            Window(now - timedelta(days=30), now, now, MSK),
        )
    [test] = figures.tests
    assert test.decision is not None
    assert test.decision.winner == "b"
    [table] = ab.tables(figures)
    when = decision.decided_at.astimezone(MSK)
    assert table.note.startswith(f"решено {when:%Y-%m-%d %H:%M}: победил b — ")
    assert decision.why["reason"] in table.note


# ---- what `leadbot check` says ----


def problems(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario_folder(tmp_path, extra))
    return [problem.message for problem in caught.value.problems]


def test_check_words_a_test_written_wrong_in_russian(tmp_path: Path) -> None:
    wrong_keys = AUTO.replace("weights: {a: 90, b: 10}", "weights: {a: 90, c: 10}")
    [message] = problems(tmp_path / "1", wrong_keys)
    assert "в weights: нужна доля для каждого варианта и только для них: a, b" in message
    no_variants = AUTO.replace('        variants: {b: "Вариант Б"}\n', "").replace(
        "        weights: {a: 90, b: 10}\n", ""
    )
    [message] = problems(tmp_path / "2", no_variants)
    assert "auto: true выбирает лучший из вариантов, а у шага их нет" in message
    [message] = problems(tmp_path / "3", AUTO.replace("auto: true", "confidence: 0.5"))
    assert "confidence: 0.5 вне допустимого" in message


def test_check_warns_of_a_goal_nobody_records(tmp_path: Path) -> None:
    loaded = load_scenario(
        scenario_folder(
            tmp_path, AUTO.replace("auto: true", "auto: true\n        goal: {event: demo_done}")
        )
    )
    goal = [w.message for w in loaded.warnings if "demo_done" in w.message]
    assert goal == [
        "sequences.ab.steps[0].goal.event: событие-цель 'demo_done' этого A/B-теста никто не "
        "записывает: его нет ни у кнопок, "
        "ни в разделе events:, поэтому ни один вариант не сможет победить; укажите событие, "
        "которое записывает кнопка или API событий, или уберите goal: (тогда цель — нажатие "
        "кнопок шага)"
    ]
    fine = load_scenario(scenario_folder(tmp_path / "ok", AUTO))
    assert not [w for w in fine.warnings if "A/B" in w.message]
