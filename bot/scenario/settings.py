"""The scenario's `settings:` block: time zone, quiet hours, language and the advertising
limit (the rest of the schema is in bot/scenario/model.py)."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from bot.scenario.fields import Duration, Strict, _quiet_hours, _zone
from bot.scenario.wording import WordedError


class AdLimit(Strict):
    """At most `max` advertising messages (warm-up steps and broadcasts) to a lead in any
    `per`; one more waits until the oldest of them is `per` old."""

    max: int = Field(ge=1)
    per: Duration

    @field_validator("per")
    @classmethod
    def _some_time(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise WordedError("value.window")
        return value


class ScenarioSettings(Strict):
    timezone: Annotated[str, AfterValidator(_zone)] = "Europe/Moscow"
    quiet_hours: Annotated[tuple[time, time] | None, BeforeValidator(_quiet_hours)] = None
    language: str = "ru"
    ad_limit: AdLimit | None = None  # none: no limit
