"""Redeeming promo codes: `/redeem` in the managers' chat and `POST /api/promo/redeem`.

A code is found in any case and with or without its dashes. One use is taken by a single
conditional UPDATE, so a one-use code redeemed by many requests at once (from several
processes too) succeeds once. Unknown, expired and used-up codes get answers of their own;
a source (a manager, an API caller) with too many failures in a row is locked out for a
while, so codes cannot be found by trying. A redemption is recorded on the lead as
`promo_redeemed`, and with an amount also as a `purchase`, scored and reacted to like any
event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import promos
from bot.engine.funnel import Funnel
from bot.handoff import parse_amount
from bot.outside import LeadRef, apply_event, lead_named
from bot.scenario.model import Scenario
from storage.claims import key_lock
from storage.models import Lead, PromoCode, PromoRedemption
from storage.unit_of_work import UnitOfWork

Status = Literal["redeemed", "unknown", "expired", "used_up", "locked"]
MAX_CODE = 64
CODE_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # a code, or a part of one


@dataclass(frozen=True)
class Outcome:
    status: Status
    code: str  # the code as stored, or as typed when it is unknown
    promo: str | None = None
    discount: str | None = None
    lead_id: int | None = None
    uses_left: int | None = None  # after this redemption; None: no limit
    amount: Decimal | None = None
    last_day: str | None = None  # an expired code's last day, "07.12.2026"
    used_at: datetime | None = None  # a used-up code's last redemption
    retry_after: int = 0  # seconds, when locked out
    duplicate: bool = False  # a retried request (same key) answered again

    @property
    def ok(self) -> bool:
        return self.status == "redeemed"


MAX_FAILURES = 5  # the settings' defaults (REDEEM_MAX_FAILURES, REDEEM_LOCKOUT_MINUTES)
LOCKOUT = timedelta(minutes=15)


class Redemptions:
    def __init__(
        self, funnel: Funnel, *, max_failures: int = MAX_FAILURES, lockout: timedelta = LOCKOUT
    ) -> None:
        self.funnel = funnel
        self.max_failures = max_failures
        self.lockout = lockout

    async def redeem(
        self,
        text: str,
        *,
        source: str,
        by: str,
        amount: Decimal | None = None,
        lead: LeadRef | None = None,
        key: str | None = None,
    ) -> Outcome:
        """Redeem the code typed as `text`. `source` is who is trying (failures are counted
        per source), `by` who is recorded as redeeming, `lead` the buyer when the caller
        knows (a shared code has no owner), `key` the caller's id of the request. Raises
        `Refused` when `lead` names nobody."""
        reading = [(text, amount)]
        return await self.redeem_reading(reading, source=source, by=by, lead=lead, key=key)

    async def redeem_reading(
        self,
        readings: Sequence[tuple[str, Decimal | None]],
        *,
        source: str,
        by: str,
        lead: LeadRef | None = None,
        key: str | None = None,
    ) -> Outcome:
        """`redeem` for text that can be read more than one way ("START-7KQ4M 23456": one
        code, or a code and an amount): the first reading whose code exists is taken."""
        outcome = await self._redeem_reading(readings, source, by, lead, key)
        if self.funnel.metrics is not None:  # the engine's counters: one per process
            self.funnel.metrics.redeemed("repeated" if outcome.duplicate else outcome.status)
        return outcome

    async def _redeem_reading(
        self,
        readings: Sequence[tuple[str, Decimal | None]],
        source: str,
        by: str,
        lead: LeadRef | None,
        key: str | None,
    ) -> Outcome:
        try:
            return await self._attempt(readings, source[:128], by, lead, key)
        except IntegrityError:
            if not key:
                raise
            # The same request at the same moment: the one that committed first answers.
            async with self.funnel.db.unit_of_work() as uow:
                earlier = await _by_key(uow, key)
                if earlier is None:
                    raise
                return await _again(uow, self.funnel.scenarios.current.scenario, earlier)

    async def _attempt(
        self,
        readings: Sequence[tuple[str, Decimal | None]],
        source: str,
        by: str,
        lead: LeadRef | None,
        key: str | None,
    ) -> Outcome:
        s = self.funnel.scenarios.current.scenario
        now = self.funnel.clock.now()
        async with self.funnel.db.unit_of_work() as uow:
            # One attempt of a source at a time, so simultaneous guesses are all counted.
            await key_lock(uow.session, f"redeem:{source}")
            if key and (earlier := await _by_key(uow, key)) is not None:
                return await _again(uow, s, earlier)
            failures = await uow.promos.recent_failures(source, now - self.lockout)
            if len(failures) >= self.max_failures:
                free_at = failures[self.max_failures - 1] + self.lockout
                wait = math.ceil((free_at - now).total_seconds())
                typed = readings[0][0].strip()[:MAX_CODE]
                return Outcome("locked", typed, retry_after=max(wait, 1))
            outcome = await self._redeem(uow, s, readings, now, by, lead, key)
            if not outcome.ok:
                await uow.promos.add_failure(source, now, forget_before=now - self.lockout)
            await uow.commit()
        return outcome

    async def _redeem(
        self,
        uow: UnitOfWork,
        s: Scenario,
        readings: Sequence[tuple[str, Decimal | None]],
        now: datetime,
        by: str,
        ref: LeadRef | None,
        key: str | None,
    ) -> Outcome:
        row, amount = None, None
        for text, given in readings:
            row = await _find(uow, s, promos.lookup_form(text.strip())[:MAX_CODE], now)
            if row is not None:
                amount = given
                break
        if row is None:
            return Outcome("unknown", readings[0][0].strip()[:MAX_CODE])
        promo = s.promos.get(row.promo)
        zone = ZoneInfo(s.settings.timezone)
        expires_at = row.expires_at
        if promo is not None and promo.kind == "shared":
            expires_at = promos.expiry(promo, now, zone)  # the scenario's `until:` rules
        if promo is None or (expires_at is not None and expires_at <= now):
            last_day = promos.expires_text(
                PromoCode(code=row.code, expires_at=expires_at or now), zone
            )
            return Outcome("expired", row.code, row.promo, last_day=last_day)
        # The buyer's lock first, then the code's row: the order of the engine and worker.
        lead = await lead_named(uow, ref, self.funnel.phone_region) if ref else None
        if lead is None and row.lead_id is not None:
            lead = await uow.leads.get(row.lead_id, lock=True)
        if lead is not None and lead.erased_at is not None:
            lead = None
        if (
            promo.kind == "shared"
            and lead is not None
            and await uow.promos.redemptions_by(lead.id, row.promo) >= (promo.per_lead or 1)
        ):
            return Outcome("used_up", row.code, row.promo, promo.discount)
        if not await uow.promos.use_once(row.id, now):
            last = await uow.promos.last_redemption(row.id)
            return Outcome(
                "used_up",
                row.code,
                row.promo,
                promo.discount,
                used_at=last.redeemed_at if last else None,
            )
        uow.promos.add_redemption(
            PromoRedemption(
                code_id=row.id,
                promo=row.promo,
                lead_id=lead.id if lead else None,
                redeemed_at=now,
                amount=str(amount) if amount is not None else None,
                by=by[:128],
                request_key=key[:96] if key else None,
            )
        )
        if lead is not None:
            await self._record(uow, s, lead, row, amount, by, now)
        uses_left = None if row.uses_left is None else row.uses_left - 1
        return Outcome(
            "redeemed",
            row.code,
            row.promo,
            promo.discount,
            lead_id=lead.id if lead else None,
            uses_left=uses_left,
            amount=amount,
        )

    async def _record(
        self,
        uow: UnitOfWork,
        s: Scenario,
        lead: Lead,
        row: PromoCode,
        amount: Decimal | None,
        by: str,
        now: datetime,
    ) -> None:
        context: dict[str, Any] = {"now": now, "routes": self.funnel.routes}
        details: dict[str, Any] = {"promo": row.promo, "code": row.code, "by": by[:64]}
        if amount is not None:
            details["amount"] = float(amount)
        await apply_event(uow, s, lead, "promo_redeemed", details, **context)
        if amount is not None:
            purchase = {"amount": float(amount), "promo": row.promo, "via": "promo"}
            await apply_event(uow, s, lead, "purchase", purchase, **context)


async def _find(uow: UnitOfWork, s: Scenario, lookup: str, now: datetime) -> PromoCode | None:
    """The code's row; a campaign code gets its row at its first redemption."""
    if not lookup:
        return None
    row = await uow.promos.by_lookup(lookup)
    if row is not None:
        return row
    for promo_id, promo in s.promos.items():
        if promo.kind == "shared" and promo.code and promos.lookup_form(promo.code) == lookup:
            zone = ZoneInfo(s.settings.timezone)
            shared = promos.shared_row(promo_id, promo, promos.expiry(promo, now, zone), now)
            # Another process may insert it at the same moment: then its row is used.
            await uow.promos.insert_unique(shared)
            return await uow.promos.by_lookup(lookup)
    return None


async def _by_key(uow: UnitOfWork, key: str) -> PromoRedemption | None:
    query = select(PromoRedemption).where(PromoRedemption.request_key == key[:96])
    return (await uow.session.execute(query)).scalar_one_or_none()


async def _again(uow: UnitOfWork, s: Scenario, earlier: PromoRedemption) -> Outcome:
    row = await uow.session.get(PromoCode, earlier.code_id)
    assert row is not None
    promo = s.promos.get(earlier.promo)
    return Outcome(
        "redeemed",
        row.code,
        earlier.promo,
        promo.discount if promo else None,
        lead_id=earlier.lead_id,
        uses_left=row.uses_left,
        amount=Decimal(earlier.amount) if earlier.amount else None,
        duplicate=True,
    )


def parse_redeem(args: str) -> list[tuple[str, Decimal | None]] | None:
    """`/redeem CODE [AMOUNT]` as its possible readings, the whole text as a code first:
    a code typed in parts ("START-7KQ4M 9XRTB") and an amount typed with spaces
    ("45 000") cannot be told apart before the code is looked up. None when no reading
    works (no code, or words where the amount should be)."""
    words = args.split()[:8]
    readings: list[tuple[str, Decimal | None]] = []
    if words and all(CODE_WORD.fullmatch(word) for word in words):
        readings.append((" ".join(words), None))
    for split in range(len(words) - 1, 0, -1):
        amount = parse_amount(" ".join(words[split:]))
        if amount is not None and all(CODE_WORD.fullmatch(w) for w in words[:split]):
            readings.append((" ".join(words[:split]), amount))
    return readings or None


def managers_text(outcome: Outcome) -> str:
    """The answer to `/redeem` in the managers' chat."""
    code = outcome.code
    if outcome.status == "redeemed":
        lines = [f"✅ Код {code} погашен: {outcome.discount}."]
        if outcome.lead_id is not None:
            lines.append(f"Лид #{outcome.lead_id}.")
        if outcome.amount is not None:
            lines.append(f"Сумма {outcome.amount} записана как покупка.")
        if outcome.uses_left is not None and outcome.uses_left > 0:
            lines.append(f"Осталось использований: {outcome.uses_left}.")
        return " ".join(lines)
    if outcome.status == "expired":
        return f"⌛ Код {code} истёк: действовал до {outcome.last_day}."
    if outcome.status == "used_up":
        when = (
            f" ({outcome.used_at.strftime('%d.%m.%Y %H:%M')} UTC)"
            if outcome.used_at
            else " этим клиентом"
        )
        return f"🚫 Код {code} уже использован{when}."
    if outcome.status == "locked":
        minutes = max(1, math.ceil(outcome.retry_after / 60))
        return f"⛔ Слишком много неверных кодов подряд. Попробуйте через {minutes} мин."
    return f"❓ Код {code} не найден. Проверьте, нет ли опечатки."
