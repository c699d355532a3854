"""`leadbot broadcast` as a marketer runs it (through `bot.cli.main`, on a scenario copy and a
database of its own): what a dry run shows, a run followed from queueing to its cancel, and a
segment that names what does not exist refused with the name it probably meant."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import broadcasts
from bot.clock import FakeClock
from bot.console import ConsoleTransport
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.pacing import MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage import migrate
from storage.database import Database
from storage.repositories import outbox_row
from tests.broadcast_leads import Person, seed
from tests.conftest import FIXTURE_SCENARIO
from tests.in_process import Leadbot, command_runner

WEBINAR = {
    "segment": {"tag": "wants_audit"},
    "text": "{first_name}, приходите на вебинар 1 декабря!",
    "at": "2031-12-01 11:00",
    "buttons": [
        {"text": "Записаться", "event": "webinar_registered"},
        {"text": "Программа", "url": "https://example.com/program"},
    ],
}


def write_scenario(folder: Path, *, quiet_hours: bool = True, **settings: Any) -> Path:
    """The test funnel with the `webinar` broadcast (or `broadcasts` given in `settings`)."""
    shutil.copytree(FIXTURE_SCENARIO, folder)
    path = folder / "funnel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not quiet_hours:
        data["settings"].pop("quiet_hours")
    data["broadcasts"] = settings.pop("broadcasts", {"webinar": WEBINAR})
    data["settings"].update(settings)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


@pytest.fixture
def leadbot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Leadbot:
    """`leadbot broadcast ARGS` in this process, from a folder with no .env."""
    return command_runner("broadcast", tmp_path, monkeypatch, capsys)


def database(url: str, *people: Person) -> dict[str, int]:
    """A migrated database with these leads; external id -> lead id."""

    async def make() -> dict[str, int]:
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
            return await seed(db, *people)
        finally:
            await db.dispose()

    return asyncio.run(make())


def deliver(url: str, scenario: Path, rows: int) -> list[str]:
    """A worker a minute from now sends one batch of `rows`; the texts that went out."""

    async def tick() -> list[str]:
        db = Database(url)
        scenarios = ActiveScenario(load_scenario(scenario))
        clock = FakeClock(datetime.now(UTC) + timedelta(minutes=1))
        transport = ConsoleTransport()
        worker = DeliveryWorker(
            db,
            scenarios,
            clock,
            {"console": transport},
            MemoryPacer(),
            Funnel(db, scenarios, clock),
            worker_id="w1",
            batch=rows,
        )
        try:
            await worker.tick()
        finally:
            await worker.pacer.aclose()
            await db.dispose()
        return [message.text for message in transport.outbox]

    return asyncio.run(tick())


def test_a_dry_run_shows_whom_what_and_when_and_queues_nothing(
    tmp_path: Path, leadbot: Leadbot
) -> None:
    folder = write_scenario(tmp_path / "scenario", ad_limit={"max": 1, "per": "1w"})
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    ids = database(
        url,
        Person("anna", "Анна", "Europe/Moscow"),
        Person("boris", "Борис", "Asia/Vladivostok"),
        Person("vera", "Вера", marketing=False),
        Person("gleb", "Глеб", "Europe/Moscow", unsubscribed=True),
        Person("dina", "Дина", blocked=True),
        Person("eva", "Ева", "Europe/Kaliningrad"),
        Person("zhenya", "Женя", "Europe/Moscow"),
        Person("ilya", "Илья", tags=()),  # not in the segment
    )

    async def earlier_messages() -> None:
        db = Database(url)
        scenario = load_scenario(folder).scenario
        now = datetime.now(UTC)
        try:  # Женя has the webinar queued; Ева a warm-up step the day before it
            await broadcasts.enqueue(db, scenario, "webinar", [ids["zhenya"]], now=now)
            step = datetime(2031, 11, 30, 12, 0, tzinfo=UTC)
            row = outbox_row("step:x:eva", "console", "step", step, now, ids["eva"], {})
            async with db.unit_of_work() as uow:
                await uow.outbox.enqueue_many([row])
                await uow.commit()
        finally:
            await db.dispose()

    asyncio.run(earlier_messages())
    result = leadbot("--step", "webinar", "--dry-run", "--scenario", str(folder), "--db", url)

    assert (result.code, result.err) == (0, "")
    assert result.lines == [
        "Пробный запуск: рассылка webinar из сценария. В очередь ничего не ставится.",
        "Под сегмент подходят: 7 лидов. Получат: 3 лида.",
        "Не получат: 4 лида:",
        "  заблокировали бота — 1",
        "  отписались — 1",
        "  нет согласия на рекламу — 1",
        "  уже получили или ждут эту рассылку — 1",
        "",
        f"Пример сообщения для лида #{ids['anna']} (Анна, console):",
        "  │ Анна, приходите на вебинар 1 декабря!",
        "  │ [Записаться] → событие webinar_registered",
        "  │ [Программа] → ссылка https://example.com/program",
        "",
        "Когда: 2031-12-01 11:00 по местному времени каждого лида; тихие часы 21:00–10:00.",
        "  Asia/Vladivostok — 1 лид: 2031-12-01 11:00 (01:00 UTC)",
        "  Europe/Moscow — 1 лид: 2031-12-01 11:00 (08:00 UTC)",
        "  Europe/Kaliningrad — 1 лид: 2031-12-01 11:00 (09:00 UTC)",
        # Ева's step counts against her one advertising message a week: the webinar waits
        # until the step is a week old.
        "Лимит рекламы (не больше 1 сообщения за неделю) отложит отправку для 1 лида — "
        "до 2031-12-07 12:00 UTC.",
        "Первые уйдут 2031-12-01 01:00 UTC, последние — 2031-12-07 12:00 UTC.",
    ]
    status = leadbot("--status", "--db", url)
    assert status.lines == ["Рассылок ещё не было."]  # the dry run recorded nothing

    early = leadbot("--step", "webinar", "--at", "2031-12-01 08:00", "--dry-run", "--scenario",
                    str(folder), "--db", url)  # fmt: skip
    assert "  Europe/Moscow — 1 лид: 2031-12-01 10:00 (07:00 UTC), после тихих часов" in (
        early.lines
    )


def test_a_dry_run_of_a_text_fills_the_name_and_shows_codes_as_what_they_are(
    tmp_path: Path, leadbot: Leadbot
) -> None:
    folder = write_scenario(tmp_path / "scenario", quiet_hours=False)
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    ids = database(url, Person("anna", "Анна"))
    text, segment = "{name}, ваша ссылка: {referral_link}", "{tag: wants_audit}"
    result = leadbot(
        "--text",
        text,
        "--segment",
        segment,
        "--dry-run",
        "--scenario",
        str(folder),
        "--db",
        url,
    )
    assert (result.code, result.err) == (0, "")
    assert result.lines == [
        f"Пробный запуск: рассылка {broadcasts.adhoc_id(text, segment)} с текстом из командной "
        "строки. В очередь ничего не ставится.",
        "Под сегмент подходят: 1 лид. Получат: 1 лид.",
        "",
        f"Пример сообщения для лида #{ids['anna']} (Анна, console):",
        "  │ Анна, ваша ссылка: ‹ссылка для друзей›",
        "",
        "Когда: сразу.",
        "  Europe/Moscow — 1 лид: сразу",
    ]


def test_a_run_is_followed_from_queueing_to_its_cancel(
    tmp_path: Path, leadbot: Leadbot, database_url: str
) -> None:
    url = database_url  # a SQLite file, then a PostgreSQL schema
    folder = write_scenario(tmp_path / "scenario", quiet_hours=False)
    people = [Person(f"p{n}", name) for n, name in enumerate(["Анна", "Борис", "Вера", "Глеб"])]
    database(url, *people, Person("p9", "Дина", marketing=False))
    text = "Вебинар в четверг, {first_name}!"
    args = ("--text", text, "--segment", "{tag: wants_audit}", "--scenario", str(folder))

    queued = leadbot(*args, "--db", url)
    assert (queued.code, queued.err) == (0, "")
    run = re.search(r"рассылка (adhoc_\w+-1)\.", queued.out)
    assert run is not None, queued.out
    run_id = run[1]
    assert queued.lines == [
        "Под сегмент подходят: 5 лидов. Получат: 4 лида.",
        "Не получат: 1 лид:",
        "  нет согласия на рекламу — 1",
        f"Поставлено в очередь: 4 сообщения, рассылка {run_id}. Отправляет работающий бот, "
        "в пределах лимитов платформ и в своё время у каждого лида.",
        f"Ход: leadbot broadcast --status {run_id}; отменить: leadbot broadcast --cancel {run_id}",
    ]

    listed = leadbot("--status", "--db", url)
    assert re.fullmatch(rf"{run_id}  поставлена \d{{4}}-\d\d-\d\d \d\d:\d\d UTC", listed.lines[0])
    assert listed.lines[1] == (
        "  [░░░░░░░░░░░░░░░░░░░░]   0%  отправлено 0 · ждут 4 · не доставлено 0 · отменено 0  из 4"
    )
    assert len(listed.lines) == 2  # due now: no line on when the next ones go

    assert deliver(url, folder, rows=1) == ["Вебинар в четверг, Анна!"]
    assert leadbot("--status", run_id, "--db", url).lines[1:] == [
        "  [█████░░░░░░░░░░░░░░░]  25%  "
        "отправлено 1 · ждут 3 · не доставлено 0 · отменено 0  из 4",
        "  сегмент: {tag: wants_audit}",
        f"  текст: {text}",
    ]

    cancelled = leadbot("--cancel", run_id, "--db", url)
    assert (cancelled.code, cancelled.err) == (0, "")
    assert cancelled.lines[0] == (
        f"Рассылка {run_id} отменена: из очереди снято 3 сообщения. Уже отправленное не вернуть; "
        "то, что уходило в эту секунду, дойдёт."
    )
    assert cancelled.lines[2:] == [
        "  [█████▒▒▒▒▒▒▒▒▒▒▒▒▒▒▒] 100%  "
        "отправлено 1 · ждут 0 · не доставлено 0 · отменено 3  из 4",
        "  сегмент: {tag: wants_audit}",
        f"  текст: {text}",
        "  отменено командой --cancel — 3",
    ]
    assert deliver(url, folder, rows=10) == []  # nothing of it is left to send
    assert re.search(r", отменена \d{4}-\d\d-\d\d \d\d:\d\d UTC$", cancelled.lines[1])
    assert leadbot("--status", "--db", url).lines[1] == cancelled.lines[2]

    # What the cancel took back may be queued again (the same text to the same segment):
    # those three, not Анна, who has it.
    again = leadbot(*args, "--db", url)
    assert f"Поставлено в очередь: 3 сообщения, рассылка {run_id[:-2]}-2. " in again.out


def _error(leadbot: Leadbot, url: str, folder: Path, *args: str) -> str:
    result = leadbot(*args, "--scenario", str(folder), "--db", url)
    assert (result.code, result.out) == (2, "")
    assert len(result.err.splitlines()) == 1, result.err
    return result.err.strip()


SEGMENT_ERRORS = [
    ("{tag: wants_audt}", "неизвестный тег 'wants_audt' — возможно, имелось в виду "
     "'wants_audit'?"),
    ("{source: vkadz}", "неизвестный источник 'vkadz' — возможно, имелось в виду 'vkads'?"),
    ("{source: telegram_ads}", "неизвестный источник 'telegram_ads' (известны: site, vkads)"),
    ("{offer: gude}", "неизвестный оффер 'gude' — возможно, имелось в виду 'guide'?"),
    (
        "{all: [{tag: wants_audit}, {answer: {compny_size: 1}}]}",
        "неизвестный вопрос 'compny_size' — возможно, имелось в виду 'company_size'?",
    ),
    ("case_red >= 2", "неизвестное событие 'case_red' — возможно, имелось в виду 'case_read'?"),
    ("{stage: qualifed}", "stage: неизвестная стадия 'qualifed' — возможно, имелось в виду "
     "'qualified'?"),
    ("{offr: guide}", "неизвестное правило 'offr' — возможно, имелось в виду 'offer'?"),
    (
        "{all: [{tag: wants_audit}, {nope: 1}]}",
        "неизвестное правило 'nope': правило — это одно из any, all, not, score, tag, stage, "
        "event, answer, contact, source, offer, rfm, purchases, revenue, last_purchase или имя "
        'события, например "case_read" или "pricing_viewed >= 3"',
    ),
    ("{tag: wants audit}", "tag: 'wants audit' — не имя: 1–32 латинские буквы, цифры или _, "
     "без пробелов"),
    ("{tag: wants_audit", "не читается как YAML: не хватает закрывающей } (символ 18)"),
    ("{any: {tag: a}}", "any: нужен список правил, например [{tag: a}, {tag: b}]"),
    ("[tag, wants_audit]", "не правило: ['tag', 'wants_audit']; правило — это одно из any, all, "
     'not, score, tag, stage, event, answer, contact, source, offer, rfm, purchases, revenue, '
     'last_purchase или имя события, например "case_read" или "pricing_viewed >= 3"'),
]  # fmt: skip


@pytest.mark.parametrize(("segment", "error"), SEGMENT_ERRORS)
def test_a_segment_naming_what_does_not_exist_is_refused_with_what_was_meant(
    tmp_path: Path, leadbot: Leadbot, segment: str, error: str
) -> None:
    folder = write_scenario(tmp_path / "scenario")
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url, Person("anna"), Person("boris", source="site"))
    args = ("--text", "Привет", "--segment", segment, "--dry-run")
    assert _error(leadbot, url, folder, *args) == f"leadbot: --segment: {error}"


def test_names_the_database_knows_are_no_error(tmp_path: Path, leadbot: Leadbot) -> None:
    """A tag the scenario no longer gives, and an event from outside it, still match leads."""
    folder = write_scenario(tmp_path / "scenario")
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url, Person("anna", tags=("old_campaign",)))
    result = leadbot("--text", "Привет", "--segment", "{tag: old_campaign}", "--dry-run",
                     "--scenario", str(folder), "--db", url)  # fmt: skip
    assert result.code == 0, result.err
    assert result.lines[1] == "Под сегмент подходят: 1 лид. Получат: 1 лид."


def test_the_scenarios_own_segment_is_checked_too(tmp_path: Path, leadbot: Leadbot) -> None:
    typo = {"webinar": {**WEBINAR, "segment": {"all": [{"source": "vkadz"}, {"tag": "x_y"}]}}}
    folder = write_scenario(tmp_path / "scenario", broadcasts=typo)
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url, Person("anna"))
    result = leadbot("--step", "webinar", "--dry-run", "--scenario", str(folder), "--db", url)
    assert (result.code, result.out) == (2, "")
    assert result.err.splitlines() == [
        "leadbot: broadcasts.webinar.segment: неизвестный источник 'vkadz' — возможно, имелось в "
        "виду 'vkads'?",
        "leadbot: broadcasts.webinar.segment: неизвестный тег 'x_y' (известны: enterprise, "
        "wants_audit)",
    ]


def test_a_segment_that_is_no_rule_in_the_scenario_is_one_line(
    tmp_path: Path, leadbot: Leadbot
) -> None:
    broken = {"webinar": {**WEBINAR, "segment": {"offr": "guide"}}}
    folder = write_scenario(tmp_path / "scenario", broadcasts=broken)
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url, Person("anna"))
    result = leadbot("--step", "webinar", "--dry-run", "--scenario", str(folder), "--db", url)
    assert result.code == 1
    about = [line for line in result.err.splitlines() if "segment" in line]
    assert len(about) == 1, result.err
    assert "broadcasts.webinar.segment" in about[0]
    assert "offr" in about[0]
    assert "validation error" not in result.err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--text", "Привет"], "leadbot: --text нужен --segment: кому отправить"),
        (
            ["--step", "webinr"],
            "leadbot: в сценарии нет рассылки 'webinr' — возможно, имелось в виду 'webinar'?",
        ),
        (
            ["--step", "webinar", "--at", "1 декабря"],
            'leadbot: --at \'1 декабря\': нужно "ГГГГ-ММ-ДД ЧЧ:ММ", например "2026-12-01 11:00"',
        ),
        (
            ["--text", "Код {promo.x}", "--segment", "{tag: wants_audit}"],
            "leadbot: в --text можно {first_name}, {name}, {policy_url}, {referral_link} и "
            "{promo.<id>} промокодов сценария, но не {promo.x}",
        ),
        (
            ["--status", "--at", "2031-12-01 11:00"],
            "leadbot: --status и --cancel не сочетаются с --segment, --at и --dry-run",
        ),
    ],
)
def test_a_wrong_command_says_what_is_wrong(
    tmp_path: Path, leadbot: Leadbot, args: list[str], error: str
) -> None:
    folder = write_scenario(tmp_path / "scenario")
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url)
    assert _error(leadbot, url, folder, *args, "--dry-run") == error


def test_status_and_cancel_of_an_unknown_run_name_the_closest(
    tmp_path: Path, leadbot: Leadbot
) -> None:
    folder = write_scenario(tmp_path / "scenario", quiet_hours=False)
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url, Person("anna"))
    assert leadbot("--step", "webinar", "--scenario", str(folder), "--db", url).code == 0
    for command in ("--status", "--cancel"):
        result = leadbot(command, "webinar-2", "--db", url)
        assert (result.code, result.out) == (2, "")
        assert result.err.strip() == (
            "leadbot: нет рассылки 'webinar-2' — возможно, имелось в виду 'webinar-1'? "
            "(все: leadbot broadcast --status)"
        )


def test_a_broadcast_that_repeats_by_itself_is_not_sent_by_step(
    tmp_path: Path, leadbot: Leadbot
) -> None:
    weekly = {"digest": {"segment": {"tag": "wants_audit"}, "text": "Дайджест",
                         "every": {"weekday": "чт", "at": "11:00"}}}  # fmt: skip
    folder = write_scenario(tmp_path / "scenario", broadcasts=weekly)
    url = f"sqlite+aiosqlite:///{tmp_path}/leads.db"
    database(url, Person("anna", tags=("wants_audit",)))
    assert _error(leadbot, url, folder, "--step", "digest") == (
        "leadbot: рассылка 'digest' уходит сама (every:); разовую отправьте с --text и "
        "--segment, а ход её отправок смотрите в --status"
    )
