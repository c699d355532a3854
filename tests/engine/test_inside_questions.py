"""Inside an offer's question (issue 15): a question to us, a refusal, the skip and menu
buttons and a stale button never trap the prospect. On the test funnel with a few questions
made optional, and a choice whose option is "Нет" and a free-text question added."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.engine.refusals import is_refusal
from bot.messages import Kind
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import Prospect, events_of, snapshot

MENU = ["Бесплатный аудит", "Гайд по настройке", "Чек-лист"]
PRICE = "Внедрение от 30 000 ₽."
ASK_PHONE = "Оставьте номер телефона"


@pytest.fixture
def optional_funnel(tmp_path: Path, sqlite_db: Database, clock: FakeClock) -> Funnel:
    """The test funnel whose audit asks: name (optional), phone, has_crm (optional, options
    "Да"/"Нет"), company_size (optional) and task (free text, required)."""
    folder = tmp_path / "funnel"
    shutil.copytree(FIXTURE_SCENARIO, folder)
    path = folder / "funnel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    questions = data["questions"]
    questions["name"]["optional"] = True
    questions["company_size"]["optional"] = True
    questions["has_crm"] = {
        "type": "choice",
        "optional": True,
        "text": "Уже работаете в CRM?",
        "options": [{"text": "Да"}, {"text": "Нет", "score": 5}],
    }
    questions["task"] = {"type": "text", "text": "Опишите задачу"}
    data["offers"]["audit"]["ask"] = ["name", "phone", "has_crm", "company_size", "task"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return Funnel(sqlite_db, ActiveScenario(load_scenario(folder)), clock)


async def at_the_phone(funnel: Funnel, *, name: str = "Анна") -> Prospect:
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.say(name)
    assert anna.texts() == ASK_PHONE
    return anna


# ---- the refusal words ----


@pytest.mark.parametrize(
    "text",
    [
        "не хочу давать телефон",
        "Не хочу!",
        "не буду",
        "не скажу",
        "нет",
        "Нет, спасибо",
        "пока нет",
        "пропустить",
        "отказываюсь",
        "без телефона",
        "а можно без телефона?",
        "я не хочу давать свой номер",
        "телефон не дам",
        "не хочу оставлять номер, извините",
        "не знаю",
    ],
)
def test_a_refusal_is_understood(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "не хочу платить много",
        "Нет CRM",
        "не хочу терять заявки из Excel",
        "нет, звоним с мобильных",
        "Олег",
        "сколько стоит?",
        "+7 999 123-45-67",
        "",
        "нет " + "совсем " * 12,  # a long message says something
    ],
)
def test_an_answer_or_a_question_is_no_refusal(text: str) -> None:
    assert not is_refusal(text)


# ---- a question to us ----


@pytest.mark.parametrize("asked", ["а сколько стоит?", "Привет! Какая цена?", "цена"])
async def test_a_question_at_the_phone_question_gets_the_faq_and_the_question_again(
    funnel: Funnel, sqlite_db: Database, asked: str
) -> None:
    anna = await at_the_phone(funnel)
    await anna.say(asked)
    assert [m.text for m in anna.last] == [PRICE, ASK_PHONE]
    assert anna.last[0].actions == ["o:audit"]  # the FAQ entry's own buttons
    assert anna.last[1].contact_request == "Отправить номер"
    assert anna.last[1].actions == ["menu"]
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting == {"question": "phone", "offer": "audit"}
    assert state.events[-1] == "faq_answered"
    [answered] = await events_of(sqlite_db, state.lead_id, "faq_answered")
    assert answered == {"match": "сколько стоит", "question": "phone"}
    await anna.say("+7 999 123-45-67")  # and the offer goes on
    assert anna.texts() == "Сколько сотрудников?"


async def test_a_text_question_takes_a_question_to_us_only_when_it_asks(
    optional_funnel: Funnel, sqlite_db: Database
) -> None:
    anna = await at_the_phone(optional_funnel)
    await anna.say("+79991234567")
    await anna.press("Да")
    await anna.press("до 10")
    assert anna.texts() == "Опишите задачу"
    await anna.say("А какая цена?")  # a question mark and an FAQ match: a question to us
    assert [m.text for m in anna.last] == [PRICE, "Опишите задачу"]
    assert "task" not in (await snapshot(sqlite_db, "1001")).answers
    await anna.say("Хотим понять цену внедрения для отдела продаж")  # no "?": the answer
    assert anna.texts() == "Спасибо, Анна! Менеджер позвонит."
    answers = (await snapshot(sqlite_db, "1001")).answers
    assert answers["task"] == "Хотим понять цену внедрения для отдела продаж"


# ---- refusals ----


async def test_refusing_the_phone_explains_why_and_leaves_the_question(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = await at_the_phone(funnel)
    await anna.say("не хочу давать телефон")
    [answer] = anna.last
    assert answer.text.startswith("Понимаем. Телефон нужен, чтобы специалист связался с вами")
    assert anna.labels() == [*MENU, "Сайт"]
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting is None
    assert state.events[-1] == "question_refused"
    [refused] = await events_of(sqlite_db, state.lead_id, "question_refused")
    assert refused == {"question": "phone", "offer": "audit"}
    assert "phone" not in state.answers

    await anna.press("Гайд по настройке")  # the start buttons under the answer work
    assert anna.texts() == "Напишите e-mail"
    await anna.press("В меню")
    await anna.say("а сколько стоит?")  # free text again, not "a typo in the number"
    assert anna.texts() == PRICE
    await anna.start()
    assert anna.labels() == [*MENU, "Сайт"]
    await anna.press("Бесплатный аудит")  # and the audit asks the phone again
    assert anna.last[-1].text == ASK_PHONE


async def test_refusing_a_required_e_mail_says_what_it_is_for(funnel: Funnel) -> None:
    anna = Prospect(funnel)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.say("без почты")
    assert anna.texts().startswith("Понимаем. E-mail нужен, чтобы прислать материалы")


async def test_refusing_an_optional_question_goes_on_to_the_next_and_never_back(
    optional_funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(optional_funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    assert anna.labels() == ["Пропустить", "В меню"]  # the name is optional here
    await anna.say("не скажу")
    assert [m.text for m in anna.last] == ["Хорошо, пропустим этот вопрос.", ASK_PHONE]
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting == {"question": "phone", "offer": "audit", "skipped": ["name"]}
    [skipped] = await events_of(sqlite_db, state.lead_id, "question_skipped")
    assert skipped == {"question": "name", "offer": "audit"}

    await anna.say("+79991234567")  # an answer keeps the skip: the name is not asked again
    assert anna.texts() == "Уже работаете в CRM?"
    await anna.say("нет")  # an option's text wins over the refusal
    assert anna.texts() == "Сколько сотрудников?"
    await anna.say("не хочу отвечать")
    assert [m.text for m in anna.last] == ["Хорошо, пропустим этот вопрос.", "Опишите задачу"]
    await anna.say("Перенести базу из Excel")
    assert anna.texts() == "Спасибо, Анна! Менеджер позвонит."  # {name}: the first name

    state = await snapshot(sqlite_db, "1001")
    assert state.answers == {
        "phone": "+79991234567",
        "has_crm": "Нет",
        "task": "Перенести базу из Excel",
    }
    assert state.awaiting is None
    assert state.events.count("question_skipped") == 2
    assert "magnet_delivered" in state.events


async def test_the_skip_button_and_its_typed_label(
    optional_funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(optional_funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.press("Пропустить")
    assert [m.text for m in anna.last] == ["Хорошо, пропустим этот вопрос.", ASK_PHONE]
    assert anna.labels() == ["В меню"]  # the phone is required: no skip
    await anna.share("79991234567")
    assert anna.labels() == ["Да", "Нет", "Пропустить", "В меню"]
    assert [b.text for b in anna.last[0].buttons[-1]] == ["Пропустить", "В меню"]  # one row
    await anna.say(" пропустить ")  # the label typed, as Telegram's keyboard sends it
    assert anna.texts() == "Хорошо, пропустим этот вопрос.\nСколько сотрудников?"
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting == {
        "question": "company_size",
        "offer": "audit",
        "skipped": ["has_crm", "name"],
    }


@pytest.mark.parametrize(
    "payload",
    ["skip:phone", "skip:company_size", "skip:", "skip:nosuch", "skip:phone:x", "a:phone:skip"],
)
async def test_a_forged_or_stale_skip_skips_nothing_and_asks_again(
    funnel: Funnel, sqlite_db: Database, payload: str
) -> None:
    anna = await at_the_phone(funnel)
    await anna.send(Kind.BUTTON, payload=payload)
    assert [m.text for m in anna.last] == [
        "Эта кнопка уже устарела. Вернёмся к вопросу:",
        ASK_PHONE,
    ]
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting == {"question": "phone", "offer": "audit"}
    assert "question_skipped" not in state.events


async def test_a_skip_with_no_question_open_gets_todays_stale_menu(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    await anna.send(Kind.BUTTON, payload="skip:company_size")
    assert anna.texts() == "Эта кнопка уже устарела. Вот актуальное меню:"
    assert anna.labels() == [*MENU, "Сайт"]


# ---- the menu button and stale buttons ----


@pytest.mark.parametrize("how", ["press", "type"])
async def test_the_menu_button_leaves_the_phone_question(
    funnel: Funnel, sqlite_db: Database, how: str
) -> None:
    anna = await at_the_phone(funnel)
    if how == "press":
        await anna.press("В меню")
    else:
        await anna.say("в меню")
    assert anna.texts() == "Привет, Анна! Выберите:"
    assert (await snapshot(sqlite_db, "1001")).awaiting is None


async def test_a_stale_button_mid_question_asks_the_question_again(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = await at_the_phone(funnel)
    await anna.send(Kind.BUTTON, payload="c:y")  # the consent, pressed once more
    assert anna.texts() == f"Эта кнопка уже устарела. Вернёмся к вопросу:\n{ASK_PHONE}"
    assert anna.last[1].contact_request == "Отправить номер"
    assert (await snapshot(sqlite_db, "1001")).awaiting == {"question": "phone", "offer": "audit"}


async def test_a_stale_button_while_consent_is_asked_asks_it_again(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.send(Kind.BUTTON, payload="c:y")  # pressed twice: the first moved on
    assert anna.texts() == (
        "Эта кнопка уже устарела. Вернёмся к вопросу:\nПрисылать полезные материалы?"
    )
    assert (await snapshot(sqlite_db, "1001")).awaiting == {
        "consent": "marketing",
        "offer": "audit",
    }


# ---- a question a sequence step asked ----


async def test_refusing_a_step_question_lets_it_go(funnel: Funnel, sqlite_db: Database) -> None:
    anna = Prospect(funnel)
    await anna.start()
    async with sqlite_db.unit_of_work() as uow:  # a chain's step asked the NPS question
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        found[0].awaiting = {"question": "nps", "sequence": "guide_warmup", "offer": None}
        await uow.commit()
    await anna.say("сколько стоит?")
    assert [m.text for m in anna.last] == [PRICE, "Оцените от 0 до 10"]
    assert "menu" not in anna.last[1].actions  # a step's question holds nothing up
    await anna.say("не хочу")
    assert anna.texts() == "Хорошо, пропустим этот вопрос."
    assert anna.labels() == ["В меню"]
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting is None
    assert state.answers == {}
    assert state.events[-1] == "question_skipped"
    [skipped] = await events_of(sqlite_db, state.lead_id, "question_skipped")
    assert skipped == {"question": "nps", "sequence": "guide_warmup"}
