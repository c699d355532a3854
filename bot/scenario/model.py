"""The scenario schema (format version 1): what marketers may write in `scenarios/*.yaml`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PrivateAttr,
    StringConstraints,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from bot.durations import parse_duration
from bot.scenario.chains import HANDOFF_NOTE as HANDOFF_NOTE
from bot.scenario.chains import HandoffRequest
from bot.scenario.chains import Sequence as Sequence
from bot.scenario.chains import StartOn as StartOn
from bot.scenario.chains import Step as Step
from bot.scenario.chains import StepButton as StepButton
from bot.scenario.chains import label_digest as label_digest
from bot.scenario.conditions import Rule
from bot.scenario.fields import (
    BUILTIN_EVENTS,
    FUNNEL_STAGES,
    ClockTime,
    Duration,
    Id,
    StageName,
    Strict,
    _zone,
)
from bot.scenario.settings import ScenarioSettings
from bot.scenario.slots import DAY_NUMBERS, SlotCalendar
from bot.scenario.texts import Messages
from bot.scenario.wording import WordedError
from bot.stems import WordStems


class OfferButton(Strict):
    """A button that opens a lead magnet; its label is the offer's title."""

    offer: Id

    @model_validator(mode="before")
    @classmethod
    def _no_label(cls, value: Any) -> Any:
        if isinstance(value, dict) and {"text", "url"} & set(value):
            raise WordedError("offer_button.label")
        return value


class LinkButton(Strict):
    text: str
    url: str


def _menu_button_kind(value: Any) -> str:
    has_offer = "offer" in value if isinstance(value, dict) else isinstance(value, OfferButton)
    return "OfferButton" if has_offer else "LinkButton"


# Told apart by the `offer:` key, so a mistake in one kind is not reported as the other kind.
MenuButton = Annotated[
    Annotated[OfferButton, Tag("OfferButton")] | Annotated[LinkButton, Tag("LinkButton")],
    Discriminator(_menu_button_kind),
]


class Start(Strict):
    text: str
    buttons: list[MenuButton] = Field(min_length=1)


class ConsentTexts(Strict):
    text: str
    policy_url: str
    accept: str = "Даю согласие"
    decline: str = "Не сейчас"
    marketing: str | None = None
    marketing_accept: str = "Да, присылайте"
    marketing_decline: str = "Нет, спасибо"


class Deliver(Strict):
    text: str
    file: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_file(self) -> Deliver:
        if self.file and self.url:
            raise WordedError("deliver.file_or_url")
        return self


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Then(Strict):
    score: int = 0
    tag: Annotated[list[Id], BeforeValidator(_one_or_many)] = []
    start: Id | None = None
    promo: Id | None = None  # a code issued with the magnet (shown by /promo and placeholders)
    handoff: HandoffRequest = False  # the magnet is a person's time: to the managers


class Offer(Strict):
    title: str
    pitch: str | None = None
    ask: list[Id] = []
    deliver: Deliver
    then: Then = Then()


QuestionType = Literal["name", "phone", "email", "text", "choice", "scale", "date", "slot"]


class ChoiceOption(Strict):
    text: str
    score: int = 0
    tag: Id | None = None
    # Choosing this option sets the lead's time zone (warm-ups then follow their clock).
    zone: Annotated[str, AfterValidator(_zone)] | None = None


class Question(Strict):
    type: QuestionType
    text: str
    button: str | None = None
    options: list[ChoiceOption] = []
    # A refusal (or the skip button) passes it by and the offer goes on; refusing a required
    # one (the phone for a callback) leaves the offer, with a word on why it is needed.
    optional: bool = False
    calendar: Id | None = None  # `slot`: the `slots:` calendar whose free times are offered

    @model_validator(mode="after")
    def _fits_type(self) -> Question:
        if (self.type == "slot") != (self.calendar is not None):
            raise WordedError("question.slot_calendar")
        if self.type == "choice" and not self.options:
            raise WordedError("question.needs_options")
        if self.type != "choice" and self.options:
            raise WordedError("question.options_only_choice", type=self.type)
        if self.button is not None and self.type != "phone":
            raise WordedError("question.button_only_phone")
        return self


def parse_local_moment(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise WordedError("value.moment_zone")
        return value
    try:
        return datetime.strptime(str(value).strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        raise WordedError("value.moment", value=value) from None


class Every(Strict):
    """How a broadcast repeats: every `days` days from `first` (a local date), at `at`."""

    days: int
    first: date
    at: time


A_MONDAY = date(2024, 1, 1)


def _every(value: Any) -> Any:
    """`every: 1w` (with `at:` the first time) or `every: {weekday: чт, at: "11:00"}`."""
    if value is None or isinstance(value, Every | str):
        return value  # a period: placed by Broadcast, which knows `at`
    if isinstance(value, dict) and set(value) == {"weekday", "at"}:
        day = DAY_NUMBERS.get(str(value["weekday"]).strip().lower())
        if day is None:
            raise WordedError("broadcast.weekday", value=value["weekday"])
        at = TypeAdapter(ClockTime).validate_python(value["at"])
        return Every(days=7, first=A_MONDAY + timedelta(days=day), at=at)
    raise WordedError("broadcast.every", value=value)


class Broadcast(Strict):
    """A message to a segment: once, by `leadbot broadcast --step <id>`, or by itself every
    `every` (bot/recurring.py), each occurrence once per lead."""

    segment: Rule
    text: str
    buttons: list[StepButton] = []
    file: str | None = None
    # Local wall time in each lead's own zone (moved out of quiet hours); none: at once.
    # With `every: 1w` (a period): the first occurrence.
    at: Annotated[datetime | None, BeforeValidator(parse_local_moment)] = None
    every: Annotated[Every | str | None, BeforeValidator(_every)] = None

    @model_validator(mode="after")
    def _placed(self) -> Broadcast:
        if not isinstance(self.every, str):
            return self
        try:
            period = parse_duration(self.every)
        except ValueError:
            raise WordedError("broadcast.every", value=self.every) from None
        if period < timedelta(days=1) or period % timedelta(days=1):
            raise WordedError("broadcast.every", value=self.every)
        if self.at is None:
            raise WordedError("broadcast.every_needs_at")
        every = Every(days=period.days, first=self.at.date(), at=self.at.time())
        object.__setattr__(self, "every", every)
        return self

    @property
    def schedule(self) -> Every | None:
        """How it repeats, once validated (`every` in its placed form)."""
        return self.every if isinstance(self.every, Every) else None


class FaqEntry(Strict):
    match: Annotated[list[str], BeforeValidator(_one_or_many)] = Field(min_length=1)
    text: str
    buttons: list[MenuButton] = []
    # `match` stemmed once, when the scenario loads, not on every message (bot/engine/faq.py).
    _phrase_stems: tuple[tuple[str, ...], ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        stems = WordStems()
        self._phrase_stems = tuple(stems(phrase) for phrase in self.match)

    @property
    def phrase_stems(self) -> tuple[tuple[str, ...], ...]:
        """Each phrase of `match` as the stems of its words; empty for a phrase of no words."""
        return self._phrase_stems


class Promo(Strict):
    kind: Literal["personal", "shared"]
    discount: str
    prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,12}$")] | None = None
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,32}$")] | None = None
    valid: Duration | None = None
    until: date | None = None
    # Personal: redemptions per code (default 1); `per_lead` caps the codes one lead gets
    # over time (default: a new one whenever none is live). Shared: redemptions of the
    # campaign code by everybody together (default: no limit); `per_lead` caps one lead's
    # (default 1).
    uses: int | None = Field(default=1, ge=1)
    per_lead: int | None = Field(default=None, ge=1)
    # Issued when this event or stage happens (besides offers, steps and placeholders).
    issue_on: StartOn | None = None
    # "Your code expires soon": the `promo_expiring` event this long before a personal
    # code expires, for a sequence with `start_on: {event: promo_expiring}` to remind.
    remind_before: Duration | None = None

    @model_validator(mode="after")
    def _fits_kind(self) -> Promo:
        if self.kind == "shared" and not self.code:
            raise WordedError("promo.shared_code")
        if self.kind == "personal" and self.code:
            raise WordedError("promo.personal_code")
        if self.valid and self.until:
            raise WordedError("promo.valid_or_until")
        if self.remind_before is not None and not (self.valid or self.until):
            raise WordedError("promo.remind_never")
        if self.issue_on is not None and self.issue_on.timed:
            raise WordedError("start_on.timed_here")
        if self.kind == "shared" and "uses" not in self.model_fields_set:
            object.__setattr__(self, "uses", None)  # a campaign code is for everybody
        if self.kind == "shared" and self.per_lead is None:
            object.__setattr__(self, "per_lead", 1)  # ... once each
        return self


class Referral(Strict):
    invitee_promo: Id | None = None
    reward_promo: Id | None = None
    reward_when: StageName = "qualified"
    max_rewards: int = Field(default=10, ge=0)

    @field_validator("reward_when")
    @classmethod
    def _a_funnel_stage(cls, value: str) -> str:
        if value not in FUNNEL_STAGES[1:]:
            raise WordedError("referral.stage", stages=", ".join(FUNNEL_STAGES[1:]))
        return value


class EventPoints(Strict):
    points: int
    max_times: int | None = Field(default=None, ge=1)


def _points(value: Any) -> Any:
    return {"points": value} if isinstance(value, int) and not isinstance(value, bool) else value


class Scoring(Strict):
    events: dict[Id, Annotated[EventPoints, BeforeValidator(_points)]] = {}
    tags: dict[Id, int] = {}
    qualify: Rule | None = None


class Handoff(Strict):
    remind_after: Duration = timedelta(minutes=30)
    escalate_after: Duration = timedelta(hours=2)
    pause_sequences: bool = True


class Scenario(Strict):
    version: Literal[1]
    settings: ScenarioSettings = ScenarioSettings()
    start: Start
    consent: ConsentTexts
    offers: dict[Id, Offer] = Field(min_length=1)
    questions: dict[Id, Question] = {}
    sequences: dict[Id, Sequence] = {}
    faq: list[FaqEntry] = []
    promos: dict[Id, Promo] = {}
    referral: Referral | None = None
    scoring: Scoring = Scoring()
    handoff: Handoff = Handoff()
    messages: Messages = Messages()
    events: dict[Id, str] = {}
    broadcasts: dict[Id, Broadcast] = {}
    slots: dict[Id, SlotCalendar] = {}

    def name_answer(self, answers: Mapping[str, str]) -> str | None:
        """The lead's answer to a `name` question, if any: what `{name}` shows."""
        return next(
            (
                v
                for q, v in answers.items()
                if q in self.questions and self.questions[q].type == "name"
            ),
            None,
        )

    def placeholder_values(self, first_name: str | None, name: str | None) -> dict[str, str]:
        """The placeholders every text may use; `{name}` falls back to the first name."""
        first = first_name or ""
        return {"first_name": first, "name": name or first, "policy_url": self.consent.policy_url}

    @cached_property  # read on every update: worked out once per loaded scenario
    def shortest_silence(self) -> timedelta | None:
        """The shortest `inactive:` of the chains: a lead back after it has `returned`."""
        spells = [
            seq.start_on.inactive
            for seq in self.sequences.values()
            if seq.start_on is not None and seq.start_on.inactive is not None
        ]
        return min(spells, default=None)

    def known_events(self) -> set[str]:
        """Built-in events, those declared under `events:` and those that buttons record."""
        named = set(BUILTIN_EVENTS) | set(self.events)
        return named | self.button_events()

    def step_buttons(self) -> Iterator[tuple[tuple[str | int, ...], StepButton]]:
        """Every button of sequence steps and broadcasts, with its path in the scenario."""
        for seq_id, seq in self.sequences.items():
            for index, step in enumerate(seq.steps):
                for b_index, button in enumerate(step.buttons):
                    yield ("sequences", seq_id, "steps", index, "buttons", b_index), button
        for b_id, broadcast in self.broadcasts.items():
            for b_index, button in enumerate(broadcast.buttons):
                yield ("broadcasts", b_id, "buttons", b_index), button

    def button_events(self) -> set[str]:
        """Events that buttons of sequence steps and broadcasts record when pressed."""
        return {b.event for _, b in self.step_buttons() if b.event}

    def event_button(self, event: str, digest: str) -> StepButton | None:
        """The pressed button recording `event`: the one with this label, or, when the label
        has changed since the message was sent, the event's handoff button if it has one
        (a request must not get lost to an edit), else its first button."""
        buttons = [b for _, b in self.step_buttons() if b.event == event and not b.url]
        exact = next((b for b in buttons if label_digest(b.text) == digest), None)
        return exact or next((b for b in buttons if b.handoff), None) or next(iter(buttons), None)
