"""Promo and referral figures on SQLite and PostgreSQL, and in `leadbot stats`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import promo_stats
from storage import migrate
from storage.database import Database
from storage.models import Lead, PromoCode, PromoRedemption, Referral
from tests.test_cli import leadbot

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 23, tzinfo=UTC)
DAY = timedelta(days=1)


async def fill(db: Database) -> None:
    """Three leads: Anna brought Boris (counted, rewarded) and Vera (void); codes of two
    personal promos, one of them redeemed twice with amounts, one expired unused, one issued
    before the period; the campaign code shown to two leads."""
    async with db.unit_of_work() as uow:
        anna, boris, vera = (
            Lead(created_at=SINCE, updated_at=SINCE, first_name=name)
            for name in ("Анна", "Борис", "Вера")
        )
        uow.session.add_all([anna, boris, vera])
        await uow.session.flush()

        def code(
            promo: str, lead: Lead, issued: datetime, expires: datetime, left: int
        ) -> PromoCode:
            text = f"{promo.upper()}-{lead.id}-{issued.day}"
            return PromoCode(
                promo=promo,
                code=text,
                lookup=text.replace("-", ""),
                lead_id=lead.id,
                issued_at=issued,
                expires_at=expires,
                uses_left=left,
            )

        used = code("first_purchase", anna, SINCE + DAY, SINCE + 14 * DAY, 0)
        used_too = code("first_purchase", boris, SINCE + 2 * DAY, UNTIL + 9 * DAY, 0)
        expired = code("first_purchase", vera, SINCE + 3 * DAY, SINCE + 17 * DAY, 1)
        before = code("first_purchase", vera, SINCE - 20 * DAY, SINCE - 6 * DAY, 1)
        reward = code("friend_reward", anna, SINCE + 5 * DAY, UNTIL + 80 * DAY, 1)
        uow.session.add_all([used, used_too, expired, before, reward])
        await uow.session.flush()
        uow.session.add_all(
            [
                PromoRedemption(
                    code_id=used.id,
                    promo="first_purchase",
                    lead_id=anna.id,
                    redeemed_at=SINCE + 4 * DAY,
                    amount="45000",
                    by="api",
                ),
                PromoRedemption(
                    code_id=used_too.id,
                    promo="first_purchase",
                    lead_id=boris.id,
                    redeemed_at=SINCE + 6 * DAY,
                    amount="30000.50",
                    by="telegram:1 Ирина",
                ),
                Referral(
                    friend_id=boris.id,
                    referrer_id=anna.id,
                    joined_at=SINCE + DAY,
                    qualified_at=SINCE + 5 * DAY,
                    reward_code=reward.code,
                ),
                Referral(
                    friend_id=vera.id,
                    referrer_id=anna.id,
                    joined_at=SINCE + 2 * DAY,
                    void_at=SINCE + 3 * DAY,
                    void_reason="self-referral: the referrer's phone",
                ),
            ]
        )
        for lead in (anna, boris):
            uow.events.add(
                lead.id,
                "promo_issued",
                now=SINCE + 7 * DAY,
                payload={"promo": "webinar", "code": "WEBINAR2026"},
            )
        await uow.commit()


async def test_promo_figures_count_issued_redeemed_and_expired_unused(db: Database) -> None:
    await fill(db)
    async with db.unit_of_work() as uow:
        figures = await promo_stats.promo_figures(uow.session, since=SINCE, until=UNTIL)

    assert list(figures) == ["first_purchase", "friend_reward", "webinar"]
    first = figures["first_purchase"]
    assert (first.issued, first.redeemed, first.expired) == (3, 2, 1)
    assert str(first.amount) == "75000.50"
    assert (figures["webinar"].issued, figures["webinar"].redeemed) == (2, 0)
    assert figures["friend_reward"].issued == 1
    assert promo_stats.format_promos(figures) == [
        "Promo codes:",
        "promo           issued  redeemed  expired        amount",
        "first_purchase       3         2        1     75 000.50",
        "friend_reward        1         0        0             0",
        "webinar              2         0        0             0",
    ]


async def test_referrer_figures_leave_void_friends_out_of_the_count(db: Database) -> None:
    await fill(db)
    async with db.unit_of_work() as uow:
        rows = await promo_stats.referrer_figures(uow.session, since=SINCE, until=UNTIL)
        later = await promo_stats.referrer_figures(uow.session, since=UNTIL, until=UNTIL + DAY)

    assert [(r.name, r.friends, r.void, r.qualified, r.rewarded) for r in rows] == [
        ("Анна", 1, 1, 1, 1)
    ]
    assert later == []
    assert promo_stats.format_referrers(later) == ["Referrals: no friends came by a referral link"]


def test_leadbot_stats_prints_promos_and_referrers(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/growth.db"

    async def prepare() -> None:
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
            await fill(db)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    result = leadbot(
        ["stats", "--since", "2026-11-01", "--until", "2026-11-22", "--db", url], tmp_path
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "first_purchase       3         2        1     75 000.50" in lines
    referrers = lines[lines.index("Referrals (friends who came by a referrer's link):") + 2 :]
    assert referrers == ["#1 Анна                         1        1         1     1"]


async def test_no_promos_no_referrals_say_so(db: Database) -> None:
    async with db.unit_of_work() as uow:
        figures = await promo_stats.promo_figures(uow.session, since=SINCE, until=UNTIL)
    assert promo_stats.format_promos(figures) == ["Promo codes: none issued or redeemed"]
