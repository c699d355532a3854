"""The scenario's chains (`sequences:`): their steps, the buttons of steps and broadcasts,
and what starts a chain (`start_on`, also a promo's `issue_on` and a step's A/B goal)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, model_validator

from bot.scenario.conditions import Rule
from bot.scenario.fields import ClockTime, Duration, Id, StageName, Strict
from bot.scenario.wording import WordedError


def _handoff(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and 0 < len(value.strip()) <= HANDOFF_NOTE:
        return value.strip()
    raise WordedError("button.handoff_value", limit=HANDOFF_NOTE)


# `handoff: true` hands the lead over; a text does too, and tells the managers what is asked.
HANDOFF_NOTE = 200
HandoffRequest = Annotated[bool | str, PlainValidator(_handoff)]


class StepButton(Strict):
    text: str
    event: Id | None = None
    url: str | None = None
    offer: Id | None = None
    # A request of a person's time: the lead goes to the managers (a card if never handed
    # over, else a post about the request), and `reply` (or messages.handed_over) answers.
    handoff: HandoffRequest = False
    reply: str | None = None  # what the prospect hears on pressing (default messages.noted)

    @model_validator(mode="after")
    def _does_something(self) -> StepButton:
        if self.url and (self.handoff or self.reply is not None):
            raise WordedError("button.url_hears_nothing")
        if (self.handoff or self.reply is not None) and not (self.event or self.offer):
            raise WordedError("button.needs_event")
        if not (self.event or self.url or self.offer):
            raise WordedError("button.does_nothing")
        if self.offer and (self.event or self.url or self.handoff or self.reply):
            raise WordedError("button.offer_only")
        return self

    @property
    def action(self) -> str:
        """The callback of an event button: the event and a digest of the label, so buttons
        recording one event can answer differently (`Scenario.event_button` finds it)."""
        return f"e:{self.event}:{label_digest(self.text)}"


def label_digest(label: str) -> str:
    return hashlib.blake2s(label.encode(), digest_size=4).hexdigest()


class Step(Strict):
    id: Id
    after: Duration = timedelta(0)
    at: ClockTime | None = None
    text: str | None = None
    buttons: list[StepButton] = []
    file: str | None = None
    promo: Id | None = None
    ask: Id | None = None
    if_: Rule | None = Field(default=None, alias="if")
    # In a chain started by a booking (`start_on: {slot: ...}`): this long before the booked
    # time, instead of `after`; a step whose time passed before the booking is passed by.
    before: Duration | None = None
    variants: dict[Id, str] = {}
    # About the lead's own request (getting ready for a booked call, did it happen): no
    # advertising, so it needs no advertising consent, a chain started after /stop still
    # sends it, and it is outside settings.ad_limit. Quiet hours still apply.
    service: bool = False
    # The A/B test of the variants (bot/analytics/ab.py): the split, what counts as success
    # (default: a press or click of the step's own buttons), and `auto:` to let the bot pick
    # the winner once the data supports it at `confidence` with `min_sent` sends a variant.
    weights: dict[str, Annotated[int, Field(ge=1)]] = {}
    goal: StartOn | None = None
    auto: bool = False
    confidence: float = 0.95
    min_sent: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _says_something(self) -> Step:
        if not (self.text or self.ask or self.file):
            raise WordedError("step.says_nothing")
        if self.variants and not self.text:
            raise WordedError("step.variants_need_text")
        if "a" in self.variants:
            raise WordedError("step.variant_a")
        return self

    @model_validator(mode="after")
    def _fits_test(self) -> Step:
        names = self.variant_names
        if self.weights and not self.variants:
            raise WordedError("step.weights_no_variants")
        if self.weights and set(self.weights) != set(names):
            raise WordedError(
                "step.weights_keys", names=", ".join(names), given=", ".join(self.weights)
            )
        if self.auto and not self.variants:
            raise WordedError("step.auto_needs_variants")
        if not 0.8 <= self.confidence <= 0.999:
            raise WordedError("step.confidence", value=self.confidence)
        if self.goal is not None and self.goal.where:
            raise WordedError("step.goal_where")
        if self.goal is not None and self.goal.timed:
            raise WordedError("start_on.timed_here")
        return self

    @property
    def variant_names(self) -> list[str]:
        """ "a" (the step's own text) and the names of `variants`, in a fixed order."""
        return ["a", *sorted(self.variants)]


class StartOn(Strict):
    event: Id | None = None
    stage: StageName | None = None
    where: dict[str, str | int | float | bool] = {}
    # And only when this rule holds for the lead then (a purchase that is the second, say).
    if_: Rule | None = Field(default=None, alias="if")
    # Time triggers (bot/time_triggers.py): `before` a date the lead gave (the answer to a
    # `type: date` question) or one in `event`'s details (`date` names the detail), at `at`
    # in the lead's zone; or after `inactive` without a message or a press from the lead.
    date: Id | None = None
    # A booking in this `slots:` calendar starts the chain; moving it starts it over, and
    # cancelling it ends it. Steps count from the booked time with `before:`.
    slot: Id | None = None
    before: Duration = timedelta(0)
    at: ClockTime | None = None
    inactive: Duration | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> StartOn:
        # `event:` with `date:` names the event whose details carry the date.
        kinds = [self.event is not None and self.date is None, self.stage is not None]
        kinds += [self.date is not None, self.inactive is not None, self.slot is not None]
        if sum(kinds) != 1:
            raise WordedError("start_on.one")
        if self.where and self.event is None:
            raise WordedError("start_on.where")
        if self.date is None and ("before" in self.model_fields_set or self.at is not None):
            raise WordedError("start_on.before_needs_date")
        if self.at is not None and self.before % timedelta(days=1):
            hours = int(self.before.total_seconds() // 3600)
            raise WordedError("start_on.at_whole_days", before=f"{hours}h")
        if self.inactive is not None and self.inactive < timedelta(hours=1):
            raise WordedError("start_on.inactive_short")
        return self

    @property
    def timed(self) -> bool:
        """Started by the clock (a date or inactivity), not by what happens."""
        return self.date is not None or self.inactive is not None


class Sequence(Strict):
    after_from: Literal["previous", "start"] = "previous"
    stop_on: list[Id] = []
    start_on: StartOn | None = None
    steps: list[Step] = Field(min_length=1)
    # Run again on each new trigger once the last run is over (each purchase, each year);
    # a trigger while a run goes on starts nothing, unless `stop_on` ends that run first.
    repeat: bool = False
    max_runs: int | None = Field(default=None, ge=1)  # with `repeat`: runs in all
    min_gap: Duration | None = None  # with `repeat`: between the starts of two runs

    @model_validator(mode="after")
    def _repeats(self) -> Sequence:
        if not self.repeat and (self.max_runs is not None or self.min_gap is not None):
            raise WordedError("sequence.repeat_needed")
        booked = self.start_on is not None and self.start_on.slot is not None
        if not booked and any(step.before is not None for step in self.steps):
            raise WordedError("step.before_needs_slot")
        return self

    @property
    def repeats(self) -> bool:
        """Runs again on a new trigger: `repeat: true`, or each booking of a slot chain."""
        return self.repeat or (self.start_on is not None and self.start_on.slot is not None)
