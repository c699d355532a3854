"""The building blocks of the scenario schema: stage names, the events the bot records by
itself, ids, durations, clock times and time zones."""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
)

from bot.durations import parse_duration
from bot.scenario.wording import WordedError

FUNNEL_STAGES = (
    "new",
    "engaged",
    "contact",
    "warming",
    "qualified",
    "handed_off",
    "customer",
    "advocate",
)
SIDE_STAGES = ("lost", "unsubscribed", "blocked")
STAGES = FUNNEL_STAGES + SIDE_STAGES
StageName = Literal[
    "new",
    "engaged",
    "contact",
    "warming",
    "qualified",
    "handed_off",
    "customer",
    "advocate",
    "lost",
    "unsubscribed",
    "blocked",
]

# Events the bot records by itself; scenarios may use them without declaring them.
BUILTIN_EVENTS = frozenset(
    {
        "start",
        "offer_taken",
        "consent_given",
        "consent_declined",
        "marketing_consent_given",
        "marketing_consent_declined",
        "contact_shared",
        "answered",
        "question_skipped",
        "question_refused",
        "magnet_delivered",
        "sequence_started",
        "qualified",
        "claimed",
        "not_fit",
        "lost",
        "purchase",
        "link_clicked",
        "unsubscribed",
        "unmatched_text",
        "faq_answered",
        "blocked",
        "erased",
        "step_sent",
        "broadcast_sent",
        "promo_issued",
        "promo_expiring",
        "promo_redeemed",
        "referral_joined",
        "referral_void",
        "referral_rewarded",
        "returned",
        "slot_booked",
        "slot_cancelled",
        "slot_unavailable",
    }
)


# Ids travel inside deep links and button data (64 bytes in Telegram), so they stay short.
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,32}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return parse_duration(value)
    raise WordedError("value.duration", value=value)


def _clock_time(value: Any) -> Any:
    if isinstance(value, time):
        return value
    # YAML 1.1 reads an unquoted 11:00 as the sexagesimal number 660.
    if isinstance(value, int):
        raise WordedError("value.time_quotes")
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(value).strip())
    if not match:
        raise WordedError("value.time", value=value)
    return time(int(match[1]), int(match[2]))


Duration = Annotated[timedelta, BeforeValidator(_duration)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise WordedError("value.zone", value=value) from None
    return value


def _quiet_hours(value: Any) -> Any:
    if isinstance(value, tuple):
        return value
    parts = str(value).split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        return (_clock_time(parts[0]), _clock_time(parts[1]))
    except ValueError:
        raise WordedError("value.quiet_hours", value=value) from None
