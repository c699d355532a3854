"""The scenario's `settings:` block: time zone, quiet hours, language, the advertising limit
and the RFM thresholds (the rest of the schema is in bot/scenario/model.py)."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

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


class RfmSettings(Strict):
    """Where the RFM segments of customers part (bot/analytics/rfm.py `segment_of` applies
    them; docs/scenario.md, "settings", words them). A customer is a lead with a purchase.
    The defaults suit a B2B service paid for monthly or per project: a month without a
    purchase is still usual, a quarter is a warning, half a year is gone."""

    recent: Duration = timedelta(days=30)  # bought at most this long ago: recent
    lapsing: Duration = timedelta(days=90)  # more than this since the last purchase: at risk
    lost: Duration = timedelta(days=180)  # more than this: lost
    frequent: int = Field(default=3, ge=1)  # this many purchases or more: a frequent buyer
    big: Decimal = Field(default=Decimal(0), ge=0)  # champions spent at least this (0: any)

    @model_validator(mode="after")
    def _in_order(self) -> RfmSettings:
        if not timedelta(0) < self.recent < self.lapsing < self.lost:
            raise WordedError("value.rfm_order")
        return self


class ScenarioSettings(Strict):
    timezone: Annotated[str, AfterValidator(_zone)] = "Europe/Moscow"
    quiet_hours: Annotated[tuple[time, time] | None, BeforeValidator(_quiet_hours)] = None
    language: str = "ru"
    ad_limit: AdLimit | None = None  # none: no limit
    rfm: RfmSettings = RfmSettings()
