"""Warnings: a scenario that loads and runs, but where a lead's action leads nowhere. An event
nothing reacts to, and an offer whose lead can never reach the managers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.scenario.conditions import (
    AllRule,
    AnswerRule,
    AnyRule,
    ContactRule,
    EventRule,
    OfferRule,
    Rule,
    ScoreRule,
    TagRule,
    events_in,
)
from bot.scenario.fields import BUILTIN_EVENTS, FUNNEL_STAGES
from bot.scenario.model import Scenario
from bot.scenario.source import Path_
from bot.scenario.wording import Say

Found = tuple[Path_, Say]

# Built-in events of the managers' side and of a deal: they follow a handoff, never lead to it.
AFTER_HANDOFF = frozenset({"qualified", "claimed", "not_fit", "lost", "purchase"})
BEFORE_QUALIFIED = FUNNEL_STAGES[: FUNNEL_STAGES.index("qualified")]


def lint_scenario(s: Scenario) -> list[Found]:
    return [
        *_idle_events(s),
        *_offers_without_managers(s),
        *_goals_never_reached(s),
        *_silence_outlasted(s),
    ]


def _silence_outlasted(s: Scenario) -> Iterator[Found]:
    """A chain for the silent that goes on when the lead is back."""
    for seq_id, sequence in s.sequences.items():
        silent = sequence.start_on is not None and sequence.start_on.inactive is not None
        if silent and "returned" not in sequence.stop_on:
            yield ("sequences", seq_id, "start_on", "inactive"), Say("lint.silence_outlasted")


def _goals_never_reached(s: Scenario) -> Iterator[Found]:
    """A/B tests whose goal nothing can record: the test would run for ever without a winner.
    Events that come from outside the chat are known once declared under `events:`."""
    known = s.known_events()
    for seq_id, sequence in s.sequences.items():
        for index, step in enumerate(sequence.steps):
            if not step.variants:
                continue
            path: Path_ = ("sequences", seq_id, "steps", index)
            goal = step.goal
            if goal is not None and goal.event is not None and goal.event not in known:
                yield (*path, "goal", "event"), Say("lint.goal_never_recorded", name=goal.event)
            elif goal is None and step.auto and not any(b.event or b.url for b in step.buttons):
                yield (*path, "variants"), Say("lint.goal_no_buttons")


def _idle_events(s: Scenario) -> Iterator[Found]:
    """Events recorded or declared that change nothing: no points, no rule, chain or promo
    reads them, and the button that records them neither replies nor hands over."""
    used = set(s.scoring.events)
    for rule in _rules(s):
        used |= events_in(rule)
    for sequence in s.sequences.values():
        used |= set(sequence.stop_on)
        if sequence.start_on is not None and sequence.start_on.event:
            used.add(sequence.start_on.event)
    for promo in s.promos.values():
        if promo.issue_on is not None and promo.issue_on.event:
            used.add(promo.issue_on.event)
    first_button: dict[str, Path_] = {}
    for path, button in s.step_buttons():
        if button.event is None:
            continue
        if button.url or button.handoff or button.reply is not None:
            used.add(button.event)  # the page, the managers or the reply is the reaction
        first_button.setdefault(button.event, (*path, "event"))
    for name, path in first_button.items():
        if name not in used and name not in BUILTIN_EVENTS:
            yield path, Say("lint.idle_button", name=name)
    for name in s.events:
        if name not in used and name not in first_button:
            yield ("events", name), Say("lint.idle_declared", name=name)


def _rules(s: Scenario) -> Iterator[Rule]:
    if s.scoring.qualify is not None:
        yield s.scoring.qualify
    for sequence in s.sequences.values():
        yield from (step.if_ for step in sequence.steps if step.if_ is not None)
    yield from (broadcast.segment for broadcast in s.broadcasts.values())


@dataclass
class Reach:
    """What a lead who takes one offer may come to have: the offer's own questions, tags and
    chains, the offers those chains' buttons open, and the events from outside the chat."""

    offers: set[str] = field(default_factory=set)
    sequences: set[str] = field(default_factory=set)
    questions: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    hands_over: bool = False  # a handoff: offer or button on the way

    def max_score(self, s: Scenario) -> float:
        score = float(sum(s.offers[o].then.score for o in self.offers))
        for question_id in self.questions:
            options = s.questions[question_id].options
            score += max((option.score for option in options), default=0)
        score += sum(s.scoring.tags.get(tag, 0) for tag in self.tags)
        for name in self.events:
            points = s.scoring.events.get(name)
            if points is None or points.points <= 0:
                continue
            if points.max_times is None:
                return math.inf  # a button pressed again, an event reported again
            score += points.points * points.max_times
        return score


def reach(s: Scenario, offer_id: str) -> Reach:
    found = Reach(events=(set(BUILTIN_EVENTS) - AFTER_HANDOFF) | set(s.events))
    offers = [offer_id]
    while offers:
        current = offers.pop()
        if current in found.offers or current not in s.offers:
            continue
        found.offers.add(current)
        then = s.offers[current].then
        found.hands_over |= bool(then.handoff)
        found.tags |= set(then.tag)
        found.questions |= {q for q in s.offers[current].ask if q in s.questions}
        chains = {then.start} if then.start else set()
        while chains:
            seq_id = chains.pop()
            if seq_id in found.sequences or seq_id not in s.sequences:
                continue
            found.sequences.add(seq_id)
            for step in s.sequences[seq_id].steps:
                if step.ask in s.questions:
                    found.questions.add(step.ask)
                for button in step.buttons:
                    found.hands_over |= bool(button.handoff)
                    if button.event:
                        found.events.add(button.event)
                    if button.offer:
                        offers.append(button.offer)
            chains |= {
                other
                for other, sequence in s.sequences.items()
                if sequence.start_on is not None
                and (
                    sequence.start_on.event in found.events
                    or sequence.start_on.stage in BEFORE_QUALIFIED
                )
            }
    for question_id in found.questions:
        found.tags |= {o.tag for o in s.questions[question_id].options if o.tag}
    return found


def possible(rule: Rule, s: Scenario, found: Reach) -> bool:
    """Whether the rule may hold for such a lead: optimistic, so a warning is never wrong."""
    if isinstance(rule, AnyRule):
        return any(possible(item, s, found) for item in rule.any)
    if isinstance(rule, AllRule):
        return all(possible(item, s, found) for item in rule.all)
    if isinstance(rule, ScoreRule) and rule.score.op in (">=", ">", "=="):
        top = found.max_score(s)
        return top > rule.score.number if rule.score.op == ">" else top >= rule.score.number
    if isinstance(rule, TagRule):
        return rule.tag in found.tags
    if isinstance(rule, EventRule) and rule.event.op in (">=", ">", "=="):
        return rule.event.count <= 0 or rule.event.name in found.events
    if isinstance(rule, OfferRule):
        return rule.offer in found.offers
    if isinstance(rule, AnswerRule):
        return set(rule.answer) <= found.questions
    if isinstance(rule, ContactRule):
        kinds = {s.questions[q].type for q in found.questions} & {"phone", "email"}
        return bool(kinds) if rule.contact == "any" else rule.contact in kinds
    return True  # not:, stage:, source:, and "at most" comparisons may hold


def _offers_without_managers(s: Scenario) -> Iterator[Found]:
    qualify = s.scoring.qualify
    for offer_id in s.offers:
        found = reach(s, offer_id)
        if found.hands_over or (qualify is not None and possible(qualify, s, found)):
            continue
        why = Say("lint.qualify_cannot_hold" if qualify is not None else "lint.no_qualify")
        yield ("offers", offer_id), Say("lint.offer_alone", why=why)
