"""The rule evaluator: concrete examples of every rule kind with their explanations pinned,
algebraic laws checked on random rule trees, and loading a lead's facts from SQLite."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bot.rule_facts import LeadFacts, Reads, load_facts, reads
from bot.rules import evaluate, explain
from bot.scenario.conditions import (
    AllRule,
    AnswerCondition,
    AnswerRule,
    AnyRule,
    Comparison,
    ContactRule,
    EventCount,
    EventRule,
    NotRule,
    OfferRule,
    Rule,
    ScoreRule,
    SourceRule,
    StageRule,
    TagRule,
    events_in,
)
from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES, STAGES
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import SHIPPED_SCENARIO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RULE = TypeAdapter(Rule)


def parse(value: Any) -> Rule:
    """A rule as YAML gives it (dicts, lists, texts) through the scenario schema."""
    return RULE.validate_python(value)


def lead(**changes: Any) -> LeadFacts:
    """A fresh lead that has done nothing, with `changes` applied."""
    facts = LeadFacts(
        score=0,
        tags=frozenset(),
        answers={},
        stage="new",
        funnel_stage="new",
        event_counts={},
        contacts=frozenset(),
    )
    return dataclasses.replace(facts, **changes)


# ---- each rule kind ----


@pytest.mark.parametrize(
    ("rule", "score", "reason"),
    [
        (">= 60", 65, "score 65 >= 60"),
        (">= 60", 60, "score 60 >= 60"),
        (">= 60", 59, None),
        (60, 60, "score 60 >= 60"),  # a bare number means "at least"
        ("60", 61, "score 61 >= 60"),
        ("< 7.5", 7, "score 7 < 7.5"),
        ("== 0", 0, "score 0 == 0"),
        ("!= 0", 0, None),
        ("> -5", -4, "score -4 > -5"),
    ],
)
def test_score(rule: Any, score: int, reason: str | None) -> None:
    facts = lead(score=score)
    assert explain(parse({"score": rule}), facts) == reason
    assert evaluate(parse({"score": rule}), facts) is (reason is not None)


def test_tag() -> None:
    rule = parse({"tag": "wants_audit"})
    assert explain(rule, lead(tags=frozenset({"enterprise", "wants_audit"}))) == "tag wants_audit"
    assert not evaluate(rule, lead(tags=frozenset({"enterprise"})))


@pytest.mark.parametrize(
    ("rule", "stage", "funnel_stage", "reason"),
    [
        ("qualified", "qualified", "qualified", "stage qualified"),
        # a funnel stage counts once reached: a customer has been qualified
        ("qualified", "customer", "customer", "stage customer, past qualified"),
        ("qualified", "warming", "warming", None),
        ("new", "engaged", "engaged", "stage engaged, past new"),
        # a side stage keeps how far the lead got
        ("qualified", "unsubscribed", "qualified", "stage qualified"),
        ("customer", "unsubscribed", "qualified", None),
        # a side stage is true only while the lead is there
        ("unsubscribed", "unsubscribed", "warming", "stage unsubscribed"),
        ("unsubscribed", "warming", "warming", None),
        ("lost", "blocked", "contact", None),
        ("blocked", "blocked", "contact", "stage blocked"),
    ],
)
def test_stage(rule: str, stage: str, funnel_stage: str, reason: str | None) -> None:
    facts = lead(stage=stage, funnel_stage=funnel_stage)
    assert explain(parse({"stage": rule}), facts) == reason
    assert evaluate(parse({"stage": rule}), facts) is (reason is not None)


@pytest.mark.parametrize(
    ("rule", "counts", "reason"),
    [
        ("case_read", {"case_read": 1}, "case_read"),
        ("case_read", {"case_read": 4}, "case_read"),
        ("case_read", {}, None),  # never happened: counted as 0
        ({"event": "case_read"}, {"case_read": 2}, "case_read"),
        ("pricing_viewed >= 3", {"pricing_viewed": 3}, "pricing_viewed 3 >= 3"),
        ("pricing_viewed >= 3", {"pricing_viewed": 2}, None),
        ({"event": "pricing_viewed == 0"}, {}, "pricing_viewed 0 == 0"),
        ({"event": "pricing_viewed < 2"}, {"pricing_viewed": 1}, "pricing_viewed 1 < 2"),
        ({"event": "pricing_viewed != 1"}, {"pricing_viewed": 1}, None),
    ],
)
def test_event(rule: Any, counts: dict[str, int], reason: str | None) -> None:
    facts = lead(event_counts=counts)
    assert explain(parse(rule), facts) == reason
    assert evaluate(parse(rule), facts) is (reason is not None)


@pytest.mark.parametrize(
    ("condition", "answer", "reason"),
    [
        (">= 9", "10", "answer nps 10 >= 9"),
        (">= 9", " 9 ", "answer nps 9 >= 9"),
        (">= 9", "9,5", "answer nps 9,5 >= 9"),  # a decimal comma, as people type it
        (">= 9", "8", None),
        (">= 9", "десять", None),  # not a number: a comparison is false
        (">= 9", "nan", None),
        (">= 9", "1e3", None),
        ("!= 5", "abc", None),  # even `!=` needs a number
        ("< 0", "-3", "answer nps -3 < 0"),
        (">= 9", None, None),  # not answered
        (9, "9", 'answer nps "9"'),  # no operator: the exact text
        ("9", "9", 'answer nps "9"'),
        (9, "9.0", None),
        (9, "10", None),
    ],
)
def test_answer_nps(condition: Any, answer: str | None, reason: str | None) -> None:
    facts = lead(answers={} if answer is None else {"nps": answer})
    rule = parse({"answer": {"nps": condition}})
    assert explain(rule, facts) == reason
    assert evaluate(rule, facts) is (reason is not None)


def test_answer_text_ignores_case_and_surrounding_spaces() -> None:
    rule = parse({"answer": {"role": "Принимаю решение"}})
    facts = lead(answers={"role": "  принимаю РЕШЕНИЕ \n"})
    assert explain(rule, facts) == 'answer role "принимаю РЕШЕНИЕ"'
    assert not evaluate(rule, lead(answers={"role": "Принимаю решения"}))


def test_answer_with_several_questions_needs_them_all() -> None:
    rule = parse({"answer": {"nps": ">= 9", "role": "CEO"}})
    assert explain(rule, lead(answers={"nps": "10", "role": "ceo"})) == (
        'answer nps 10 >= 9, answer role "ceo"'
    )
    assert not evaluate(rule, lead(answers={"nps": "10", "role": "CTO"}))
    assert not evaluate(rule, lead(answers={"role": "CEO"}))


def test_answer_condition_given_as_mapping() -> None:
    rule = parse({"answer": {"nps": {"compare": {"op": ">=", "number": 9}, "equals": "10"}}})
    assert evaluate(rule, lead(answers={"nps": "10"}))
    assert not evaluate(rule, lead(answers={"nps": "9"}))
    # neither part: only asks that the question was answered
    answered = parse({"answer": {"nps": {}}})
    assert explain(answered, lead(answers={"nps": "whatever"})) == 'answer nps "whatever"'
    assert not evaluate(answered, lead())


@pytest.mark.parametrize(
    ("kind", "contacts", "reason"),
    [
        ("phone", {"phone"}, "contact phone"),
        ("phone", {"email"}, None),
        ("email", {"phone", "email"}, "contact email"),
        ("any", {"email"}, "contact email"),
        ("any", {"phone", "email"}, "contact email"),
        ("any", set(), None),
    ],
)
def test_contact(kind: str, contacts: set[str], reason: str | None) -> None:
    facts = lead(contacts=frozenset(contacts))
    assert explain(parse({"contact": kind}), facts) == reason
    assert evaluate(parse({"contact": kind}), facts) is (reason is not None)


def test_not() -> None:
    rule = parse({"not": {"tag": "has_telephony"}})
    assert explain(rule, lead()) == "not tag has_telephony"
    assert not evaluate(rule, lead(tags=frozenset({"has_telephony"})))
    assert explain(parse({"not": "audit_held"}), lead()) == "not audit_held"
    assert explain(parse({"not": {"score": ">= 60"}}), lead(score=10)) == "not score >= 60"
    # a double negation explains the rule itself
    assert explain(parse({"not": {"not": {"tag": "a"}}}), lead(tags=frozenset("a"))) == "tag a"
    # not any: none of them; not all: the branch that failed
    none_of = parse({"not": {"any": [{"tag": "a"}, {"score": ">= 60"}]}})
    assert explain(none_of, lead()) == "none of: tag a, score >= 60"
    not_all = parse({"not": {"all": [{"tag": "a"}, {"tag": "b"}]}})
    assert explain(not_all, lead(tags=frozenset({"a"}))) == "not tag b"
    assert explain(not_all, lead(tags=frozenset({"a", "b"}))) is None


def test_any_names_its_first_true_branch() -> None:
    rule = parse({"any": [{"tag": "a"}, {"score": ">= 60"}, {"tag": "b"}]})
    assert explain(rule, lead(score=70, tags=frozenset({"b"}))) == "score 70 >= 60"
    assert explain(rule, lead(score=70, tags=frozenset({"a", "b"}))) == "tag a"
    assert explain(rule, lead(score=10)) is None


def test_all_lists_every_reason_and_brackets_nested_lists() -> None:
    rule = parse({"all": [{"tag": "a"}, {"all": [{"tag": "b"}, {"score": ">= 5"}]}]})
    facts = lead(score=5, tags=frozenset({"a", "b"}))
    assert explain(rule, facts) == "all of: tag a, (all of: tag b, score 5 >= 5)"
    assert explain(parse({"all": [{"tag": "a"}]}), facts) == "tag a"
    assert explain(rule, lead(score=5, tags=frozenset({"a"}))) is None


def test_a_mapping_with_several_keys_means_all() -> None:
    rule = parse({"tag": "enterprise", "score": ">= 40"})
    assert isinstance(rule, AllRule)
    facts = lead(score=50, tags=frozenset({"enterprise"}))
    assert explain(rule, facts) == "all of: tag enterprise, score 50 >= 40"
    assert not evaluate(rule, lead(score=30, tags=frozenset({"enterprise"})))


def test_events_in() -> None:
    rule = parse(
        {
            "any": [
                {"not": "audit_held"},
                {"all": ["case_read", {"event": "pricing_viewed >= 3"}]},
                {"tag": "case_read_tag", "score": 10, "answer": {"nps": 9}},
            ]
        }
    )
    assert events_in(rule) == {"audit_held", "case_read", "pricing_viewed"}
    assert events_in(parse({"tag": "x"})) == set()


# ---- the qualify example of the scenario format ----

QUALIFY = {
    "any": [
        {"score": ">= 60"},
        {"all": ["case_read", "webinar_registered", "pricing_viewed >= 3"]},
        {"tag": "wants_audit"},
    ]
}
ENGAGED = {"case_read": 1, "webinar_registered": 1, "pricing_viewed": 3}


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (lead(score=65), "score 65 >= 60"),
        (
            lead(score=35, event_counts=ENGAGED),
            "all of: case_read, webinar_registered, pricing_viewed 3 >= 3",
        ),
        (lead(score=35, event_counts={**ENGAGED, "pricing_viewed": 2}), None),
        (lead(score=35, event_counts={"case_read": 1, "pricing_viewed": 5}), None),
        (lead(score=40, tags=frozenset({"wants_audit"})), "tag wants_audit"),
        (lead(score=80, tags=frozenset({"wants_audit"})), "score 80 >= 60"),
        (lead(score=59), None),
    ],
)
def test_qualify_example(facts: LeadFacts, reason: str | None) -> None:
    rule = parse(QUALIFY)
    assert events_in(rule) == {"case_read", "webinar_registered", "pricing_viewed"}
    assert explain(rule, facts) == reason
    assert evaluate(rule, facts) is (reason is not None)


def test_step_conditions_of_the_scenario_format() -> None:
    invite = parse({"answer": {"nps": ">= 9"}})
    assert explain(invite, lead(answers={"nps": "10"})) == "answer nps 10 >= 9"
    assert not evaluate(invite, lead(answers={"nps": "7"}))
    telephony = parse({"not": {"tag": "has_telephony"}})
    assert evaluate(telephony, lead(tags=frozenset({"wants_audit"})))


def test_shipped_scenario_rules_evaluate() -> None:
    scenario = load_scenario(SHIPPED_SCENARIO).scenario
    assert scenario.scoring.qualify is not None
    rules = [scenario.scoring.qualify] + [
        step.if_ for sequence in scenario.sequences.values() for step in sequence.steps if step.if_
    ]
    assert len(rules) > 1
    nobody, everything = lead(), lead(score=100, tags=frozenset({"enterprise", "wants_audit"}))
    for rule in rules:
        for facts in (nobody, everything):
            assert (explain(rule, facts) is None) is not evaluate(rule, facts)
    assert not evaluate(scenario.scoring.qualify, nobody)
    assert explain(scenario.scoring.qualify, everything) == "score 100 >= 60"
    assert explain(scenario.scoring.qualify, lead(score=45, tags=frozenset({"enterprise"}))) == (
        "all of: tag enterprise, score 45 >= 40"
    )


# ---- laws, on random rule trees and leads ----

PROPERTY = settings(max_examples=200, deadline=None)
TAGS = ("wants_audit", "enterprise", "has_telephony")
EVENTS = ("case_read", "webinar_registered", "pricing_viewed")
OFFERS = ("guide", "audit")
SOURCES = ("vkads", "site")
QUESTIONS = ("nps", "role")
OPERATORS = (">=", "<=", "==", "!=", ">", "<")
NUMBERS = (-3, 0, 1, 7, 9, 9.5, 10, 40, 60)
ANSWERS = ("9", "10", " 7 ", "9,5", "-3", "Принимаю решение", "принимаю РЕШЕНИЕ ", "abc", "")
EQUALS = ("9", "принимаю решение", "abc")  # fewer, so that texts match often enough

comparisons = st.builds(Comparison, op=st.sampled_from(OPERATORS), number=st.sampled_from(NUMBERS))
answer_conditions = st.one_of(
    st.builds(AnswerCondition, compare=comparisons),
    st.builds(AnswerCondition, equals=st.sampled_from(EQUALS)),
)
leaf_rules = st.one_of(
    st.builds(ScoreRule, score=comparisons),
    st.builds(TagRule, tag=st.sampled_from((*TAGS, "never_given"))),
    st.builds(StageRule, stage=st.sampled_from(STAGES)),
    st.builds(
        EventRule,
        event=st.builds(
            EventCount,
            name=st.sampled_from(EVENTS),
            op=st.sampled_from(OPERATORS),
            count=st.integers(0, 4),
        ),
    ),
    # Conditions go in as mappings: the model's validator would read an AnswerCondition
    # instance as answer text.
    st.builds(
        AnswerRule,
        answer=st.dictionaries(
            st.sampled_from(QUESTIONS),
            answer_conditions.map(AnswerCondition.model_dump),
            min_size=1,
        ),
    ),
    st.builds(ContactRule, contact=st.sampled_from(("phone", "email", "any"))),
    st.builds(OfferRule, offer=st.sampled_from(OFFERS)),
    st.builds(SourceRule, source=st.sampled_from(SOURCES)),
)
rules: st.SearchStrategy[Rule] = st.recursive(
    leaf_rules,
    lambda children: st.one_of(
        st.builds(AnyRule, any=st.lists(children, min_size=1, max_size=3)),
        st.builds(AllRule, all=st.lists(children, min_size=1, max_size=3)),
        st.builds(NotRule, not_=children),
    ),
    max_leaves=8,
)


def some(
    names: tuple[str, ...], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Each name of a small pool in or out; st.dictionaries over so few names spends most of
    its time rejecting duplicates."""
    drawn = st.fixed_dictionaries({name: st.none() | values for name in names})
    return drawn.map(lambda d: {name: value for name, value in d.items() if value is not None})


def _facts(
    stages: tuple[str, str],
    score: int,
    tags: dict[str, bool],
    answers: dict[str, str],
    counts: dict[str, int],
    contacts: dict[str, bool],
    offers: dict[str, bool],
    source: str | None,
) -> LeadFacts:
    funnel_stage, stage = stages
    return LeadFacts(
        score=score,
        tags=frozenset(tags),
        answers=answers,
        stage=stage,
        funnel_stage=funnel_stage,
        event_counts=counts,
        contacts=frozenset(contacts),
        source=source,
        offers=frozenset(offers),
    )


lead_facts = st.builds(
    _facts,
    # the current stage is the funnel stage, or a side stage that kept it
    st.sampled_from([(f, s) for f in FUNNEL_STAGES for s in (f, *SIDE_STAGES)]),
    st.sampled_from((-3, 0, 7, 9, 10, 39, 40, 59, 60, 61, 100)),
    some(TAGS, st.just(True)),
    some(QUESTIONS, st.sampled_from(ANSWERS)),
    some(EVENTS, st.integers(0, 4)),
    some(("phone", "email"), st.just(True)),
    some(OFFERS, st.just(True)),
    st.sampled_from((None, *SOURCES)),
)


def event_names(rule: Rule) -> set[str]:
    """Every EventRule name in the tree, walked through the model's own dump."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("event"), dict) and "name" in node["event"]:
                found.add(node["event"]["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(rule.model_dump(by_alias=True))
    return found


@PROPERTY
@given(rules, lead_facts)
def test_double_negation(rule: Rule, facts: LeadFacts) -> None:
    assert evaluate(NotRule(not_=NotRule(not_=rule)), facts) == evaluate(rule, facts)
    assert evaluate(NotRule(not_=rule), facts) != evaluate(rule, facts)


@PROPERTY
@given(rules, lead_facts)
def test_a_list_of_one_is_the_rule(rule: Rule, facts: LeadFacts) -> None:
    assert evaluate(AllRule(all=[rule]), facts) == evaluate(rule, facts)
    assert evaluate(AnyRule(any=[rule]), facts) == evaluate(rule, facts)


@PROPERTY
@given(rules, rules, lead_facts)
def test_de_morgan(a: Rule, b: Rule, facts: LeadFacts) -> None:
    both = AllRule(all=[a, b])
    neither_fails = NotRule(not_=AnyRule(any=[NotRule(not_=a), NotRule(not_=b)]))
    assert evaluate(both, facts) == evaluate(neither_fails, facts)
    either = AnyRule(any=[a, b])
    not_both_fail = NotRule(not_=AllRule(all=[NotRule(not_=a), NotRule(not_=b)]))
    assert evaluate(either, facts) == evaluate(not_both_fail, facts)


@PROPERTY
@given(st.lists(rules, min_size=1, max_size=4), lead_facts, st.data())
def test_order_does_not_matter(
    children: list[Rule], facts: LeadFacts, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(children))
    assert evaluate(AnyRule(any=children), facts) == evaluate(AnyRule(any=shuffled), facts)
    assert evaluate(AllRule(all=children), facts) == evaluate(AllRule(all=shuffled), facts)


@PROPERTY
@given(rules)
def test_generated_rules_are_what_yaml_can_say(rule: Rule) -> None:
    assert parse(rule.model_dump(by_alias=True)) == rule


@PROPERTY
@given(rules, rules, lead_facts)
def test_a_mapping_with_two_keys_is_all_of_them(a: Rule, b: Rule, facts: LeadFacts) -> None:
    dumped_a, dumped_b = a.model_dump(by_alias=True), b.model_dump(by_alias=True)
    assume(dumped_a.keys() != dumped_b.keys())  # one key each; a mapping can't repeat one
    both = parse({**dumped_a, **dumped_b})
    assert isinstance(both, AllRule)
    assert evaluate(both, facts) == (evaluate(a, facts) and evaluate(b, facts))


@PROPERTY
@given(rules, lead_facts)
def test_explain_exactly_when_true(rule: Rule, facts: LeadFacts) -> None:
    reason = explain(rule, facts)
    assert (reason is not None) == evaluate(rule, facts)
    assert reason != ""


@PROPERTY
@given(rules)
def test_events_in_covers_every_event_rule(rule: Rule) -> None:
    assert events_in(rule) == event_names(rule)


@PROPERTY
@given(rules, lead_facts, st.integers(0, 4))
def test_unrelated_facts_change_nothing(rule: Rule, facts: LeadFacts, times: int) -> None:
    expected = evaluate(rule, facts)
    read = events_in(rule)
    # counts of events the rule doesn't read: dropped, changed or added
    only_read = {k: v for k, v in facts.event_counts.items() if k in read}
    assert evaluate(rule, dataclasses.replace(facts, event_counts=only_read)) == expected
    unread = {name: times for name in (*EVENTS, "unrelated_event") if name not in read}
    noisier = dataclasses.replace(
        facts,
        event_counts={**facts.event_counts, **unread},
        tags=facts.tags | {"unrelated_tag"},
        answers={**facts.answers, "unrelated_question": "10"},
    )
    assert evaluate(rule, noisier) == expected


@PROPERTY
@given(rules, lead_facts)
def test_a_rule_needs_only_what_reads_names(rule: Rule, facts: LeadFacts) -> None:
    """Loading only what `reads` names (the rest left empty) changes no verdict or reason."""
    needs = reads(rule)
    only = dataclasses.replace(
        facts,
        event_counts={k: v for k, v in facts.event_counts.items() if k in needs.events},
        tags=facts.tags if needs.tags else frozenset(),
        answers=facts.answers if needs.answers else {},
        contacts=facts.contacts if needs.contacts else frozenset(),
        offers=facts.offers if needs.offers else frozenset(),
    )
    assert evaluate(rule, only) == evaluate(rule, facts)
    assert explain(rule, only) == explain(rule, facts)


async def test_only_the_facts_a_rule_reads_are_loaded(sqlite_db: Database) -> None:
    async with sqlite_db.unit_of_work() as uow:
        row, _ = await uow.leads.create(channel="telegram", external_id="8", now=NOW)
        await uow.leads.add_tag(row.id, "enterprise", now=NOW)
        await uow.leads.set_answer(row.id, "nps", "9", score=0, now=NOW)
        facts = await load_facts(uow, row, reads(parse({"tag": "enterprise"})))
    assert facts.tags == {"enterprise"}
    assert facts.answers == {}  # not read by the rule, not loaded


# ---- loading a lead's facts from storage ----


async def test_load_facts_from_sqlite(sqlite_db: Database) -> None:
    async with sqlite_db.unit_of_work() as uow:
        row, _ = await uow.leads.create(channel="telegram", external_id="1", now=NOW)
        row.score, row.stage, row.funnel_stage = 45, "unsubscribed", "warming"
        await uow.leads.add_tag(row.id, "enterprise", now=NOW)
        await uow.leads.set_answer(row.id, "nps", "9", score=0, now=NOW)
        await uow.leads.add_contact(
            row.id, "phone", "+79991234567", verified=True, channel="telegram", now=NOW
        )
        for name in ("case_read", "pricing_viewed", "pricing_viewed", "webinar_registered"):
            uow.events.add(row.id, name, now=NOW)
        await uow.commit()

    async with sqlite_db.unit_of_work() as uow:
        stored = await uow.leads.get(row.id)
        assert stored is not None
        everything = Reads(
            frozenset({"case_read", "pricing_viewed", "never_happened"}),
            tags=True,
            answers=True,
            contacts=True,
            offers=True,
        )
        facts = await load_facts(uow, stored, everything)

    assert facts == LeadFacts(
        score=45,
        tags=frozenset({"enterprise"}),
        answers={"nps": "9"},
        stage="unsubscribed",
        funnel_stage="warming",
        event_counts={"case_read": 1, "pricing_viewed": 2, "never_happened": 0},
        contacts=frozenset({"phone"}),
    )
    rule = parse({"all": [{"stage": "warming"}, {"answer": {"nps": ">= 9"}}, "case_read"]})
    assert explain(rule, facts) == "all of: stage warming, answer nps 9 >= 9, case_read"
    assert not evaluate(parse("pricing_viewed >= 3"), facts)


async def test_load_facts_counts_events_not_yet_flushed(sqlite_db: Database) -> None:
    """Rules run inside the handler's transaction, right after it recorded events."""
    async with sqlite_db.unit_of_work() as uow:
        row, _ = await uow.leads.create(channel="telegram", external_id="2", now=NOW)
        uow.events.add(row.id, "case_read", now=NOW)
        facts = await load_facts(uow, row, reads(parse(QUALIFY)))
    assert facts.event_counts == {"case_read": 1, "pricing_viewed": 0, "webinar_registered": 0}
    assert (facts.tags, facts.answers, facts.contacts) == (frozenset(), {}, frozenset())
    assert not evaluate(parse(QUALIFY), facts)


def test_source_and_offer_segment_leads_for_broadcasts() -> None:
    facts = lead(source="vkads", offers=frozenset({"guide"}))
    assert explain(parse({"source": "vkads"}), facts) == "source vkads"
    assert not evaluate(parse({"source": "site"}), facts)
    assert explain(parse({"offer": "guide"}), facts) == "offer guide"
    assert not evaluate(parse({"offer": "audit"}), facts)
    assert evaluate(parse({"source": "vkads", "offer": "guide"}), facts)


async def test_load_facts_knows_the_source_and_the_offers_taken(sqlite_db: Database) -> None:
    async with sqlite_db.unit_of_work() as uow:
        row, _ = await uow.leads.create(channel="telegram", external_id="7", now=NOW)
        row.source = "vkads"
        uow.events.add(row.id, "offer_taken", now=NOW, payload={"offer": "guide"})
        uow.events.add(row.id, "offer_taken", now=NOW, payload={"offer": "audit"})
        facts = await load_facts(uow, row, reads(parse({"offer": "guide"})))
    assert facts.source == "vkads"
    assert facts.offers == {"guide", "audit"}
