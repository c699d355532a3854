"""Checks beyond the schema: references between sections, placeholders, message limits."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path

from bot.scenario.conditions import (
    AllRule,
    AnswerRule,
    AnyRule,
    EventRule,
    NotRule,
    OfferRule,
    Rule,
)
from bot.scenario.fields import STAGES
from bot.scenario.model import LinkButton, MenuButton, OfferButton, Scenario
from bot.scenario.source import Path_

TEXT_LIMIT = 4096  # Telegram's limit for one message
BUTTON_LIMIT = 40  # VK's limit for a button label; Telegram allows more, VK cuts
# Placeholders every text may use (replies sent at once, steps, broadcasts), besides
# `{promo.<id>}` and `{promo.<id>.expires}`.
SIMPLE_PLACEHOLDERS = ("first_name", "name", "referral_link", "policy_url")
# Texts sent without filling placeholders: the apology must not depend on data, the erasure
# notice has no data left, the flood answer comes before any lead is loaded.
SENT_AS_WRITTEN = frozenset(
    {("messages", "error"), ("messages", "deleted"), ("messages", "slow_down")}
)
# System texts that show a code or the referral counts have names of their own.
CODE_PLACEHOLDERS = frozenset({"code", "discount", "until"})
MESSAGE_PLACEHOLDERS = {
    "promo_line": CODE_PLACEHOLDERS,
    "referral_welcome": CODE_PLACEHOLDERS,
    "referral_reward": CODE_PLACEHOLDERS,
    "invite": frozenset({"friends", "qualified", "referral_link"}),
    "invite_counts": frozenset({"friends", "qualified"}),
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Found = tuple[Path_, str]


def placeholders(text: str) -> list[str]:
    """Names in `{...}`; `{{` and `}}` are literal braces."""
    return _PLACEHOLDER.findall(text.replace("{{", "").replace("}}", ""))


def check_scenario(scenario: Scenario, folder: Path) -> list[Found]:
    problems: list[Found] = []
    problems += _references(scenario)
    problems += _texts(scenario)
    problems += _files(scenario, folder)
    return problems


def _references(s: Scenario) -> Iterator[Found]:
    events = s.known_events()

    def offer(path: Path_, offer_id: str) -> Iterator[Found]:
        if offer_id not in s.offers:
            yield path, _unknown("offer", offer_id, s.offers)

    def promo(path: Path_, promo_id: str | None) -> Iterator[Found]:
        if promo_id is not None and promo_id not in s.promos:
            yield path, _unknown("promo", promo_id, s.promos)

    for index, button in enumerate(s.start.buttons):
        if isinstance(button, OfferButton):
            yield from offer(("start", "buttons", index, "offer"), button.offer)
    for offer_id, item in s.offers.items():
        base: Path_ = ("offers", offer_id)
        for index, question in enumerate(item.ask):
            if question not in s.questions:
                yield (*base, "ask", index), _unknown("question", question, s.questions)
        if len(set(item.ask)) != len(item.ask):
            yield (*base, "ask"), "a question is asked twice"
        if item.then.start is not None and item.then.start not in s.sequences:
            yield (*base, "then", "start"), _unknown("sequence", item.then.start, s.sequences)
        yield from promo((*base, "then", "promo"), item.then.promo)
    for seq_id, sequence in s.sequences.items():
        base = ("sequences", seq_id)
        for index, name in enumerate(sequence.stop_on):
            if name not in STAGES and name not in events:
                known = {*STAGES, *events}
                yield (*base, "stop_on", index), _unknown("stage or event", name, known)
        if sequence.start_on and sequence.start_on.event:  # noqa: SIM102 - reads better
            if sequence.start_on.event not in events:
                yield (
                    (*base, "start_on", "event"),
                    _unknown("event", sequence.start_on.event, events),
                )
        seen: dict[str, int] = {}
        for index, step in enumerate(sequence.steps):
            step_path = (*base, "steps", index)
            if step.id in seen:
                yield (
                    (*step_path, "id"),
                    f"duplicate step id {step.id!r} (also step {seen[step.id] + 1})",
                )
            seen.setdefault(step.id, index)
            if step.ask is not None and step.ask not in s.questions:
                yield (*step_path, "ask"), _unknown("question", step.ask, s.questions)
            yield from promo((*step_path, "promo"), step.promo)
            for b_index, button in enumerate(step.buttons):
                if button.offer:
                    yield from offer((*step_path, "buttons", b_index, "offer"), button.offer)
            if step.if_ is not None:
                yield from _rule_references(s, step.if_, (*step_path, "if"), events)
    for index, entry in enumerate(s.faq):
        for p_index, stems in enumerate(entry.phrase_stems):
            if not stems:
                yield ("faq", index, "match", p_index), "this phrase has no words to match"
        for b_index, button in enumerate(entry.buttons):
            if isinstance(button, OfferButton):
                yield from offer(("faq", index, "buttons", b_index, "offer"), button.offer)
    if s.referral is not None:
        yield from promo(("referral", "invitee_promo"), s.referral.invitee_promo)
        yield from promo(("referral", "reward_promo"), s.referral.reward_promo)
        reward = s.promos.get(s.referral.reward_promo or "")
        if reward is not None and reward.kind == "shared":
            yield (
                ("referral", "reward_promo"),
                "a reward is a personal code: a shared campaign code would thank nobody",
            )
    for promo_id, item in s.promos.items():
        trigger = item.issue_on
        if trigger is not None and trigger.event and trigger.event not in events:
            path = ("promos", promo_id, "issue_on", "event")
            yield path, _unknown("event", trigger.event, events)
    for name in s.scoring.events:
        if name not in events:  # points for an event that never happens are a typo
            yield (
                ("scoring", "events", name),
                _unknown("event", name, events)
                + " (events from outside the chat are declared under events:)",
            )
    if s.scoring.qualify is not None:
        yield from _rule_references(s, s.scoring.qualify, ("scoring", "qualify"), events)
    for b_id, broadcast in s.broadcasts.items():
        yield from _rule_references(s, broadcast.segment, ("broadcasts", b_id, "segment"), events)
        for b_index, button in enumerate(broadcast.buttons):
            if button.offer:
                yield from offer(("broadcasts", b_id, "buttons", b_index, "offer"), button.offer)


def _rule_references(s: Scenario, rule: Rule, path: Path_, events: set[str]) -> Iterator[Found]:
    if isinstance(rule, AnyRule | AllRule):
        items = rule.any if isinstance(rule, AnyRule) else rule.all
        key = "any" if isinstance(rule, AnyRule) else "all"
        for index, item in enumerate(items):
            yield from _rule_references(s, item, (*path, key, index), events)
    elif isinstance(rule, NotRule):
        yield from _rule_references(s, rule.not_, (*path, "not"), events)
    elif isinstance(rule, EventRule) and rule.event.name not in events:
        yield path, _unknown("event", rule.event.name, events)
    elif isinstance(rule, OfferRule) and rule.offer not in s.offers:
        yield (*path, "offer"), _unknown("offer", rule.offer, s.offers)
    elif isinstance(rule, AnswerRule):
        for question in rule.answer:
            if question not in s.questions:
                yield (*path, "answer", question), _unknown("question", question, s.questions)


def _unknown(kind: str, name: str, known: object) -> str:
    names = sorted(known)  # type: ignore[call-overload]
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"unknown {kind} {name!r}; did you mean {close[0]!r}?"
    listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"unknown {kind} {name!r}" + (f" (known: {listed})" if names else "")


def _texts(s: Scenario) -> Iterator[Found]:
    """Placeholders and lengths of every text a prospect can see."""
    allowed = set(SIMPLE_PLACEHOLDERS)
    for promo_id in s.promos:
        allowed |= {f"promo.{promo_id}", f"promo.{promo_id}.expires"}
    for path, text, limit in _visible_texts(s):
        own = MESSAGE_PLACEHOLDERS.get(str(path[1]), frozenset()) if path[0] == "messages" else ()
        for name in placeholders(text):
            if name in own:
                continue
            if name == "referral_link" and s.referral is None:
                yield path, "{referral_link} needs the referral programme: add referral:"
            elif name not in allowed:
                yield path, _unknown_placeholder(name, allowed | set(own), s)
            elif limit == BUTTON_LIMIT or path in SENT_AS_WRITTEN:
                # Labels are sent as written, and the apology must not depend on data.
                yield path, f"{{{name}}}: this text is sent as written, without placeholders"
        if len(text) > limit:
            what = "button text" if limit == BUTTON_LIMIT else "text"
            yield path, f"{what} is {len(text)} characters, over the limit of {limit}"


def _unknown_placeholder(name: str, allowed: set[str], s: Scenario) -> str:
    parts = name.split(".")
    if parts[0] == "promo" and len(parts) in (2, 3) and parts[-1] != "promo":
        if parts[1] not in s.promos:
            return f"unknown placeholder {{{name}}}: no promo {parts[1]!r} in promos:"
        return (
            f"unknown placeholder {{{name}}}: "
            f"use {{promo.{parts[1]}}} or {{promo.{parts[1]}.expires}}"
        )
    close = difflib.get_close_matches(name, sorted(allowed), n=1)
    if close:
        return f"unknown placeholder {{{name}}}; did you mean {{{close[0]}}}?"
    listed = ", ".join(f"{{{known}}}" for known in SIMPLE_PLACEHOLDERS)
    return f"unknown placeholder {{{name}}} (known: {listed}, {{promo.<id>}})"


def _menu_buttons(
    s: Scenario, buttons: list[MenuButton], base: Path_
) -> Iterator[tuple[Path_, str, int]]:
    for index, button in enumerate(buttons):
        if isinstance(button, LinkButton):
            yield (*base, index, "text"), button.text, BUTTON_LIMIT


def _visible_texts(s: Scenario) -> Iterator[tuple[Path_, str, int]]:
    yield ("start", "text"), s.start.text, TEXT_LIMIT
    yield from _menu_buttons(s, s.start.buttons, ("start", "buttons"))
    c = s.consent
    yield ("consent", "text"), c.text, TEXT_LIMIT
    for key in ("accept", "decline", "marketing_accept", "marketing_decline"):
        yield ("consent", key), getattr(c, key), BUTTON_LIMIT
    if c.marketing:
        yield ("consent", "marketing"), c.marketing, TEXT_LIMIT
    for offer_id, offer in s.offers.items():
        base: Path_ = ("offers", offer_id)
        yield (*base, "title"), offer.title, BUTTON_LIMIT  # the title is the offer's button
        if offer.pitch:
            yield (*base, "pitch"), offer.pitch, TEXT_LIMIT
        yield (*base, "deliver", "text"), offer.deliver.text, TEXT_LIMIT
    for q_id, question in s.questions.items():
        yield ("questions", q_id, "text"), question.text, TEXT_LIMIT
        if question.button:
            yield ("questions", q_id, "button"), question.button, BUTTON_LIMIT
        for index, option in enumerate(question.options):
            yield ("questions", q_id, "options", index, "text"), option.text, BUTTON_LIMIT
    for seq_id, sequence in s.sequences.items():
        for index, step in enumerate(sequence.steps):
            base = ("sequences", seq_id, "steps", index)
            if step.text:
                yield (*base, "text"), step.text, TEXT_LIMIT
            for name, variant in step.variants.items():
                yield (*base, "variants", name), variant, TEXT_LIMIT
    for b_id, broadcast in s.broadcasts.items():
        yield ("broadcasts", b_id, "text"), broadcast.text, TEXT_LIMIT
    for path, button in s.step_buttons():
        yield (*path, "text"), button.text, BUTTON_LIMIT
        if button.reply is not None:
            yield (*path, "reply"), button.reply, TEXT_LIMIT
    for index, entry in enumerate(s.faq):
        yield ("faq", index, "text"), entry.text, TEXT_LIMIT
        yield from _menu_buttons(s, entry.buttons, ("faq", index, "buttons"))
    for name in type(s.messages).model_fields:
        limit = BUTTON_LIMIT if name in ("menu", "skip", "delete_yes", "delete_no") else TEXT_LIMIT
        yield ("messages", name), getattr(s.messages, name), limit


def _files(s: Scenario, folder: Path) -> Iterator[Found]:
    root = folder.resolve()
    wanted: list[tuple[Path_, str]] = [
        (("offers", o_id, "deliver", "file"), o.deliver.file)
        for o_id, o in s.offers.items()
        if o.deliver.file
    ]
    for seq_id, sequence in s.sequences.items():
        wanted += [
            (("sequences", seq_id, "steps", i, "file"), step.file)
            for i, step in enumerate(sequence.steps)
            if step.file
        ]
    wanted += [
        (("broadcasts", b_id, "file"), broadcast.file)
        for b_id, broadcast in s.broadcasts.items()
        if broadcast.file
    ]
    for path, name in wanted:
        target = (folder / name).resolve()
        if not target.is_relative_to(root):
            yield path, f"file {name!r} is outside the scenario folder"
        elif not target.is_file():
            yield path, f"file {name!r} not found in {folder}"
