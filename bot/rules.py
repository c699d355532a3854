"""The evaluator of the scenario rule language (`scoring.qualify` and a step's `if:`).

The rules themselves are parsed by `bot.scenario.model`; this module says what they mean for
one lead, as docs/scenario.md ("rules") describes. Decisions the docs leave open:

- `stage: <funnel stage>` is true once the lead has REACHED that stage: its `funnel_stage` is
  that stage or a later one. So a customer satisfies `stage: qualified`, and a lead that
  unsubscribed after qualifying still does (a side stage keeps the furthest funnel stage).
- `stage: lost | unsubscribed | blocked` is true only while the lead is at exactly that stage.
- An answer is stored as text. A `compare` condition is true only when that text is a plain
  number (`9`, `-3`, `9.5`, `9,5`) that compares true; any other text makes it false, even for
  `!=`. An `equals` condition compares texts case-insensitively, ignoring surrounding spaces.
  An unanswered question makes its condition false. Several questions must all match.
- An event rule compares how many times the event happened (0 when it never did).
- `contact: any` means a phone or an e-mail.
- `rfm: <segment>` is true for a customer (a lead with a purchase) whose RFM segment, as of
  the `now` the facts are loaded at, is one of those named (bot/analytics/rfm.py defines the
  segments, with the scenario's `settings.rfm`). A lead who never bought is in none.
- `purchases:` and `revenue:` compare the count and the amounts' sum of the lead's purchases
  (0 for a lead who never bought); `last_purchase: {within: 90d}` is true for a lead whose
  last purchase was at most that long before the facts' `now`, `{over: 180d}` for one whose
  last purchase was more than that long before it: a lead who never bought is neither.
- `event: {name: purchase, where: {product: course}}` counts only the events whose payload
  holds these values (text without regard to case; a number as
  either of its JSON spellings, 100 or 100.0).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import timedelta

from bot.rule_facts import LeadFacts
from bot.scenario.conditions import (
    AllRule,
    AnswerCondition,
    AnswerRule,
    AnyRule,
    Comparison,
    ContactRule,
    EventCount,
    EventRule,
    LastPurchaseRule,
    NotRule,
    OfferRule,
    PurchasesRule,
    RevenueRule,
    RfmRule,
    Rule,
    ScoreRule,
    SourceRule,
    StageRule,
    TagRule,
)
from bot.stages import RANK

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
# A plain number as a person types it; float() alone would also take "nan", "1e3" or "1_0".
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
CONTACT_KINDS = frozenset({"phone", "email"})


def evaluate(rule: Rule, facts: LeadFacts) -> bool:
    """Whether the rule is true for the lead.

    Kept apart from `explain` (which builds texts) so the two can be checked against each
    other, and so a plain check builds no strings."""
    match rule:
        case AnyRule():
            return any(evaluate(child, facts) for child in rule.any)
        case AllRule():
            return all(evaluate(child, facts) for child in rule.all)
        case NotRule():
            return not evaluate(rule.not_, facts)
        case ScoreRule():
            return _compares(facts.score, rule.score)
        case TagRule():
            return rule.tag in facts.tags
        case StageRule():
            return _at_stage(rule.stage, facts)
        case EventRule():
            event = rule.event
            return _OPERATORS[event.op](facts.event_counts.get(event.key, 0), event.count)
        case AnswerRule():
            return all(
                _answer_matches(condition, facts.answers.get(question))
                for question, condition in rule.answer.items()
            )
        case ContactRule():
            return bool(_contacts_for(rule.contact) & facts.contacts)
        case SourceRule():
            return facts.source == rule.source
        case OfferRule():
            return rule.offer in facts.offers
        case RfmRule():
            return facts.rfm in rule.rfm
        case PurchasesRule():
            return _compares(facts.purchases, rule.purchases)
        case RevenueRule():
            return _compares(float(facts.revenue), rule.revenue)
        case LastPurchaseRule():
            return _recent(rule, facts)
    raise TypeError(f"not a rule: {rule!r}")


def explain(rule: Rule, facts: LeadFacts) -> str | None:
    """Why the rule is true, in short English for managers ("score 65 >= 60"); None if false.

    `any` names its first true branch, `all` lists the reasons of every branch."""
    match rule:
        case AnyRule():
            return next((r for r in (explain(c, facts) for c in rule.any) if r is not None), None)
        case AllRule():
            reasons = [explain(child, facts) for child in rule.all]
            if None in reasons:
                return None
            if len(reasons) == 1:
                return reasons[0]
            return "all of: " + ", ".join(_grouped(r) for r in reasons if r is not None)
        case NotRule():
            return _explain_not(rule.not_, facts)
        case ScoreRule():
            if not _compares(facts.score, rule.score):
                return None
            return f"score {_number(facts.score)} {_describe_comparison(rule.score)}"
        case TagRule():
            return f"tag {rule.tag}" if rule.tag in facts.tags else None
        case StageRule():
            return _explain_stage(rule.stage, facts)
        case EventRule():
            event = rule.event
            times = facts.event_counts.get(event.key, 0)
            if not _OPERATORS[event.op](times, event.count):
                return None
            if (event.op, event.count) == (">=", 1):  # the plain "it happened" form
                return _event_name(event)
            return f"{_event_name(event)} {times} {event.op} {event.count}"
        case AnswerRule():
            parts = []
            for question, condition in rule.answer.items():
                reason = _explain_answer(question, condition, facts.answers.get(question))
                if reason is None:
                    return None
                parts.append(reason)
            return ", ".join(parts)
        case ContactRule():
            present = sorted(_contacts_for(rule.contact) & facts.contacts)
            return f"contact {present[0]}" if present else None
        case SourceRule():
            return f"source {rule.source}" if facts.source == rule.source else None
        case OfferRule():
            return f"offer {rule.offer}" if rule.offer in facts.offers else None
        case RfmRule():
            return f"rfm {facts.rfm}" if facts.rfm in rule.rfm else None
        case PurchasesRule():
            if not _compares(facts.purchases, rule.purchases):
                return None
            return f"purchases {facts.purchases} {_describe_comparison(rule.purchases)}"
        case RevenueRule():
            if not _compares(float(facts.revenue), rule.revenue):
                return None
            return f"revenue {_number(float(facts.revenue))} {_describe_comparison(rule.revenue)}"
        case LastPurchaseRule():
            if not _recent(rule, facts) or facts.last_purchase is None:
                return None
            return f"last purchase {facts.last_purchase:%Y-%m-%d}"
    raise TypeError(f"not a rule: {rule!r}")


# ---- helpers ----


def _recent(rule: LastPurchaseRule, facts: LeadFacts) -> bool:
    """Whether the last purchase is within (or over) the rule's span before the facts' now;
    false for a lead who never bought."""
    if facts.last_purchase is None or facts.now is None:
        return False
    ago = facts.now - facts.last_purchase
    recency = rule.last_purchase
    if recency.within is not None:
        return ago <= recency.within
    return recency.over is not None and ago > recency.over


def _days(span: timedelta | None) -> str:
    days = (span or timedelta()).total_seconds() / 86400
    return f"{_number(days)}d"


def _event_name(event: EventCount) -> str:
    """The event as the rule names it, with its `where`: purchase (product=course)."""
    if not event.where:
        return event.name
    return f"{event.name} ({', '.join(f'{k}={v}' for k, v in sorted(event.where.items()))})"


def _explain_not(inner: Rule, facts: LeadFacts) -> str | None:
    if evaluate(inner, facts):
        return None
    match inner:
        case NotRule():  # `not: {not: r}` is just r
            return explain(inner.not_, facts)
        case AnyRule():
            return "none of: " + ", ".join(_grouped(_describe(c)) for c in inner.any)
        case AllRule():  # name the branch that failed, not the whole list
            failed = next(c for c in inner.all if not evaluate(c, facts))
            return _explain_not(failed, facts)
    return f"not {_describe(inner)}"


def _at_stage(stage: str, facts: LeadFacts) -> bool:
    if stage in RANK:  # a funnel stage: reached it or went further
        # An unknown stored stage ranks below everything rather than crashing a handler.
        return RANK.get(facts.funnel_stage, -1) >= RANK[stage]
    return facts.stage == stage  # a side stage: only while the lead is there


def _explain_stage(stage: str, facts: LeadFacts) -> str | None:
    if not _at_stage(stage, facts):
        return None
    if stage in RANK and facts.funnel_stage != stage:
        return f"stage {facts.funnel_stage}, past {stage}"
    return f"stage {stage}"


def _answer_matches(condition: AnswerCondition, value: str | None) -> bool:
    if value is None:  # not answered
        return False
    text = value.strip()
    if condition.compare is not None:
        if not _NUMBER.fullmatch(text):
            return False
        if not _compares(float(text.replace(",", ".")), condition.compare):
            return False
    # A condition with neither part (`{}` written out) asks only that the question was answered.
    return condition.equals is None or text.casefold() == condition.equals.strip().casefold()


def _explain_answer(question: str, condition: AnswerCondition, value: str | None) -> str | None:
    if value is None or not _answer_matches(condition, value):
        return None
    if condition.compare is not None:
        return f"answer {question} {value.strip()} {_describe_comparison(condition.compare)}"
    return f'answer {question} "{value.strip()}"'


def _contacts_for(kind: str) -> frozenset[str]:
    return CONTACT_KINDS if kind == "any" else frozenset({kind})


def _describe(rule: Rule) -> str:
    """What the rule asks for, true or not (for `not` reasons)."""
    match rule:
        case AnyRule():
            return "any of: " + ", ".join(_grouped(_describe(c)) for c in rule.any)
        case AllRule():
            return "all of: " + ", ".join(_grouped(_describe(c)) for c in rule.all)
        case NotRule():
            return f"not {_grouped(_describe(rule.not_))}"
        case ScoreRule():
            return f"score {_describe_comparison(rule.score)}"
        case TagRule():
            return f"tag {rule.tag}"
        case StageRule():
            return f"stage {rule.stage}"
        case EventRule():
            event = rule.event
            if (event.op, event.count) == (">=", 1):
                return _event_name(event)
            return f"{_event_name(event)} {event.op} {event.count}"
        case AnswerRule():
            parts = []
            for question, condition in rule.answer.items():
                wants = []
                if condition.compare is not None:
                    wants.append(_describe_comparison(condition.compare))
                if condition.equals is not None:
                    wants.append(f'"{condition.equals.strip()}"')
                parts.append(" ".join([f"answer {question}", *wants]))
            return ", ".join(parts)
        case ContactRule():
            return f"contact {rule.contact}"
        case SourceRule():
            return f"source {rule.source}"
        case OfferRule():
            return f"offer {rule.offer}"
        case RfmRule():
            return "rfm " + " or ".join(rule.rfm)
        case PurchasesRule():
            return f"purchases {_describe_comparison(rule.purchases)}"
        case RevenueRule():
            return f"revenue {_describe_comparison(rule.revenue)}"
        case LastPurchaseRule():
            recency = rule.last_purchase
            if recency.within is not None:
                return f"last purchase within {_days(recency.within)}"
            return f"last purchase over {_days(recency.over)}"
    raise TypeError(f"not a rule: {rule!r}")


def _compares(value: float, comparison: Comparison) -> bool:
    return _OPERATORS[comparison.op](value, comparison.number)


def _describe_comparison(comparison: Comparison) -> str:
    return f"{comparison.op} {_number(comparison.number)}"


def _number(value: float) -> str:
    """60.0 reads as "60": marketers wrote whole numbers, the model stores floats."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _grouped(text: str) -> str:
    """Brackets around a list inside a list, so "all of: a, (any of: b, c)" stays readable."""
    return f"({text})" if ", " in text else text
