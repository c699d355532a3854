"""Promo and referral figures for `leadbot stats`: per promo, codes issued, redeemed (with
the amounts paid) and expired unused; per referrer, friends who came, counted and rewarded."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Event, Lead, PromoCode, PromoRedemption, Referral

# Referrers in the report: the leaders; the rest are summed in one line.
TOP_REFERRERS = 20


@dataclass
class PromoFigures:
    issued: int = 0  # personal codes issued; for a campaign code, leads it was shown to
    redeemed: int = 0
    amount: Decimal = Decimal(0)  # paid in redemptions that gave an amount
    expired: int = 0  # personal codes whose expiry fell in the period with uses left


@dataclass(frozen=True)
class ReferrerFigures:
    lead_id: int
    name: str | None
    friends: int  # came by the link (void ones not counted)
    void: int  # turned out to be somebody known
    qualified: int  # reached `reward_when`
    rewarded: int  # got a reward code


async def promo_figures(
    session: AsyncSession, *, since: datetime, until: datetime
) -> dict[str, PromoFigures]:
    """Per promo id, what happened in [since, until); expiry counts only up to `until`."""
    figures: dict[str, PromoFigures] = defaultdict(PromoFigures)
    in_period = and_(PromoCode.issued_at >= since, PromoCode.issued_at < until)
    issued = (
        select(PromoCode.promo, func.count())
        .where(PromoCode.lead_id.is_not(None), in_period)
        .group_by(PromoCode.promo)
    )
    for promo, count in await session.execute(issued):
        figures[promo].issued += count
    # A campaign code has no row per lead: the first time a lead was shown it is the issue.
    shown = select(Event.payload).where(
        Event.name == "promo_issued", Event.created_at >= since, Event.created_at < until
    )
    personal = {p for (p,) in await session.execute(select(PromoCode.promo).distinct())}
    for (payload,) in await session.execute(shown):
        promo = payload.get("promo")
        if promo and promo not in personal:
            figures[promo].issued += 1
    redeemed = select(PromoRedemption.promo, PromoRedemption.amount).where(
        PromoRedemption.redeemed_at >= since, PromoRedemption.redeemed_at < until
    )
    for promo, amount in await session.execute(redeemed):
        figures[promo].redeemed += 1
        if amount is not None:
            figures[promo].amount += Decimal(amount)
    expired = (
        select(PromoCode.promo, func.count())
        .where(
            PromoCode.lead_id.is_not(None),
            PromoCode.expires_at >= since,
            PromoCode.expires_at < until,
            or_(PromoCode.uses_left.is_(None), PromoCode.uses_left > 0),
        )
        .group_by(PromoCode.promo)
    )
    for promo, count in await session.execute(expired):
        figures[promo].expired += count
    return dict(sorted(figures.items()))


async def referrer_figures(
    session: AsyncSession, *, since: datetime, until: datetime
) -> list[ReferrerFigures]:
    """Referrers whose friends came in [since, until), most friends first."""
    query = (
        select(
            Referral.referrer_id,
            Lead.first_name,
            func.count(Referral.friend_id),
            func.count(Referral.void_at),
            func.count(Referral.qualified_at),
            func.count(Referral.reward_code),
        )
        .join(Lead, Lead.id == Referral.referrer_id)
        .where(Referral.joined_at >= since, Referral.joined_at < until)
        .group_by(Referral.referrer_id, Lead.first_name)
    )
    rows = [
        ReferrerFigures(lead_id, name, came - void, void, qualified, rewarded)
        for lead_id, name, came, void, qualified, rewarded in await session.execute(query)
    ]
    return sorted(rows, key=lambda r: (-r.friends, -r.qualified, r.lead_id))


def format_promos(figures: dict[str, PromoFigures]) -> list[str]:
    if not figures:
        return ["Promo codes: none issued or redeemed"]
    width = max(len("promo"), *(len(p) for p in figures))
    lines = [
        "Promo codes:",
        f"{'promo':<{width}}  {'issued':>6}  {'redeemed':>8}  {'expired':>7}  {'amount':>12}",
    ]
    for promo, f in figures.items():
        amount = f"{f.amount:,.2f}".replace(",", " ").removesuffix(".00")
        lines.append(
            f"{promo:<{width}}  {f.issued:>6}  {f.redeemed:>8}  {f.expired:>7}  {amount:>12}"
        )
    return lines


def format_referrers(rows: list[ReferrerFigures]) -> list[str]:
    if not rows:
        return ["Referrals: no friends came by a referral link"]
    lines = [
        "Referrals (friends who came by a referrer's link):",
        f"{'referrer':<24}  {'friends':>7}  {'counted':>7}  {'rewarded':>8}  {'void':>4}",
    ]
    for r in rows[:TOP_REFERRERS]:
        who = f"#{r.lead_id} {r.name or ''}".strip()[:24]
        lines.append(f"{who:<24}  {r.friends:>7}  {r.qualified:>7}  {r.rewarded:>8}  {r.void:>4}")
    rest = rows[TOP_REFERRERS:]
    if rest:
        lines.append(f"and {len(rest)} more referrers with {sum(r.friends for r in rest)} friends")
    return lines
