"""`leadbot chat` shows the whole funnel: the managers' pane and a manager's presses and
replies, events from outside, the periodic jobs `/wait` runs, /mydata and /delete, and the
scenario reloaded when its folder is edited. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.console import CHANNEL, ConsoleChat, ConsoleManagersChat, ConsoleTransport
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.pacing import DEFAULT_LIMITS, MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scenario.reload import ScenarioReloader
from bot.scoring import Routes
from storage.database import Database
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import events_of, snapshot

# The fixture funnel with a personal promo that reminds a day before it expires, and the
# chain that reminder starts.
EXPIRING_PROMO = """
promos:
  welcome:
    kind: personal
    prefix: WELCOME
    discount: "скидка 5%"
    valid: 3d
    remind_before: 1d
    issue_on: {event: consent_given}
"""
REMINDER_CHAIN = """
  promo_reminder:
    start_on: {event: promo_expiring, where: {promo: welcome}}
    steps:
      - {id: expiring, text: "Код {promo.welcome} действует до {promo.welcome.expires}"}
"""


def scenario_folder(tmp_path: Path, *, promo: bool = False) -> Path:
    """A copy of the fixture funnel the test may edit."""
    folder = tmp_path / "funnel"
    shutil.copytree(FIXTURE_SCENARIO, folder)
    if promo:
        main = folder / "funnel.yaml"
        text = main.read_text(encoding="utf-8")
        text = text.replace("\nsequences:\n", f"\nsequences:{REMINDER_CHAIN}", 1)
        main.write_text(text + EXPIRING_PROMO, encoding="utf-8")
    return folder


def console(db: Database, clock: FakeClock, folder: Path, files: Path) -> ConsoleChat:
    """The chat as `leadbot chat` puts it together: cards go to the console's managers'
    pane, the worker sends through both sides, the folder is watched."""

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    scenarios = ActiveScenario(load_scenario(folder))
    funnel = Funnel(db, scenarios, clock, routes=Routes(managers=(CHANNEL,)))
    transport, managers = ConsoleTransport(), ConsoleManagersChat(session="test")
    worker = DeliveryWorker(
        db,
        scenarios,
        clock,
        {CHANNEL: transport},
        MemoryPacer(DEFAULT_LIMITS, clock=lambda: clock.now().timestamp()),
        funnel,
        managers={CHANNEL: managers},
        worker_id="chat",
        sleep=sleep,
    )
    return ConsoleChat(
        funnel,
        clock,
        worker=worker,
        transport=transport,
        managers=managers,
        reloader=ScenarioReloader(scenarios),
        files=files,
    )


@pytest.fixture
def chat(db: Database, clock: FakeClock, tmp_path: Path) -> ConsoleChat:
    return console(db, clock, scenario_folder(tmp_path), tmp_path / "files")


async def say(chat: ConsoleChat, *lines: str) -> str:
    """Type the lines; what the last one printed."""
    output: list[str] | None = []
    for line in lines:
        output = await chat.process(line)
        assert output is not None, line
    return "\n".join(output or [])


async def walk_to_audit(chat: ConsoleChat) -> str:
    """The audit by an ad's link, consent, a name, a phone, a big company: it qualifies."""
    return await say(
        chat, "/start src_vkads-o_audit", "1", "1", "Анна", "/contact +79991234567", "3"
    )


async def test_a_qualified_leads_card_and_a_claim_and_an_answer_reaching_the_prospect(
    chat: ConsoleChat, db: Database
) -> None:
    await say(chat, "/start src_vkads-o_audit", "1", "1", "Анна")
    shared = await say(chat, "/contact +79991234567")
    lead_id = (await snapshot(db, "console", channel=CHANNEL)).lead_id
    assert f"managers #1: 🆕 Новый лид #{lead_id} оставил контакты" in shared
    assert "             Телефон: +79991234567" in shared

    qualified = await say(chat, "3")
    assert qualified.startswith("bot: Спасибо, Анна! Менеджер позвонит.")
    assert f"managers #2: 🔥 Лид #{lead_id} — Анна" in qualified
    assert "             Почему: score 95 >= 60" in qualified
    assert f"[✋ Взял: /claim {lead_id}] [🚫 Не наш клиент: /nofit {lead_id}]" in qualified

    claimed = (await say(chat, f"/claim {lead_id}")).splitlines()
    assert claimed[0] == f"managers #2 edited: 🔥 Лид #{lead_id} — Анна"
    assert "                    🤝 Взял: Менеджер" in claimed
    assert claimed[-1] == f"managers: Лид #{lead_id} ваш."
    assert await say(chat, f"/claim {lead_id}") == "managers: Вы уже взяли этого лида."

    # A reply to the card is a manager's answer: it reaches the prospect.
    assert await say(chat, "/answer 2 Анна, посчитаем на аудите") == (
        "bot: Анна, посчитаем на аудите"
    )
    asked = await say(chat, "Сколько стоит аудит?")
    assert f"managers #3: 💬 Анна (лид #{lead_id}, у Менеджер):" in asked
    assert await say(chat, "/answer 3 Бесплатно") == "bot: Бесплатно"

    won = await say(chat, f"/won {lead_id} 150 000")
    assert f"managers #4: 💰 Сумма сделки по лиду #{lead_id}?" in won
    assert "✅ Сделка: 150000 (закрыл Менеджер)" in won
    assert won.endswith(f"managers: ✅ Лид #{lead_id}: сделка на 150000.")
    state = await snapshot(db, "console", channel=CHANNEL)
    assert (state.stage, state.events.count("manager_replied")) == ("customer", 2)
    assert await events_of(db, lead_id, "purchase") == [{"amount": 150000.0, "by": "manager"}]


async def test_a_lost_deal_and_what_a_manager_types_wrong(chat: ConsoleChat, db: Database) -> None:
    await walk_to_audit(chat)
    lead_id = (await snapshot(db, "console", channel=CHANNEL)).lead_id
    assert await say(chat, "/claim") == "(usage: /claim LEAD)"
    assert await say(chat, "/answer 9 текст") == "(no post #9 in the managers' chat)"
    assert await say(chat, f"/lost {lead_id} дорого") == (
        "managers: Сначала возьмите лида кнопкой «Взял»."
    )
    await say(chat, f"/claim {lead_id}")
    lost = await say(chat, f"/lost {lead_id}")  # no reason yet: the question waits for one
    assert "(ответ: /answer 3 <текст>)" in lost
    closed = await say(chat, "/answer 3 дорого")
    assert "❌ Отказ: дорого (Менеджер)" in closed
    assert closed.endswith(f"managers: Лид #{lead_id} закрыт: дорого.")
    assert (await snapshot(db, "console", channel=CHANNEL)).stage == "lost"


async def test_events_from_outside_score_and_qualify(chat: ConsoleChat, db: Database) -> None:
    assert await say(chat, "/event case_read") == (
        "(/event: this prospect is no lead (yet, or erased): /start first)"
    )
    await say(chat, "/start")
    lead_id = (await snapshot(db, "console", channel=CHANNEL)).lead_id
    assert await say(chat, "/event nosuch") == (
        "(/event: unknown event 'nosuch': declare it under events: in the scenario)"
    )
    assert await say(chat, "/event case_read page") == "(/event: 'page' is not key=value)"
    for score in range(10, 60, 10):
        assert await say(chat, "/event case_read page=/pricing") == (
            f"(event case_read recorded for lead #{lead_id}: score {score}, stage new)"
        )
    qualified = (await say(chat, "/event case_read")).splitlines()
    assert qualified[0] == (
        f"(event case_read recorded for lead #{lead_id}: score 60, stage qualified, "
        "and it made the lead qualify)"
    )
    assert qualified[1] == f"managers #1: 🔥 Лид #{lead_id} — Гость"
    assert "Почему: score 60 >= 60" in "\n".join(qualified)
    details = await events_of(db, lead_id, "case_read")
    assert details[0] == {"page": "/pricing", "via": "api"}


async def test_a_purchase_moves_the_lead_to_customer_and_stops_its_warmup(
    chat: ConsoleChat, db: Database
) -> None:
    await say(chat, "/start o_guide", "1", "1", "anna@example.com")
    assert await say(chat, "/purchase много") == "(/purchase: the amount is not a number)"
    lead_id = (await snapshot(db, "console", channel=CHANNEL)).lead_id
    assert await say(chat, "/purchase 45000") == (
        f"(event purchase recorded for lead #{lead_id}: score 15, stage customer)"
    )
    state = await snapshot(db, "console", channel=CHANNEL)
    assert state.sequences == {"guide_warmup": "stopped"}
    assert await events_of(db, lead_id, "purchase") == [{"amount": 45000.0, "via": "api"}]
    assert await say(chat, "/wait 1w") == "(clock moved 1w forward, now 2026-11-30 12:00 MSK)"


async def test_wait_runs_the_promo_expiry_job_and_its_reminder_chain(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    chat = console(db, clock, scenario_folder(tmp_path, promo=True), tmp_path / "files")
    await say(chat, "/start o_guide", "1", "1")  # consent given: the code is issued
    [code] = [e["code"] for e in await events_of(db, 1, "promo_issued")]
    waited = (await say(chat, "/wait 4d")).splitlines()
    # Issued on 23 November at 12:00 Moscow time, valid 3 days: a day before it ends the
    # job reminds, and the chain's step says so at once.
    assert waited == [
        "(2026-11-25 12:00 MSK)",
        f"bot: Код {code} действует до 26.11.2026",
        "(clock moved 4d forward, now 2026-11-27 12:00 MSK)",
    ]
    assert (await snapshot(db, "console", channel=CHANNEL)).events.count("promo_expiring") == 1


async def test_wait_reminds_of_a_card_nobody_claimed_then_escalates(
    chat: ConsoleChat, db: Database
) -> None:
    await walk_to_audit(chat)
    lead_id = (await snapshot(db, "console", channel=CHANNEL)).lead_id
    waited = (await say(chat, "/wait 3h")).splitlines()
    stamps = [line for line in waited if line.startswith("(")]
    assert stamps == [
        "(2026-11-23 12:30 MSK)",
        "(2026-11-23 14:00 MSK)",
        "(clock moved 3h forward, now 2026-11-23 15:00 MSK)",
    ]
    assert "managers #3: ⏰ Лида никто не взял уже 30 мин" in waited
    assert "managers #4: 🚨 Эскалация: лид ждёт менеджера 2 ч 0 мин" in waited
    # The audit's own follow-up comes the next day, after the quiet hours.
    assert "bot: Напоминаем об аудите" in await say(chat, "/wait 1d")
    claimed = await say(chat, f"/claim {lead_id}")
    assert [line.split(":")[0] for line in claimed.splitlines() if "edited" in line] == [
        "managers #2 edited",
        "managers #3 edited",
        "managers #4 edited",
    ]


async def test_mydata_gives_the_file_and_delete_erases_the_prospect(
    chat: ConsoleChat, db: Database, tmp_path: Path
) -> None:
    await say(chat, "/start o_guide", "1", "1", "anna@example.com")
    lead_id = (await snapshot(db, "console", channel=CHANNEL)).lead_id
    saved = tmp_path / "files" / "mydata.json"
    assert (await say(chat, "/mydata")).splitlines() == [
        "bot: Всё, что мы о вас храним, — в этом файле.",
        f"     [file] mydata.json -> {saved}",
    ]
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert document["lead"]["id"] == lead_id
    assert [c["value"] for c in document["contacts"]] == ["anna@example.com"]

    asked = await say(chat, "/delete")
    assert asked.splitlines()[-2:] == ["     [1] Да, удалить", "     [2] Отмена"]
    assert "ваши данные удалены" in await say(chat, "1")
    assert await say(chat, "/purchase 100") == (
        "(/purchase: this prospect is no lead (yet, or erased): /start first)"
    )
    assert await say(chat, "/wait 1w") == "(clock moved 1w forward, now 2026-11-30 12:00 MSK)"


async def test_an_edited_scenario_is_picked_up_before_the_next_line(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    folder = scenario_folder(tmp_path)
    chat = console(db, clock, folder, tmp_path / "files")
    assert (await say(chat, "/start")).startswith("bot: Привет, Гость! Выберите:")
    main = folder / "funnel.yaml"
    good = main.read_text(encoding="utf-8")
    main.write_text(good.replace("Привет, {first_name}!", "Добрый день, {first_name}!"))
    reloaded = (await say(chat, "/start")).splitlines()
    assert reloaded[0].startswith(f"(reload) Сценарий {folder} обновлён: 3 ")  # offers...
    greeting = reloaded.index("bot: Добрый день, Гость! Выберите:")
    assert all(line.startswith("(reload) ") for line in reloaded[:greeting])  # + warnings

    main.write_text(good.replace("offers:\n  audit:", "offers:\n  audit:\n    wrong: 1"))
    refused = (await say(chat, "/start")).splitlines()
    assert refused[0].startswith(f"(reload) Сценарий {folder} не принят")
    assert "offers.audit.wrong" in refused[1]  # the problem, where it is
    assert "bot: Добрый день, Гость! Выберите:" in refused  # the running one stays
    assert (await say(chat, "/menu")).startswith("bot: Добрый день")  # reported once
