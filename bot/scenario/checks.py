"""Checks beyond the schema: references between sections, placeholders, message limits."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
from bot.scenario.model import LinkButton, MenuButton, OfferButton, Scenario, StepButton
from bot.scenario.source import Path_, format_path
from bot.scenario.wording import Say

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
    "slot_zone": frozenset({"zone"}),
    "slot_booked": frozenset({"when"}),
    "slot_moved": frozenset({"when"}),
    "slot_already": frozenset({"when"}),
    "slot_cancelled": frozenset({"when"}),
    "your_booking": frozenset({"what"}),
}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

Found = tuple[Path_, Say]
# Sections whose buttons record events: while one is unchecked, any event may be recorded.
_RECORDING = frozenset({"events", "sequences", "broadcasts"})


@dataclass(frozen=True)
class Unchecked:
    """What the checks do not see: entries and sections that failed the schema, and sections
    of files that are not YAML. A reference to them counts as known, so one mistake is
    reported once, where it is, not again wherever its id is named."""

    ids: Mapping[str, frozenset[str]] = field(default_factory=dict)  # section: ids
    sections: frozenset[str] = frozenset()  # any id of these may exist
    events: frozenset[str] = frozenset()  # events the unchecked parts seem to record

    @property
    def any_event(self) -> bool:
        return bool(self.sections & _RECORDING)


def placeholders(text: str) -> list[str]:
    """Names in `{...}`; `{{` and `}}` are literal braces."""
    return _PLACEHOLDER.findall(text.replace("{{", "").replace("}}", ""))


def check_scenario(
    scenario: Scenario, folder: Path, unchecked: Unchecked | None = None
) -> list[Found]:
    unchecked = unchecked or Unchecked()
    problems: list[Found] = []
    problems += _references(scenario, unchecked)
    problems += _same_labels(scenario)
    problems += _texts(scenario, unchecked)
    problems += _files(scenario, folder)
    return problems


def _same_labels(s: Scenario) -> Iterator[Found]:
    """Event buttons are told apart by event and label (`StepButton.action`): two alike that
    answer differently would both answer as the first."""
    first: dict[tuple[str, str], tuple[Path_, StepButton]] = {}
    for path, button in s.step_buttons():
        if button.event is None or button.url:
            continue
        seen = first.setdefault((button.event, button.text), (path, button))
        if seen[1] is not button and (seen[1].reply, seen[1].handoff) != (
            button.reply,
            button.handoff,
        ):
            yield (
                (*path, "text"),
                Say("button.same_label", event=button.event, other=format_path(seen[0])),
            )


class _Known:
    """The ids a reference may name: those that validated and those that failed the schema
    (both offered as "did you mean"), or any at all in a section the checks cannot see."""

    def __init__(self, s: Scenario, unchecked: Unchecked) -> None:
        self.unchecked = unchecked
        self.events = s.known_events() | unchecked.events
        written = {"offers": s.offers, "questions": s.questions, "sequences": s.sequences}
        self.ids = {
            section: {*ids, *unchecked.ids.get(section, ())}
            for section, ids in {**written, "promos": s.promos}.items()
        }

    def has(self, section: str, name: str) -> bool:
        return name in self.ids[section] or section in self.unchecked.sections

    def has_event(self, name: str) -> bool:
        return name in self.events or self.unchecked.any_event

    def unknown(self, key: str, section: str, name: str) -> Say:
        return _unknown(key, name, self.ids[section])


def _references(s: Scenario, unchecked: Unchecked) -> Iterator[Found]:
    known = _Known(s, unchecked)
    events = known.events

    def offer(path: Path_, offer_id: str) -> Iterator[Found]:
        if not known.has("offers", offer_id):
            yield path, known.unknown("ref.offer", "offers", offer_id)

    def promo(path: Path_, promo_id: str | None) -> Iterator[Found]:
        if promo_id is not None and not known.has("promos", promo_id):
            yield path, known.unknown("ref.promo", "promos", promo_id)

    for index, button in enumerate(s.start.buttons):
        if isinstance(button, OfferButton):
            yield from offer(("start", "buttons", index, "offer"), button.offer)
    for offer_id, item in s.offers.items():
        base: Path_ = ("offers", offer_id)
        for index, question in enumerate(item.ask):
            if not known.has("questions", question):
                yield (
                    (*base, "ask", index),
                    known.unknown("ref.question", "questions", question),
                )
        if len(set(item.ask)) != len(item.ask):
            yield (*base, "ask"), Say("check.asked_twice")
        start = item.then.start
        if start is not None and not known.has("sequences", start):
            yield (*base, "then", "start"), known.unknown("ref.sequence", "sequences", start)
        yield from promo((*base, "then", "promo"), item.then.promo)
    for q_id, question in s.questions.items():
        if question.calendar is not None and question.calendar not in s.slots:
            path = ("questions", q_id, "calendar")
            yield path, _unknown("ref.calendar", question.calendar, s.slots)
    for seq_id, sequence in s.sequences.items():
        base = ("sequences", seq_id)
        slot = sequence.start_on.slot if sequence.start_on else None
        if slot is not None and slot not in s.slots:
            yield (*base, "start_on", "slot"), _unknown("ref.calendar", slot, s.slots)
        for index, name in enumerate(sequence.stop_on):
            if name not in STAGES and not known.has_event(name):
                either = {*STAGES, *events}
                yield (*base, "stop_on", index), _unknown("ref.stage_or_event", name, either)
        if sequence.start_on and sequence.start_on.if_ is not None:
            path = (*base, "start_on", "if")
            yield from _rule_references(s, sequence.start_on.if_, path, known)
        trigger = sequence.start_on
        if trigger is not None and trigger.date is not None and trigger.event is None:
            asked = s.questions.get(trigger.date)
            if asked is None or asked.type != "date":
                dates = [q for q, question in s.questions.items() if question.type == "date"]
                yield (
                    (*base, "start_on", "date"),
                    _unknown("ref.date_question", trigger.date, dates),
                )
        if sequence.start_on and sequence.start_on.event:  # noqa: SIM102 - reads better
            if not known.has_event(sequence.start_on.event):
                yield (
                    (*base, "start_on", "event"),
                    _unknown("ref.event", sequence.start_on.event, events),
                )
        seen: dict[str, int] = {}
        for index, step in enumerate(sequence.steps):
            step_path = (*base, "steps", index)
            if step.id in seen:
                yield (
                    (*step_path, "id"),
                    Say("check.step_twice", id=step.id, number=seen[step.id] + 1),
                )
            seen.setdefault(step.id, index)
            if step.ask is not None and not known.has("questions", step.ask):
                yield (
                    (*step_path, "ask"),
                    known.unknown("ref.question", "questions", step.ask),
                )
            elif step.ask in s.questions and s.questions[step.ask].type == "slot":
                yield (*step_path, "ask"), Say("check.slot_in_step")
            yield from promo((*step_path, "promo"), step.promo)
            for b_index, button in enumerate(step.buttons):
                if button.offer:
                    yield from offer((*step_path, "buttons", b_index, "offer"), button.offer)
            if step.if_ is not None:
                yield from _rule_references(s, step.if_, (*step_path, "if"), known)
    for index, entry in enumerate(s.faq):
        for p_index, stems in enumerate(entry.phrase_stems):
            if not stems:
                yield ("faq", index, "match", p_index), Say("check.no_words")
        for b_index, button in enumerate(entry.buttons):
            if isinstance(button, OfferButton):
                yield from offer(("faq", index, "buttons", b_index, "offer"), button.offer)
    if s.referral is not None:
        yield from promo(("referral", "invitee_promo"), s.referral.invitee_promo)
        yield from promo(("referral", "reward_promo"), s.referral.reward_promo)
        reward = s.promos.get(s.referral.reward_promo or "")
        if reward is not None and reward.kind == "shared":
            yield ("referral", "reward_promo"), Say("check.shared_reward")
    for promo_id, item in s.promos.items():
        trigger = item.issue_on
        if trigger is not None and trigger.event and not known.has_event(trigger.event):
            path = ("promos", promo_id, "issue_on", "event")
            yield path, _unknown("ref.event", trigger.event, events)
        if trigger is not None and trigger.if_ is not None:
            path = ("promos", promo_id, "issue_on", "if")
            yield from _rule_references(s, trigger.if_, path, known)
    for name in s.scoring.events:
        if not known.has_event(name):  # points for an event that never happens are a typo
            yield (
                ("scoring", "events", name),
                _unknown("ref.scored_event", name, events),
            )
    if s.scoring.qualify is not None:
        yield from _rule_references(s, s.scoring.qualify, ("scoring", "qualify"), known)
    for b_id, broadcast in s.broadcasts.items():
        yield from _rule_references(s, broadcast.segment, ("broadcasts", b_id, "segment"), known)
        for b_index, button in enumerate(broadcast.buttons):
            if button.offer:
                yield from offer(("broadcasts", b_id, "buttons", b_index, "offer"), button.offer)


def _rule_references(s: Scenario, rule: Rule, path: Path_, known: _Known) -> Iterator[Found]:
    if isinstance(rule, AnyRule | AllRule):
        items = rule.any if isinstance(rule, AnyRule) else rule.all
        key = "any" if isinstance(rule, AnyRule) else "all"
        for index, item in enumerate(items):
            yield from _rule_references(s, item, (*path, key, index), known)
    elif isinstance(rule, NotRule):
        yield from _rule_references(s, rule.not_, (*path, "not"), known)
    elif isinstance(rule, EventRule) and not known.has_event(rule.event.name):
        yield path, _unknown("ref.event", rule.event.name, known.events)
    elif isinstance(rule, OfferRule) and not known.has("offers", rule.offer):
        yield (*path, "offer"), known.unknown("ref.offer", "offers", rule.offer)
    elif isinstance(rule, AnswerRule):
        for question in rule.answer:
            if not known.has("questions", question):
                yield (
                    (*path, "answer", question),
                    known.unknown("ref.question", "questions", question),
                )


def _unknown(key: str, name: str, known: Iterable[str]) -> Say:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return Say(key, name=name, more=Say("ref.did_you_mean", name=close[0]))
    listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return Say(key, name=name, more=Say("ref.known", names=listed) if names else "")


def _texts(s: Scenario, unchecked: Unchecked) -> Iterator[Found]:
    """Placeholders and lengths of every text a prospect can see."""
    allowed = set(SIMPLE_PLACEHOLDERS)
    for promo_id in [*s.promos, *unchecked.ids.get("promos", ())]:
        allowed |= {f"promo.{promo_id}", f"promo.{promo_id}.expires"}
    referral = s.referral is not None or "referral" in unchecked.sections
    for path, text, limit in _visible_texts(s):
        own = MESSAGE_PLACEHOLDERS.get(str(path[1]), frozenset()) if path[0] == "messages" else ()
        for name in placeholders(text):
            if name in own:
                continue
            if name == "referral_link" and not referral:
                yield path, Say("placeholder.needs_referral")
            elif name not in allowed and not _unchecked_promo(name, unchecked):
                yield path, _unknown_placeholder(name, allowed | set(own), s)
            elif limit == BUTTON_LIMIT or path in SENT_AS_WRITTEN:
                # Labels are sent as written, and the apology must not depend on data.
                yield path, Say("placeholder.as_written", name=name)
        if len(text) > limit:
            key = "length.button" if limit == BUTTON_LIMIT else "length.text"
            yield path, Say(key, length=len(text), limit=limit)


def _unchecked_promo(name: str, unchecked: Unchecked) -> bool:
    """`{promo.x}` while the promos are not all known: x may be one of them."""
    return name.startswith("promo.") and "promos" in unchecked.sections


def _unknown_placeholder(name: str, allowed: set[str], s: Scenario) -> Say:
    parts = name.split(".")
    if parts[0] == "promo" and len(parts) in (2, 3) and parts[-1] != "promo":
        if parts[1] not in s.promos:
            return Say("placeholder.no_promo", name=name, promo=parts[1])
        return Say("placeholder.promo_part", name=name, promo=parts[1])
    close = difflib.get_close_matches(name, sorted(allowed), n=1)
    if close:
        return Say("placeholder.did_you_mean", name=name, close=close[0])
    listed = ", ".join(f"{{{known}}}" for known in SIMPLE_PLACEHOLDERS)
    return Say("placeholder.unknown", name=name, names=listed)


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
            yield path, Say("file.outside", name=name)
        elif not target.is_file():
            yield path, Say("file.not_found", name=name, folder=folder)
