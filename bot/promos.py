"""Promo codes: issuing them, the values of `{promo.<id>}` and `{promo.<id>.expires}`, the
lead's live codes (/promo), and the "expires soon" event.

A personal promo gets a code of the lead's own, stored in `promo_codes`; issuing it again
while that code is live (not expired, uses left) gives the same code, and `per_lead` caps how
many codes a lead gets over time. A shared promo is the campaign's one `code:` from the
scenario; its row appears at the first redemption (`bot.redemption`), which counts its uses.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.rule_facts import times
from bot.scenario.checks import placeholders
from bot.scenario.model import Promo, Scenario
from bot.sequences import fired, holds
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


class NoCode(Exception):
    """No code of this promo can be given to this lead now."""


class PromoEnded(NoCode):
    """The promo's `until:` day has passed: no code is given out any more."""

    def __init__(self, promo_id: str, until: date) -> None:
        super().__init__(f"promo {promo_id} ended on {until.isoformat()}")
        self.promo_id = promo_id
        self.until = until


class PerLeadLimit(NoCode):
    """The lead has had `per_lead` codes of this promo and none of them is live."""

    def __init__(self, promo_id: str, per_lead: int) -> None:
        super().__init__(f"promo {promo_id}: the lead had its {per_lead} code(s)")
        self.promo_id = promo_id


def lookup_form(code: str) -> str:
    """How a code is looked up: upper case, without dashes, underscores and spaces."""
    return "".join(ch for ch in code.upper() if ch not in "-_ \t")


def new_code(prefix: str | None, rng: random.Random = _SYSTEM_RANDOM) -> str:
    """`PREFIX-XXXXX-XXXXX`: LENGTH characters of ALPHABET drawn at once from `rng` (a
    cryptographic source unless a test passes a seeded one)."""
    body = random_chars(LENGTH, rng)
    groups = "-".join(body[i : i + GROUP] for i in range(0, LENGTH, GROUP))
    return f"{prefix}-{groups}" if prefix else groups


def random_chars(length: int, rng: random.Random = _SYSTEM_RANDOM) -> str:
    """`length` characters of ALPHABET from one draw of `rng`."""
    number = rng.randrange(len(ALPHABET) ** length)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


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
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    promo_id: str,
    now: datetime,
    *,
    fresh: bool = False,
) -> PromoCode:
    """The lead's code of this promo, issuing a new one when there is no live one (or
    always, with `fresh`: a referral reward is a code per friend, whatever `per_lead` says).

    The caller holds the lead's lock (the engine and the worker do), so a lead never gets
    two codes of one promo at once. Raises `PromoEnded` when the promo's `until` has passed,
    `PerLeadLimit` when the lead had all the codes it may have.
    """
    promo = scenario.promos[promo_id]
    zone = ZoneInfo(scenario.settings.timezone)
    expires_at = expiry(promo, now, zone)
    if promo.until is not None and expires_at is not None and expires_at <= now:
        raise PromoEnded(promo_id, promo.until)
    if promo.kind == "shared":
        assert promo.code is not None  # the schema requires it
        issued = await times(uow, lead, "promo_issued") and await uow.events.count(
            lead.id, "promo_issued", promo=promo_id
        )
        if not issued:
            # Recorded once per lead, so /promo can list the campaign code it was shown.
            uow.events.add(
                lead.id, "promo_issued", now=now, payload={"promo": promo_id, "code": promo.code}
            )
        # Not stored here: the scenario is the record of a campaign code.
        return shared_row(promo_id, promo, expires_at, now)
    if not fresh:
        live = await uow.promos.live_code(lead.id, promo_id, now)
        if live is not None:
            return live
        limit = promo.per_lead
        if limit is not None and await uow.promos.count_for_lead(lead.id, promo_id) >= limit:
            raise PerLeadLimit(promo_id, limit)
    for _ in range(ATTEMPTS):
        code = new_code(promo.prefix)
        row = PromoCode(
            promo=promo_id,
            code=code,
            lookup=lookup_form(code),
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


def shared_row(
    promo_id: str, promo: Promo, expires_at: datetime | None, now: datetime
) -> PromoCode:
    """The row of a campaign code, as it is stored at its first redemption."""
    assert promo.code is not None
    return PromoCode(
        promo=promo_id,
        code=promo.code,
        lookup=lookup_form(promo.code),
        lead_id=None,
        issued_at=now,
        expires_at=expires_at,
        uses_left=promo.uses,
    )


async def issue_triggered(
    uow: UnitOfWork,
    scenario: Scenario,
    lead: Lead,
    now: datetime,
    events: list[tuple[str, dict[str, Any]]],
    reached: set[str],
) -> list[str]:
    """Issue the promos whose `issue_on` these events or newly reached stages match; the
    codes wait in /promo and in the placeholders. Returns the promo ids issued."""
    issued = []
    for promo_id, promo in scenario.promos.items():
        trigger = promo.issue_on
        if trigger is None or promo.kind == "shared" or not fired(trigger, events, reached):
            continue
        if not await holds(uow, scenario, lead, trigger, now):
            continue
        try:
            await issue(uow, scenario, lead, promo_id, now)
        except NoCode as no_code:
            log.info("lead %s gets no %s code: %s", lead.id, promo_id, no_code)
            continue
        issued.append(promo_id)
    return issued


@dataclass(frozen=True)
class LiveCode:
    code: str
    promo: str
    discount: str
    until: str  # "до 31.12.2026" or "без срока"


async def live_codes(
    uow: UnitOfWork, scenario: Scenario, lead: Lead, now: datetime
) -> list[LiveCode]:
    """The codes the lead can still use: personal ones not expired or used up, and the
    campaign codes it was shown while the campaign runs. Promos gone from the scenario are
    left out."""
    zone = ZoneInfo(scenario.settings.timezone)
    found: list[LiveCode] = []
    for row in await uow.promos.for_lead(lead.id):
        promo = scenario.promos.get(row.promo)
        if promo is None or not _live(row, now):
            continue
        found.append(LiveCode(row.code, row.promo, promo.discount, until_text(row, zone)))
    for promo_id in sorted(await uow.events.detail_values(lead.id, "promo_issued", "promo")):
        promo = scenario.promos.get(promo_id)
        if promo is None or promo.kind != "shared":
            continue
        row = shared_row(promo_id, promo, expiry(promo, now, zone), now)
        used = await uow.promos.redemptions_by(lead.id, promo_id)
        if _live(row, now) and used < (promo.per_lead or 1):
            found.append(LiveCode(row.code, promo_id, promo.discount, until_text(row, zone)))
    return found


def code_values(scenario: Scenario, code: PromoCode) -> dict[str, str]:
    """`{code}`, `{discount}` and `{until}` of the system texts that show one code."""
    zone = ZoneInfo(scenario.settings.timezone)
    discount = scenario.promos[code.promo].discount
    return {"code": code.code, "discount": discount, "until": until_text(code, zone)}


def until_text(code: PromoCode, zone: ZoneInfo) -> str:
    """ "до 31.12.2026", or "без срока" for a code that does not expire."""
    text = expires_text(code, zone)
    return text if code.expires_at is None else f"до {text}"


def _live(row: PromoCode, now: datetime) -> bool:
    fresh = row.expires_at is None or row.expires_at > now
    return fresh and (row.uses_left is None or row.uses_left > 0)


async def remind_expiring(
    uow: UnitOfWork, scenario: Scenario, now: datetime, *, limit: int = 200
) -> list[tuple[Lead, dict[str, Any]]]:
    """Mark personal codes entering their promo's `remind_before` window and record the
    `promo_expiring` event for each; the leads (locked) and the events' details, for the
    caller to react to. Each code is reminded of once, whichever process gets it first."""
    zone = ZoneInfo(scenario.settings.timezone)
    found: list[tuple[Lead, dict[str, Any]]] = []
    due: list[PromoCode] = []
    for promo_id, promo in scenario.promos.items():
        if promo.remind_before is not None and promo.kind == "personal":
            due += await uow.promos.expiring(promo_id, now, promo.remind_before, limit=limit)
    # Leads are locked in id order, the delivery worker's order, so the two never deadlock.
    for row in sorted(due, key=lambda r: (r.lead_id or 0, r.id)):
        assert row.lead_id is not None
        lead = await uow.leads.get(row.lead_id, lock=True)
        if not await uow.promos.mark_reminded(row.id, now):
            continue  # another process took it
        if lead is None or lead.erased_at is not None:
            continue
        details = {"promo": row.promo, "code": row.code, "expires": expires_text(row, zone)}
        uow.events.add(lead.id, "promo_expiring", now=now, payload=details)
        found.append((lead, details))
    return found


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
    finds no value for it. Raises `NoCode` as `issue` does."""
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
