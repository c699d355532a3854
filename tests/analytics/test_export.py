"""The lead export on SQLite and PostgreSQL: who is in it (personal-data consent, not
withdrawn, not erased), what each row says (revenue is the sum the test wrote), formula cells
neutralised, one streamed statement for 2,000 leads; and `leadbot export leads` as a marketer
runs it."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, literal, select
from sqlalchemy.engine import Engine

from bot.analytics import export
from bot.consent import MARKETING, PERSONAL_DATA
from storage import migrate
from storage.database import Database
from storage.models import Consent, Contact, Event, Lead, Tag
from tests.in_process import Leadbot, command_runner

START = datetime(2026, 10, 5, 10, 30, tzinfo=UTC)
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


@dataclass
class Written:
    """What a test wrote for one lead, to compare the export with."""

    lead_id: int
    amounts: list[float | None]
    purchase_times: list[datetime]


async def add_lead(
    db: Database,
    *,
    consents: list[tuple[str, datetime | None]] = (),  # type: ignore[assignment]
    erased: bool = False,
    first_name: str | None = "Анна",
    source: str | None = "vk",
    offer: str | None = "audit",
    stage: str = "contact",
    score: int = 10,
    phones: list[str] = (),  # type: ignore[assignment]
    emails: list[str] = (),  # type: ignore[assignment]
    tags: list[str] = (),  # type: ignore[assignment]
    purchases: list[tuple[float | None, datetime]] = (),  # type: ignore[assignment]
) -> Written:
    """One lead with its rows, inserted as they are (no engine in between)."""
    async with db.unit_of_work() as uow:
        lead = Lead(
            created_at=at(0),
            updated_at=at(0),
            first_name=first_name,
            source=source,
            offer=offer,
            stage=stage,
            funnel_stage=stage,
            score=score,
            erased_at=at(50) if erased else None,
        )
        uow.session.add(lead)
        await uow.session.flush()
        for kind, withdrawn in consents:
            uow.session.add(
                Consent(
                    lead_id=lead.id,
                    kind=kind,
                    text_version="v1",
                    channel="telegram",
                    given_at=at(1),
                    withdrawn_at=withdrawn,
                )
            )
        for kind, values in (("phone", phones), ("email", emails)):
            for value in values:
                uow.session.add(
                    Contact(
                        lead_id=lead.id,
                        kind=kind,
                        value=value,
                        channel="telegram",
                        created_at=at(2),
                    )
                )
        for tag in tags:
            uow.session.add(Tag(lead_id=lead.id, tag=tag, created_at=at(3)))
        for amount, moment in purchases:
            payload: dict[str, Any] = {"product": "Аудит"}
            if amount is not None:
                payload["amount"] = amount
            uow.session.add(
                Event(lead_id=lead.id, name="purchase", payload=payload, created_at=moment)
            )
        # Other events with an amount are no revenue.
        uow.session.add(
            Event(lead_id=lead.id, name="offer_taken", payload={"amount": 5}, created_at=at(4))
        )
        await uow.commit()
        return Written(lead.id, [a for a, _ in purchases], [m for _, m in purchases])


async def exported(db: Database, delimiter: str = ";") -> list[list[str]]:
    out = io.StringIO(newline="")
    async with db.reading() as session:
        count = await export.write_leads(session, out, delimiter=delimiter)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline=""), delimiter=delimiter))
    assert rows[0] == list(export.COLUMNS)
    assert len(rows) - 1 == count
    return rows[1:]


def column(name: str) -> int:
    return export.COLUMNS.index(name)


GIVEN = (PERSONAL_DATA, None)


async def test_only_leads_with_personal_data_consent_and_not_erased_are_exported(
    db: Database,
) -> None:
    kept = await add_lead(db, consents=[GIVEN, (MARKETING, None)])
    regained = await add_lead(db, consents=[(PERSONAL_DATA, at(5)), GIVEN])  # withdrew, gave again
    await add_lead(db, consents=[(PERSONAL_DATA, at(5))])  # withdrew
    await add_lead(db, consents=[(MARKETING, None)])  # advertising consent only
    await add_lead(db, consents=[GIVEN], erased=True)
    await add_lead(db)  # never consented

    rows = await exported(db)

    assert [int(row[column("Лид")]) for row in rows] == [kept.lead_id, regained.lead_id]


@pytest.mark.parametrize(("delimiter", "mark"), [(";", ","), (",", ".")])
async def test_a_row_holds_the_leads_contacts_tags_and_the_revenue_written(
    db: Database, delimiter: str, mark: str
) -> None:
    purchases = [(1500.5, at(30)), (999.99, at(70)), (None, at(40)), (120000.0, at(20))]
    lead = await add_lead(
        db,
        consents=[GIVEN],
        first_name="Мария",
        source="site",
        offer="guide",
        stage="customer",
        score=42,
        phones=["+79161234567", "+79035550000"],
        emails=["maria@example.com"],
        tags=["wants_audit", "big_team", "crm"],
        purchases=purchases,
    )
    buyer_of_nothing = await add_lead(db, consents=[GIVEN], tags=[], phones=[])

    first, second = await exported(db, delimiter)

    revenue = sum(Decimal(str(a)) for a in lead.amounts if a is not None)
    assert Decimal(first[column("Выручка")].replace(mark, ".")) == revenue
    assert first[column("Покупок")] == str(len(lead.amounts))
    assert first[column("Последняя покупка (UTC)")] == f"{max(lead.purchase_times):%Y-%m-%d %H:%M}"
    assert first[column("Создан (UTC)")] == f"{at(0):%Y-%m-%d %H:%M}"
    assert first[column("Имя")] == "Мария"
    # A phone starts with "+": neutralised like any cell a spreadsheet would run.
    assert first[column("Телефон")] == "'" + ", ".join(sorted(["+79161234567", "+79035550000"]))
    assert first[column("E-mail")] == "maria@example.com"
    assert first[column("Теги")] == ", ".join(sorted(["wants_audit", "big_team", "crm"]))
    assert (first[column("Источник")], first[column("Оффер")]) == ("site", "guide")
    assert (first[column("Стадия")], first[column("Баллы")]) == ("customer", "42")

    assert int(second[column("Лид")]) == buyer_of_nothing.lead_id
    assert (second[column("Выручка")], second[column("Покупок")]) == ("0", "0")
    assert (second[column("Последняя покупка (UTC)")], second[column("Теги")]) == ("", "")


async def test_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(db: Database) -> None:
    hostile = {
        "first_name": '=HYPERLINK("http://evil.example";"жми")',
        "source": "+cmd|' /C calc'!A0",
        "offer": "-2+3",
        "tags": ["@SUM(1+1)", "\tTAB", "\rCR", "обычный"],
    }
    await add_lead(
        db,
        consents=[GIVEN],
        first_name=hostile["first_name"],
        source=hostile["source"],
        offer=hostile["offer"],
        score=-5,
        tags=hostile["tags"],
    )

    [row] = await exported(db)

    assert row[column("Имя")] == "'" + hostile["first_name"]
    assert row[column("Источник")] == "'" + hostile["source"]
    assert row[column("Оффер")] == "'" + hostile["offer"]
    assert row[column("Баллы")] == "'-5"
    # The joined tags start with the first in order (the tab sorts first): neutralised as a cell.
    assert row[column("Теги")] == "'" + ", ".join(sorted(hostile["tags"]))
    for cell in row:
        assert not cell.startswith(DANGEROUS), repr(cell)


@pytest.mark.parametrize("start", DANGEROUS)
def test_every_dangerous_first_character_gets_an_apostrophe(start: str) -> None:
    assert export.neutralised(f"{start}1+1") == f"'{start}1+1"


def test_a_harmless_cell_is_left_as_it_is() -> None:
    for cell in ("Анна", "1500", "a=b", "", "'quoted"):
        assert export.neutralised(cell) == cell


async def test_two_thousand_leads_are_read_by_one_streamed_statement_in_batches(
    db: Database,
) -> None:
    total, batch = 2000, 500
    async with db.unit_of_work() as uow:
        await uow.session.execute(
            insert(Lead),
            [{"created_at": at(n / 60), "updated_at": at(0), "score": n} for n in range(total)],
        )
        await uow.commit()
    async with db.unit_of_work() as uow:
        await uow.session.execute(
            insert(Consent).from_select(
                ["lead_id", "kind", "text_version", "channel", "given_at"],
                _consents_for_every_lead(),
            )
        )
        await uow.commit()

    statements: list[tuple[str, dict[str, Any]]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: Any
    ) -> None:
        statements.append((statement, dict(context.execution_options)))

    # Every engine: on SQLite the reading session has an engine of its own.
    event.listen(Engine, "before_cursor_execute", record)
    sizes: list[int] = []
    scores: list[int] = []
    try:
        async with db.reading() as session:
            async for rows in export.lead_batches(session, batch=batch):
                sizes.append(len(rows))
                scores += [int(row[column("Баллы")]) for row in rows]
    finally:
        event.remove(Engine, "before_cursor_execute", record)

    selects = [(sql, options) for sql, options in statements if sql.lstrip().startswith("SELECT")]
    assert len(selects) == 1, [sql for sql, _ in statements]  # no query per lead, no paging
    [(_, options)] = selects
    assert options.get("yield_per") == batch
    assert options.get("stream_results") is True
    assert sizes == [batch] * (total // batch)  # handed over a batch at a time
    assert scores == list(range(total))  # every lead once, in the order of their ids


def _consents_for_every_lead() -> Any:
    return select(
        Lead.id,
        literal(PERSONAL_DATA),
        literal("v1"),
        literal("telegram"),
        literal(START),
    )


# ---- `leadbot export leads`, through bot.cli.main on a SQLite file


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file with two consenting leads and one without consent."""
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"

    async def make() -> None:
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
            await add_lead(db, consents=[GIVEN], first_name="Анна", purchases=[(2500.0, at(9))])
            await add_lead(db, consents=[GIVEN], first_name="Пётр")
            await add_lead(db, first_name="Без согласия")
        finally:
            await db.dispose()

    asyncio.run(make())
    return url


@pytest.fixture
def leadbot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Leadbot:
    """`leadbot export ARGS` in this process, from a folder with no .env."""
    return command_runner("export", tmp_path, monkeypatch, capsys)


def test_the_command_writes_utf8_with_a_bom_for_excel(
    leadbot: Leadbot, sqlite_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "лиды.csv"

    result = leadbot("leads", "--csv", str(target), "--db", sqlite_url)

    assert result.code == 0, result.err
    assert result.out.strip() == f"Выгружено лидов: 2 в {target}"
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert rows[0] == list(export.COLUMNS)
    assert [row[column("Имя")] for row in rows[1:]] == ["Анна", "Пётр"]
    assert rows[1][column("Выручка")] == "2500"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_an_existing_file_is_kept_unless_forced(
    leadbot: Leadbot, sqlite_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "leads.csv"
    target.write_text("мой важный файл", encoding="utf-8")

    refused = leadbot("leads", "--csv", str(target), "--db", sqlite_url)

    assert refused.code == 2
    assert refused.err.strip() == (
        f"leadbot: файл {target} уже есть; укажите другое имя или добавьте --force"
    )
    assert target.read_text(encoding="utf-8") == "мой важный файл"

    forced = leadbot(
        "leads", "--csv", str(target), "--db", sqlite_url, "--force", "--delimiter", ","
    )

    assert forced.code == 0, forced.err
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"), newline="")))
    assert len(rows) == 3


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing_db", "leadbot: нет базы данных "),
        ("missing_folder", "leadbot: нет папки "),
        ("folder", " — это папка; укажите имя файла"),
    ],
)
def test_bad_input_gets_one_russian_line(
    leadbot: Leadbot, sqlite_url: str, tmp_path: Path, where: str, message: str
) -> None:
    target, url = tmp_path / "leads.csv", sqlite_url
    if where == "missing_db":
        url = f"sqlite+aiosqlite:///{tmp_path}/nothing.db"
    elif where == "missing_folder":
        target = tmp_path / "no" / "such" / "leads.csv"
    else:
        target = tmp_path

    result = leadbot("leads", "--csv", str(target), "--db", url)

    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "nothing.db").exists()
