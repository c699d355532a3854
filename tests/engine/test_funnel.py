"""The funnel engine on the test funnel (tests/fixtures/funnel) and a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.messages import Incoming, Kind
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import Prospect, snapshot

MENU = ["Бесплатный аудит", "Гайд по настройке", "Чек-лист"]


async def test_start_shows_the_menu_with_the_name_and_records_the_source(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("src_vkads")
    assert anna.texts() == "Привет, Анна! Выберите:"
    assert anna.labels() == [*MENU, "Сайт"]
    state = await snapshot(sqlite_db, "1001")
    assert (state.stage, state.source, state.events) == ("new", "vkads", ["start"])


async def test_first_source_is_kept_and_later_ones_only_recorded(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("src_first")
    await anna.start("src_second")
    assert (await snapshot(sqlite_db, "1001")).source == "first"


async def test_audit_walk_asks_consent_questions_then_delivers_and_scores(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    await anna.press("Бесплатный аудит")
    assert anna.last[0].text == "Бесплатный аудит\n\nРазберём ваши процессы за час."
    assert anna.last[1].text.startswith("Нужно согласие на обработку данных: https://")
    state = await snapshot(sqlite_db, "1001")
    assert state.stage == "engaged"
    assert state.answers == {}
    assert state.contacts == set()

    await anna.press("Даю согласие")
    assert anna.texts() == "Присылать полезные материалы?"
    await anna.press("Да, присылайте")
    assert anna.texts() == "Как к вам обращаться?"
    await anna.say("Анна Петрова")
    assert anna.texts() == "Оставьте номер телефона"
    assert anna.last[0].contact_request == "Отправить номер"
    await anna.say("8 (999) 123-45-67")
    assert anna.texts() == "Сколько сотрудников?"
    await anna.press("больше 50")
    assert anna.texts() == "Спасибо, Анна Петрова! Менеджер позвонит."

    state = await snapshot(sqlite_db, "1001")
    assert state.answers == {
        "name": "Анна Петрова",
        "phone": "+79991234567",
        "company_size": "больше 50",
    }
    assert state.contacts == {("phone", "+79991234567", False)}
    assert state.consents == {"personal_data", "marketing"}
    # 30 (option) + 20 (tag enterprise) + 40 (then.score) + 5 (contact_shared event)
    assert state.score == 95
    assert state.tags == {"enterprise", "wants_audit"}
    assert state.sequences == {"audit_followup": "active"}
    assert state.stages == ["engaged", "contact", "warming", "qualified"]
    assert state.stage == "qualified"
    assert state.awaiting is None
    assert state.events == [
        "start",
        "offer_taken",
        "consent_given",
        "marketing_consent_given",
        "answered",
        "answered",
        "contact_shared",
        "answered",
        "magnet_delivered",
        "sequence_started",
        "qualified",
    ]


async def test_known_answers_are_skipped_on_the_next_offer(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    await anna.press("Бесплатный аудит")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.say("Анна")
    await anna.share("79991234567")
    await anna.press("до 10")
    await anna.start("o_guide")  # consent is not asked again, only the missing e-mail
    assert anna.texts() == "Гайд по настройке\nНапишите e-mail"
    await anna.say("  Anna@Example.COM ")
    assert anna.last[0].text == "Ваш гайд, Анна."
    assert anna.last[0].file is not None
    assert Path(anna.last[0].file.path or "").name == "guide.pdf"
    state = await snapshot(sqlite_db, "1001")
    assert ("email", "Anna@example.com", False) in state.contacts
    assert ("phone", "+79991234567", True) in state.contacts  # shared, so verified
    assert state.consents == {"personal_data"}  # advertising declined, and not asked again
    assert state.events.count("marketing_consent_declined") == 1


async def test_a_deep_link_names_the_offer_it_opens(funnel: Funnel) -> None:
    anna = Prospect(funnel)
    await anna.start("src_site-o_guide")
    assert [m.text for m in anna.last][:1] == ["Гайд по настройке"]


async def test_offer_without_questions_is_delivered_without_consent(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    await anna.press("Чек-лист")
    assert anna.texts() == "Держите чек-лист: https://example.com/checklist"
    assert (await snapshot(sqlite_db, "1001")).consents == set()


async def test_declined_consent_stores_nothing_and_shows_the_menu(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_guide")
    await anna.press("Не сейчас")
    assert anna.last[0].text.startswith("Понимаем. Без согласия")
    assert anna.labels() == [*MENU, "Сайт"]
    await anna.say("anna@example.com")  # not an answer now: treated as a free question
    state = await snapshot(sqlite_db, "1001")
    assert state.contacts == set()
    assert state.answers == {}
    assert "consent_declined" in state.events


@pytest.mark.parametrize(
    ("wrong", "reply"),
    [
        ("12345", "Не получилось разобрать номер."),
        ("+7 999", "Не получилось разобрать номер."),
        ("позвоните мне", "Не получилось разобрать номер."),
        ("x" * 5000, "Сообщение слишком длинное."),
    ],
)
async def test_a_wrong_phone_gets_a_clear_reply_and_the_question_again(
    funnel: Funnel, sqlite_db: Database, wrong: str, reply: str
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна")
    await anna.say(wrong)
    assert anna.last[0].text.startswith(reply)
    assert anna.last[-1].text == "Оставьте номер телефона"
    state = await snapshot(sqlite_db, "1001")
    assert state.awaiting == {"question": "phone", "offer": "audit"}
    assert "phone" not in state.answers


async def test_a_sticker_where_text_is_expected_repeats_the_question(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.send(Kind.UNSUPPORTED)
    assert [m.text for m in anna.last] == [
        "Я понимаю только текст и кнопки. Ответьте, пожалуйста, текстом.",
        "Напишите e-mail",
    ]
    await anna.say("not-an-email")
    assert anna.last[0].text.startswith("Похоже, в адресе опечатка.")
    assert (await snapshot(sqlite_db, "1001")).awaiting == {"question": "email", "offer": "guide"}


async def test_someone_elses_contact_is_refused(funnel: Funnel, sqlite_db: Database) -> None:
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна")
    await anna.share("+79990000000", own=False)
    assert anna.last[0].text.startswith("Можно отправить только свой номер.")
    assert (await snapshot(sqlite_db, "1001")).contacts == set()


async def test_typed_choice_is_accepted_case_insensitively_and_other_text_is_not(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна")
    await anna.say("+7 999 123 45 67")
    await anna.say("много")
    assert anna.last[0].text == "Выберите, пожалуйста, один из вариантов кнопкой ниже."
    assert anna.labels() == ["до 10", "10–50", "больше 50", "В меню"]  # and the way out
    await anna.say("ДО 10")
    assert (await snapshot(sqlite_db, "1001")).answers["company_size"] == "до 10"


@pytest.mark.parametrize(
    "payload",
    ["o:nosuch", "a:company_size:1", "a:company_size:99", "c:y", "m:y", "zzz", "x" * 300, ""],
)
async def test_stale_or_forged_buttons_get_the_menu_and_change_nothing(
    funnel: Funnel, sqlite_db: Database, payload: str
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    await anna.send(Kind.BUTTON, payload=payload)
    assert anna.last[0].text == "Эта кнопка уже устарела. Вот актуальное меню:"
    assert anna.labels() == [*MENU, "Сайт"]
    state = await snapshot(sqlite_db, "1001")
    assert state.consents == set()
    assert state.answers == {}
    assert state.score == 0


async def test_an_old_answer_button_after_the_question_moved_on_is_stale(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна")
    await anna.say("+79991234567")
    choice = anna.last[0].buttons[2][0].action
    await anna.press("10–50")
    await anna.send(Kind.BUTTON, payload=choice)  # the "больше 50" button, pressed late
    assert anna.last[0].text.startswith("Эта кнопка уже устарела.")
    assert (await snapshot(sqlite_db, "1001")).answers["company_size"] == "10–50"


async def test_faq_answers_word_forms_and_unknown_text_is_recorded(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    for question in ("Какая цена?", "ЦЕНЫ", "а сколько стоит внедрение", "Стоимость?"):
        await anna.say(question)
        assert anna.texts() == "Внедрение от 30 000 ₽.", question
    await anna.say("Вы работаете в выходные?")
    assert anna.texts() == "Не совсем поняли вопрос. Выберите, что вас интересует:"
    state = await snapshot(sqlite_db, "1001")
    assert state.events.count("faq_answered") == 4
    assert state.events[-1] == "unmatched_text"


async def test_stop_withdraws_advertising_consent_and_stops_sequences(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("anna@example.com")
    await anna.send(Kind.STOP)
    assert anna.last[0].text.startswith("Готово: больше не будем присылать рассылки.")
    state = await snapshot(sqlite_db, "1001")
    assert state.consents == {"personal_data"}
    assert state.sequences == {"guide_warmup": "stopped"}
    assert (state.stage, state.funnel_stage) == ("unsubscribed", "warming")
    await anna.start()  # the bot still works for an unsubscribed lead
    assert anna.labels() == [*MENU, "Сайт"]


async def test_a_chain_started_twice_runs_once(funnel: Funnel, sqlite_db: Database) -> None:
    anna = Prospect(funnel)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("anna@example.com")
    await anna.start("o_guide")  # everything is known: delivered again at once
    assert [m.text for m in anna.last] == ["Гайд по настройке", "Ваш гайд, Анна."]
    state = await snapshot(sqlite_db, "1001")
    assert state.events.count("magnet_delivered") == 2
    assert state.events.count("sequence_started") == 1
    assert state.score == 15  # then.score 10 counted once, plus 5 for the e-mail


async def test_a_malformed_deep_link_is_ignored_but_kept(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await anna.start("bad payload with spaces!")
    assert anna.labels() == [*MENU, "Сайт"]
    state = await snapshot(sqlite_db, "1001")
    assert state.source is None
    assert state.events == ["start"]


async def test_two_first_messages_at_once_make_one_lead(db: Database, clock: FakeClock) -> None:
    # On PostgreSQL the three transactions really run at once on connections of their own:
    # two of them meet the first one's new identity as a duplicate key and are run again.
    funnel = Funnel(db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
    anna = Prospect(funnel)
    replies = await asyncio.gather(anna.start("src_a"), anna.say("цена"), anna.start())
    assert all(r and "сломалось" not in r[0].text for r in replies)
    async with db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        assert len(await uow.leads.identities(found[0].id)) == 1


async def test_a_failure_rolls_back_and_apologises(
    sqlite_db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    funnel = Funnel(sqlite_db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
    anna = Prospect(funnel)
    await anna.start()

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    funnel_turn_offer = "bot.engine.offers.resume"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(funnel_turn_offer, broken)
        await anna.press("Бесплатный аудит")
    assert anna.texts() == "Простите, у нас что-то сломалось. Попробуйте ещё раз через минуту."
    assert "failed to handle button event of telegram:1001" in caplog.text
    state = await snapshot(sqlite_db, "1001")
    assert state.stage == "new"
    assert "offer_taken" not in state.events


async def test_the_same_walk_works_on_postgresql_and_sqlite(
    db: Database, clock: FakeClock
) -> None:
    funnel = Funnel(db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
    anna = Prospect(funnel, "42", channel="vk")
    await anna.start("src_site-o_guide")
    await anna.press("Даю согласие")
    await anna.press("Нет, спасибо")
    await anna.say("anna@example.com")
    assert anna.last[0].text == "Ваш гайд, Анна."
    state = await snapshot(db, "42", channel="vk")
    assert (state.stage, state.source, state.score) == ("warming", "site", 15)  # 10 + e-mail 5


async def test_a_choice_can_set_the_leads_time_zone(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "sc"
    shutil.copytree(FIXTURE_SCENARIO, folder)
    text = (folder / "funnel.yaml").read_text(encoding="utf-8")
    text = text.replace(
        '      - {text: "до 10", score: 0}',
        '      - {text: "до 10", score: 0, zone: Asia/Novosibirsk}',
    )
    (folder / "funnel.yaml").write_text(text, encoding="utf-8")
    funnel = Funnel(sqlite_db, ActiveScenario(load_scenario(folder)), clock)
    anna = Prospect(funnel)
    await anna.start("o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна")
    await anna.say("+79991234567")
    await anna.press("до 10")
    async with sqlite_db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        assert found[0].timezone == "Asia/Novosibirsk"


async def test_an_update_delivered_twice_at_once_is_handled_once(
    db: Database, clock: FakeClock
) -> None:
    """Telegram redelivers an update whose answer it did not get, possibly while the first
    delivery is still being handled: the second waits for the first and is a repeat."""
    funnel = Funnel(db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
    update = Incoming(
        channel="telegram",
        external_id="1001",
        kind=Kind.START,
        first_name="Анна",
        payload="src_ads",
        event_key="telegram:update:77",
    )
    replies = await asyncio.gather(funnel.handle(update), funnel.handle(update))
    assert sorted(reply.duplicate for reply in replies) == [False, True]
    assert [m.text for r in replies for m in r.messages] == ["Привет, Анна! Выберите:"]
    assert (await snapshot(db, "1001")).events == ["start"]
    again = await funnel.handle(update)
    assert again.duplicate
    assert again.messages == []


async def test_digits_that_are_not_ascii_are_a_wrong_answer_not_a_failure(
    db: Database, clock: FakeClock
) -> None:
    """ "²" and "٣" pass str.isdigit(); int() refuses the first and reads the second as 3."""
    funnel = Funnel(db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
    anna = Prospect(funnel)
    await anna.start()
    async with db.unit_of_work() as uow:  # a chain's step asked the NPS question
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        found[0].awaiting = {"question": "nps", "sequence": "guide_warmup", "offer": None}
        await uow.commit()

    for typed in ("²", "٣", "1²"):
        await anna.say(typed)
        assert anna.last[0].text == "Выберите число от 0 до 10 кнопкой или напишите его цифрой."
        assert anna.last[1].text == "Оцените от 0 до 10"
    await anna.send(Kind.BUTTON, payload="a:nps:²")  # forged: no such button was sent
    assert anna.texts() == "Эта кнопка уже устарела. Вернёмся к вопросу:\nОцените от 0 до 10"
    state = await snapshot(db, "1001")
    assert state.answers == {}
    assert state.awaiting == {"question": "nps", "sequence": "guide_warmup", "offer": None}


async def test_texts_no_database_stores_are_cleaned_not_refused(
    db: Database, clock: FakeClock
) -> None:
    """U+0000 (PostgreSQL refuses it) and a lone surrogate (not UTF-8: SQLite refuses it) in
    a name and a message: the prospect gets the answer, not the apology."""
    funnel = Funnel(db, ActiveScenario(load_scenario(FIXTURE_SCENARIO)), clock)
    anna = Prospect(funnel, first_name="Ан\x00на\ud800")
    await anna.start()
    assert anna.texts() == "Привет, Анна\ufffd! Выберите:"
    await anna.say("сколько\x00 стоит?\udfff")
    assert anna.last[0].text == "Внедрение от 30 000 ₽."
    state = await snapshot(db, "1001")
    assert state.events == ["start", "faq_answered"]
