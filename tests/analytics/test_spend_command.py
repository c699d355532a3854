"""`leadbot spend add|list` as a marketer runs it (through `bot.cli.main`, on a SQLite file of
its own): rows stored as typed, listed with their total, bad input refused in one line."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot.analytics.tables import shown
from storage import migrate
from storage.database import Database
from storage.models import AdSpend, Lead
from tests.in_process import Leadbot, command_runner


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite file with one lead from `vk`."""
    address = f"sqlite+aiosqlite:///{tmp_path}/leads.db"

    async def make() -> None:
        db = Database(address)
        try:
            await migrate.upgrade(db.engine)
            async with db.unit_of_work() as uow:
                moment = datetime(2026, 11, 1, tzinfo=UTC)
                await uow.session.execute(
                    insert(Lead), [{"created_at": moment, "updated_at": moment, "source": "vk"}]
                )
                await uow.commit()
        finally:
            await db.dispose()

    asyncio.run(make())
    return address


@pytest.fixture
def leadbot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Leadbot:
    """`leadbot spend ARGS` in this process, from a folder with no .env."""
    return command_runner("spend", tmp_path, monkeypatch, capsys)


def stored(url: str) -> list[tuple[str, date, date, str, str | None]]:
    async def read() -> list[tuple[str, date, date, str, str | None]]:
        db = Database(url)
        try:
            async with db.unit_of_work() as uow:
                query = select(
                    AdSpend.source,
                    AdSpend.first_day,
                    AdSpend.last_day,
                    AdSpend.amount,
                    AdSpend.note,
                ).order_by(AdSpend.id)
                return [tuple(row) for row in (await uow.session.execute(query)).all()]  # type: ignore[misc]
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_a_month_and_a_day_are_stored_and_listed_with_their_total(
    leadbot: Leadbot, url: str
) -> None:
    month = leadbot(
        "add", "--source", "vk", "--amount", "31000", "--month", "2026-12", "--db", url
    )
    assert month.code == 0, month.err
    assert "Записан расход № 1: vk, 31 000 за 2026-12-01 — 2026-12-31 (31 дн.)" in month.out
    assert "Лидов с источником" not in month.out  # vk has a lead
    day = leadbot(
        "add",
        "--source",
        "ya",
        "--amount",
        "1 500,50",
        "--date",
        "2026-12-05",
        "--note",
        "Директ, счёт 17",
        "--db",
        url,
    )
    assert day.code == 0, day.err
    assert "Лидов с источником 'ya' пока нет" in day.out  # a typo would show here
    assert stored(url) == [
        ("vk", date(2026, 12, 1), date(2026, 12, 31), "31000", None),
        ("ya", date(2026, 12, 5), date(2026, 12, 5), "1500.50", "Директ, счёт 17"),
    ]
    listed = leadbot("list", "--db", url)
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0] == "Расходы на рекламу"
    total = Decimal(31000) + Decimal("1500.50")
    assert lines[-2].split()[0] == "Итого"
    assert lines[-2].rstrip().endswith(shown(total))
    assert any("Директ, счёт 17" in line and "2026-12-05" in line for line in lines)
    only_ya = leadbot("list", "--source", "ya", "--since", "2026-12-05", "--db", url)
    assert only_ya.code == 0
    assert "vk" not in only_ya.out
    assert shown(Decimal("1500.50")) in only_ya.out
    before = leadbot("list", "--until", "2026-11-30", "--db", url)
    assert "нет данных за период" in before.out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--amount", "-5", "--date", "2026-12-01"], "отрицательная"),
        (["--amount", "много", "--date", "2026-12-01"], "не число"),
        (["--amount", "10.005", "--date", "2026-12-01"], "двух знаков"),
        (["--amount", "10", "--date", "2026-12-32"], "ГГГГ-ММ-ДД"),
        (["--amount", "10", "--date", "1.12.2026"], "ГГГГ-ММ-ДД"),
        (["--amount", "10", "--month", "2026-13"], "ГГГГ-ММ"),
        (["--amount", "10", "--month", "2026-12", "--source", "vk-ads"], "источник 'vk-ads'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2_and_stores_nothing(
    leadbot: Leadbot, url: str, args: list[str], says: str
) -> None:
    if "--source" not in args:
        args = [*args, "--source", "vk"]
    result = leadbot("add", *args, "--db", url)
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1
    assert says in result.err
    assert "Traceback" not in result.err
    assert stored(url) == []


def test_a_list_with_until_before_since_is_refused(leadbot: Leadbot, url: str) -> None:
    result = leadbot("list", "--since", "2026-12-05", "--until", "2026-12-01", "--db", url)
    assert result.code == 2
    assert "--until раньше --since" in result.err


def test_a_missing_sqlite_file_is_refused_and_not_created(
    leadbot: Leadbot, tmp_path: Path
) -> None:
    path = tmp_path / "typo.db"
    for args in (
        ["add", "--source", "vk", "--amount", "10", "--date", "2026-12-01"],
        ["list"],
    ):
        result = leadbot(*args, "--db", f"sqlite+aiosqlite:///{path}")
        assert result.code == 2
        assert f"нет базы данных {path} (--db)" in result.err
        assert not path.exists()


def test_a_day_and_a_month_together_are_refused_by_the_parser(leadbot: Leadbot, url: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        leadbot(
            "add", "--source", "vk", "--amount", "1", "--date", "2026-12-01", "--month", "2026-12"
        )
    assert exit_.value.code == 2
