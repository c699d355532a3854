"""Funnel statistics on SQLite and PostgreSQL: the report, its table, /stats, `leadbot stats`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import stats
from bot.clock import FakeClock
from storage import migrate
from storage.database import Database
from storage.models import Lead
from tests.test_cli import leadbot

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 23, tzinfo=UTC)
TICK = timedelta(microseconds=1)

# (created_at, funnel_stage, stage, source, offer): ten leads in [SINCE, UNTIL), two just out.
COHORT = [
    (SINCE, "new", "new", "vkads", "guide"),
    (SINCE + timedelta(days=1), "new", "blocked", "vkads", "guide"),
    (SINCE + timedelta(days=2), "engaged", "engaged", "vkads", "guide"),
    (SINCE + timedelta(days=3), "engaged", "lost", "yandex", "audit"),
    (SINCE + timedelta(days=4), "contact", "contact", "vkads", "guide"),
    (SINCE + timedelta(days=5), "warming", "warming", "yandex", "guide"),
    (SINCE + timedelta(days=6), "qualified", "qualified", "vkads", "guide"),
    (SINCE + timedelta(days=7), "qualified", "unsubscribed", None, "guide"),
    (SINCE + timedelta(days=8), "handed_off", "handed_off", "yandex", "audit"),
    (UNTIL - TICK, "customer", "customer", "vkads", None),
    (SINCE - TICK, "qualified", "qualified", "vkads", "guide"),
    (UNTIL, "qualified", "qualified", "vkads", "guide"),
]


async def add_leads(
    db: Database, leads: list[tuple[datetime, str, str, str | None, str | None]]
) -> None:
    """Leads as the bot leaves them; the one that unsubscribed has also erased its data."""
    async with db.unit_of_work() as uow:
        for created_at, funnel_stage, stage, source, offer in leads:
            lead = Lead(
                created_at=created_at,
                updated_at=created_at,
                funnel_stage=funnel_stage,
                stage=stage,
                source=source,
                offer=offer,
            )
            uow.session.add(lead)
            await uow.session.flush()
            if stage == "unsubscribed":
                await uow.leads.erase_personal_data(lead.id, now=created_at)
        await uow.commit()


async def report(db: Database, by: stats.GroupBy | None = None) -> stats.FunnelReport:
    async with db.unit_of_work() as uow:
        return await stats.funnel_report(uow.session, since=SINCE, until=UNTIL, by=by)


async def test_the_funnel_counts_leads_of_the_period_by_the_furthest_stage_reached(
    db: Database,
) -> None:
    await add_leads(db, COHORT)
    overall = (await report(db)).overall
    assert overall.total == 10  # one a microsecond early and one at `until` are left out
    assert overall.reached == {
        "new": 10,
        "engaged": 8,
        "contact": 6,
        "warming": 5,
        "qualified": 4,  # the erased, unsubscribed lead still counts: it got there
        # The customer was never handed off (no claim, no handoff): it bought without a
        # manager, so it is not counted under handed_off (it was, before issue 17).
        "handed_off": 1,
        "customer": 1,
        "advocate": 0,
    }
    assert overall.side == {"lost": 1, "unsubscribed": 1, "blocked": 1}
    assert (overall.via_manager, overall.without_manager) == (0, 1)
    assert overall.manager_conversion() == 0  # of the one handed off, nobody bought
    assert [overall.conversion(s) for s in ("new", "engaged", "qualified", "advocate")] == [
        None,
        80,
        80,
        0,
    ]
    assert overall.conversion("warming") == pytest.approx(100 * 5 / 6)
    assert (overall.share("qualified"), overall.share("lost")) == (40, 10)


async def test_groups_are_ordered_by_size_and_leads_without_one_are_shown_as_none(
    db: Database,
) -> None:
    await add_leads(db, COHORT)
    by_source = await report(db, by="source")
    assert by_source.overall.reached == (await report(db)).overall.reached
    assert [(name, c.total) for name, c in by_source.groups.items()] == [
        ("vkads", 6),
        ("yandex", 3),
        ("(none)", 1),
    ]
    vkads, yandex, unknown = by_source.groups.values()
    assert [
        vkads.reached[s] for s in ("engaged", "contact", "qualified", "handed_off", "customer")
    ] == [4, 3, 2, 0, 1]
    assert (vkads.side["blocked"], yandex.side["lost"], unknown.side["unsubscribed"]) == (1, 1, 1)
    assert yandex.conversion("handed_off") == 100

    by_offer = await report(db, by="offer")
    assert {name: c.total for name, c in by_offer.groups.items()} == {
        "guide": 7,
        "audit": 2,
        "(none)": 1,
    }
    assert by_offer.groups["audit"].reached["handed_off"] == 1


async def test_an_empty_period_has_no_percentages(db: Database) -> None:
    empty = (await report(db, by="source")).overall
    assert (empty.total, empty.conversion("engaged"), empty.share("new")) == (0, None, None)


async def test_the_table_shows_counts_conversions_and_shares(db: Database) -> None:
    await add_leads(db, COHORT)
    text = stats.format_report(await report(db, by="source"))
    assert text.splitlines()[:17] == [
        "Leads created 2026-11-01 00:00 .. 2026-11-23 00:00 UTC: 10",
        "",
        "stage          leads  from previous  of all",
        "new               10              -    100%",
        "engaged            8            80%     80%",
        "contact            6            75%     60%",
        "warming            5          83.3%     50%",
        "qualified          4            80%     40%",
        "handed_off         1            25%     10%",
        "customer           1            25%     10%",
        "  by manager       0             0%      0%",
        "  no manager       1              -     10%",
        "advocate           0             0%      0%",
        "where the rest are now:",
        "lost               1                    10%",
        "unsubscribed       1                    10%",
        "blocked            1                    10%",
    ]
    groups = [line for line in text.splitlines() if line.startswith("source ")]
    assert groups == ["source vkads: 6 leads", "source yandex: 3 leads", "source (none): 1 lead"]
    assert "  qualified          2           100%   33.3%" in text  # vkads: 2 of 2, of 6


async def test_managers_summary_shows_today_the_week_and_the_month_side_by_side(
    db: Database, clock: FakeClock
) -> None:
    now = clock.now()  # 2026-11-23 09:00 UTC
    await add_leads(
        db,
        [
            (datetime(2026, 11, 23, 1, tzinfo=UTC), "qualified", "qualified", "vkads", None),
            (datetime(2026, 11, 22, 23, tzinfo=UTC), "engaged", "engaged", "vkads", None),
            (now - timedelta(days=10), "contact", "lost", "yandex", None),
            (now - timedelta(days=25), "handed_off", "handed_off", None, None),
            (now - timedelta(days=31), "customer", "customer", "vkads", None),
        ],
    )
    async with db.unit_of_work() as uow:
        summary = await stats.managers_summary(uow.session, now=now)
    assert summary == "\n".join(
        [
            "Воронка: сегодня / 7 дней / 30 дней (лиды по дате прихода, UTC)",
            "new: 1 / 2 / 4",
            "engaged: 1 / 2 / 4",
            "contact: 1 / 1 / 3",
            "warming: 1 / 1 / 2",
            "qualified: 1 / 1 / 2",
            "handed_off: 0 / 0 / 1",
            "customer: 0 / 0 / 0",
            "  из них без менеджера: 0 / 0 / 0",
            "advocate: 0 / 0 / 0",
            "Сейчас вне воронки:",
            "lost: 0 / 0 / 1",
            "unsubscribed: 0 / 0 / 0",
            "blocked: 0 / 0 / 0",
            "",
            "Источники за 30 дней (лидов, из них дошли до qualified):",
            "vkads: 2, qualified 1",
            "без источника: 1, qualified 1",
            "yandex: 1, qualified 0",
        ]
    )


async def test_managers_summary_fits_one_telegram_message_however_many_sources(
    db: Database, clock: FakeClock
) -> None:
    now = clock.now()
    await add_leads(
        db, [(now - TICK, "new", "new", f"{n:02}" + "x" * 62, None) for n in range(30)]
    )
    async with db.unit_of_work() as uow:
        summary = await stats.managers_summary(uow.session, now=now)
    assert len(summary) <= 4096
    lines = summary.splitlines()
    assert lines[-11].startswith("00xxx")
    assert lines[-2].startswith("09xxx")
    assert lines[-1] == "и ещё источников: 20"


def filled_sqlite_file(
    path: Path, leads: list[tuple[datetime, str, str, str | None, str | None]]
) -> str:
    """A migrated SQLite file holding `leads`, as `leadbot stats --db` would find it."""
    url = f"sqlite+aiosqlite:///{path}"

    async def fill() -> None:
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
            await add_leads(db, leads)
        finally:
            await db.dispose()

    asyncio.run(fill())
    return url


def test_leadbot_stats_prints_the_table_for_the_days_given(tmp_path: Path) -> None:
    url = filled_sqlite_file(tmp_path / "leads.db", COHORT)
    result = leadbot(
        ["stats", "--since", "2026-11-01", "--until", "2026-11-22", "--by", "offer", "--db", url],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # --until is the last day included: the lead of 2026-11-22 23:59:59.999999 counts.
    assert lines[0] == "Leads created 2026-11-01 00:00 .. 2026-11-23 00:00 UTC: 10"
    assert "warming            5          83.3%     50%" in lines
    assert [line for line in lines if line.startswith("offer ")] == [
        "offer guide: 7 leads",
        "offer audit: 2 leads",
        "offer (none): 1 lead",
    ]


def test_leadbot_stats_covers_the_last_30_days_by_default(tmp_path: Path) -> None:
    now = datetime.now(UTC)  # the command reads the system clock
    url = filled_sqlite_file(
        tmp_path / "leads.db",
        [
            (now - timedelta(days=1), "engaged", "engaged", "vkads", "guide"),
            (now - timedelta(days=29), "new", "lost", "vkads", "guide"),
            (now - timedelta(days=31), "engaged", "engaged", "vkads", "guide"),
        ],
    )
    month = leadbot(["stats", "--db", url], tmp_path)
    assert month.returncode == 0, month.stderr
    assert month.stdout.splitlines()[0].endswith(" UTC: 2")
    assert "engaged            1            50%     50%" in month.stdout
    assert "source " not in month.stdout  # no breakdown unless asked
    week = leadbot(["stats", "--period", "1w", "--db", url], tmp_path)
    assert week.stdout.splitlines()[0].endswith(" UTC: 1")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--period", "month"], "leadbot: --period 'month': нужно целое число и единица"),
        (["--until", "2026-11-22"], "leadbot: --until нужен вместе с --since"),
        (["--since", "1.11.2026"], "leadbot: --since '1.11.2026': нужна дата ГГГГ-ММ-ДД"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "leadbot: --until раньше --since"),
    ],
)
def test_a_wrong_period_says_what_is_wrong(tmp_path: Path, args: list[str], error: str) -> None:
    result = leadbot(["stats", *args, "--db", f"sqlite+aiosqlite:///{tmp_path}/s.db"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(error)
