"""Promo codes: issuing them and the values of `{promo.<id>}` and `{promo.<id>.expires}`.

A personal promo gets a code of the lead's own, stored in `promo_codes`; issuing it again
while that code is live (not expired, uses left) gives the same code. A shared promo is the
campaign's one `code:` from the scenario; it is not stored per lead. Redemption (using up
`uses`, `per_lead`) is not here: it comes with the promo redemption release.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.scenario.checks import placeholders
from bot.scenario.model import Promo, Scenario
from storage.models import Lead, PromoCode
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# No look-alikes: no 0/O, 1/I/L; letters and digits a person reads out to a manager.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
# At least 48 bits, so that even a million codes of one prefix are very unlikely to
# collide (about n²/2^(bits+1): ~0.0006 for 10^6 codes); a collision is still retried.
MIN_BITS = 48
LENGTH = math.ceil(MIN_BITS / math.log2(len(ALPHABET)))  # 31 letters: 10 characters
BITS = LENGTH * math.log2(len(ALPHABET))  # ~49.5
GROUP = 5  # START-7KQ4M-9XRTB: groups of five are easy to read out and type
ATTEMPTS = 5  # new codes tried when one is taken
NO_EXPIRY = "без срока"

_SYSTEM_RANDOM = secrets.SystemRandom()


class PromoEnded(Exception):
    """The promo's `until:` day has passed: no code is given out any more."""

    def __init__(self, promo_id: str, until: date) -> None:
        super().__init__(f"promo {promo_id} ended on {until.isoformat()}")
        self.promo_id = promo_id
        self.until = until


def new_code(prefix: str | None, rng: random.Random = _SYSTEM_RANDOM) -> str:
    """`PREFIX-XXXXX-XXXXX`: LENGTH characters of ALPHABET drawn at once from `rng` (a
    cryptographic source unless a test passes a seeded one)."""
    number = rng.randrange(len(ALPHABET) ** LENGTH)
    chars = []
    for _ in range(LENGTH):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    body = "".join(chars)
    groups = "-".join(body[i : i + GROUP] for i in range(0, LENGTH, GROUP))
    return f"{prefix}-{groups}" if prefix else groups


def expiry(promo: Promo, now: datetime, zone: ZoneInfo) -> datetime | None:
    """When a code issued now stops working: `valid` after now, or the end of the `until`
    day in the scenario's time zone (midnight after it), or never."""
    if promo.valid is not None:
        return now + promo.valid
    if promo.until is not None:
        return _end_of_day(promo.until, zone)
    return None


def expires_text(code: PromoCode, zone: ZoneInfo) -> str:
    """The last day the code works, "31.12.2026"; "без срока" when it does not expire."""
    if code.expires_at is None:
        return NO_EXPIRY
    # expires_at is the first moment the code no longer works: show the day before it.
    last = (code.expires_at - timedelta(microseconds=1)).astimezone(zone)
    return last.strftime("%d.%m.%Y")


async def issue(
    uow: UnitOfWork, scenario: Scenario, lead: Lead, promo_id: str, now: datetime
) -> PromoCode:
    """The lead's code of this promo, issuing a new one when there is no live one.

    The caller holds the lead's lock (the engine and the worker do), so a lead never gets
    two codes of one promo at once. Raises `PromoEnded` when the promo's `until` has passed.
    """
    promo = scenario.promos[promo_id]
    zone = ZoneInfo(scenario.settings.timezone)
    expires_at = expiry(promo, now, zone)
    if promo.until is not None and expires_at is not None and expires_at <= now:
        raise PromoEnded(promo_id, promo.until)
    if promo.kind == "shared":
        assert promo.code is not None  # the schema requires it
        # Not stored: the scenario is the record of a campaign code.
        return PromoCode(
            promo=promo_id,
            code=promo.code,
            lead_id=None,
            issued_at=now,
            expires_at=expires_at,
            uses_left=None,
        )
    live = await uow.promos.live_code(lead.id, promo_id, now)
    if live is not None:
        return live
    for _ in range(ATTEMPTS):
        row = PromoCode(
            promo=promo_id,
            code=new_code(promo.prefix),
            lead_id=lead.id,
            issued_at=now,
            expires_at=expires_at,
            uses_left=promo.uses,
        )
        if await uow.promos.insert_unique(row):
            uow.events.add(
                lead.id, "promo_issued", now=now, payload={"promo": promo_id, "code": row.code}
            )
            return row
        log.warning("promo code %s was taken; trying another", row.code)
    raise RuntimeError(f"no free code for promo {promo_id} after {ATTEMPTS} attempts")


def mentioned(texts: Iterable[str | None]) -> list[str]:
    """Promo ids the texts use in `{promo.<id>}` or `{promo.<id>.expires}`, in order."""
    found: dict[str, None] = {}
    for text in texts:
        for name in placeholders(text or ""):
            parts = name.split(".")
            if parts[0] == "promo" and len(parts) in (2, 3):
                found.setdefault(parts[1], None)
    return list(found)


async def promo_values(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    texts: Iterable[str | None],
    now: datetime,
    *,
    also: Iterable[str | None] = (),
) -> dict[str, str]:
    """Issue exactly the promos the texts mention, plus those in `also` (a step's `promo:`,
    given out even when its text does not show it); their values for `render`.

    A promo id not in the scenario (an ad-hoc broadcast's typo) is left out, so rendering
    finds no value for it. Raises `PromoEnded` as `issue` does."""
    wanted = dict.fromkeys(mentioned(texts))
    wanted.update(dict.fromkeys(p for p in also if p))
    zone = ZoneInfo(scenario.settings.timezone)
    values: dict[str, str] = {}
    for promo_id in wanted:
        if promo_id not in scenario.promos:
            continue
        code = await issue(uow, scenario, lead, promo_id, now)
        values[f"promo.{promo_id}"] = code.code
        values[f"promo.{promo_id}.expires"] = expires_text(code, zone)
    return values


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
