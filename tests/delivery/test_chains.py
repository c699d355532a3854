"""What starts and stops a chain, `if:` steps and step questions, A/B variants, edits."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from bot import sequences
from bot.clock import FakeClock
from bot.consent import MARKETING
from bot.messages import Kind
from bot.scenario.active import ActiveScenario
from bot.scenario.model import label_digest
from storage.database import Database
from tests.delivery.harness import START, Bench, load, scenario_folder, utc
from tests.prospect import snapshot

CHAINS = """
sequences:
  warmup:
    stop_on: [qualified, purchase]
    steps:
      - id: check_in
        after: 1h
        text: "{name}, получилось открыть гайд?"
        buttons:
          - {text: "Купить внедрение", event: purchase}
          - {text: "Читать кейс", url: "https://example.com/case"}
      - {id: pricing, after: 1d, at: "11:00", text: "Сколько стоит внедрение под ключ"}
      - {id: case, after: 2d, text: "Кейс клиента: CRM за вечер"}
  upsell_telephony:
    start_on: {event: purchase, where: {product: crm_license}}
    steps:
      - {id: telephony, after: 3d, text: "Подключим телефонию к CRM за один день."}
  after_sale:
    start_on: {stage: customer}
    steps:
      - {id: thanks, after: 1d, text: "Спасибо, что выбрали нас!"}
"""
WARMUP_TEXTS = [
    "Анна, получилось открыть гайд?",
    "Сколько стоит внедрение под ключ",
    "Кейс клиента: CRM за вечер",
]


def chains(tmp_path: Path, extra: str = CHAINS, name: str = "scenario") -> Path:
    return scenario_folder(tmp_path, extra, guide_starts="warmup", name=name)


# ---- stop_on and start_on ----


async def test_a_purchase_pressed_in_a_step_stops_the_chain_and_its_queued_step(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    await bench.take_guide()
    await bench.tick_at(utc(11, 23, 10))
    [check_in] = bench.transport.sent
    [pressed] = check_in.message.actions
    assert pressed == f"e:purchase:{label_digest('Купить внедрение')}"
    assert await bench.pending() == [("pricing", utc(11, 24, 8))]

    reply = await bench.press("1001", pressed)
    assert [m.text for m in reply] == ["Отметили, спасибо!"]
    state = await snapshot(sqlite_db, "1001")
    assert state.sequences == {"warmup": "stopped"}  # no product: no telephony upsell
    assert "purchase" in state.events
    assert [(r.step, r.status) for r in await bench.rows()] == [
        ("check_in", "sent"),
        ("pricing", "cancelled"),
    ]
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts() == WARMUP_TEXTS[:1]


async def test_reaching_a_stop_stage_stops_the_chain(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    await bench.take_guide()
    # `qualified` comes with the handoff release; the stage is fed as the engine will feed it.
    await bench.react("1001", stages={"qualified"})
    assert await bench.runs() == {"warmup": "stopped"}
    assert [(r.step, r.status) for r in await bench.rows()] == [("check_in", "cancelled")]
    await bench.run_until(utc(12, 31))
    assert bench.transport.sent == []


async def test_stop_command_cancels_the_queued_step(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    anna = await bench.take_guide()
    await bench.tick_at(utc(11, 23, 10))
    await anna.send(Kind.STOP)
    assert anna.texts() == (
        "Готово: больше не будем присылать рассылки. Бот по-прежнему к вашим услугам."
    )
    state = await snapshot(sqlite_db, "1001")
    assert (state.stage, state.sequences) == ("unsubscribed", {"warmup": "stopped"})
    assert MARKETING not in state.consents
    assert [(r.step, r.status) for r in await bench.rows()] == [
        ("check_in", "sent"),
        ("pricing", "cancelled"),
    ]
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts() == WARMUP_TEXTS[:1]


async def test_a_chain_started_twice_runs_once(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    anna = await bench.take_guide()
    await bench.tick_at(utc(11, 23, 10))
    await anna.start("o_guide")  # everything is known: the guide again, the chain not
    assert anna.texts() == "Гайд по настройке\nВаш гайд, Анна."
    for _ in range(2):
        await bench.react("1001", stages={"customer"})
    assert await bench.runs() == {"warmup": "active", "after_sale": "active"}
    await bench.run_until(utc(12, 31))
    assert sorted(bench.transport.texts()) == sorted([*WARMUP_TEXTS, "Спасибо, что выбрали нас!"])
    assert (await snapshot(sqlite_db, "1001")).events.count("sequence_started") == 1


async def test_a_purchase_starts_the_upsell_only_for_the_product_it_names(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    await bench.take_guide("1001")
    await bench.take_guide("2002")
    assert await bench.react("1001", [("purchase", {"product": "crm_license"})]) == [
        "upsell_telephony"
    ]
    assert await bench.react("2002", [("purchase", {"product": "telephony"})]) == []
    # a purchase also ends the warm-up (stop_on: purchase)
    assert await bench.runs("1001") == {"warmup": "stopped", "upsell_telephony": "active"}
    assert await bench.runs("2002") == {"warmup": "stopped"}
    assert await bench.pending("1001") == [("telephony", START + timedelta(days=3))]
    assert await bench.pending("2002") == []

    await bench.run_until(utc(12, 31))
    assert bench.transport.texts("1001") == ["Подключим телефонию к CRM за один день."]
    assert bench.transport.times("1001") == [utc(11, 26, 9)]
    assert bench.transport.texts("2002") == []


async def test_a_trigger_with_if_starts_the_chain_only_when_the_rule_holds(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """`start_on: {event: purchase, if: ...}`: the first purchase (5,000) is not enough, the
    second makes two purchases and 11,000 in all, and the chain starts then, with the
    purchase the same event recorded counted."""
    vip = """
        vip:
          start_on: {event: purchase, if: {purchases: ">= 2", revenue: ">= 10000"}}
          steps:
            - {id: welcome_vip, after: 1h, text: "Вы наш постоянный клиент: вот подарок."}
    """
    extra = CHAINS + "  " + vip.strip().replace("\n        ", "\n  ") + "\n"
    bench = Bench(db, load(chains(tmp_path, extra)), clock)
    await bench.take_guide()
    assert await buy(bench, 5000) == []
    assert await buy(bench, 6000) == ["vip"]
    assert await buy(bench, 7000) == []  # a chain runs once
    await bench.run_until(utc(11, 23, 12))
    assert "Вы наш постоянный клиент: вот подарок." in bench.transport.texts()


async def buy(bench: Bench, amount: int) -> list[str]:
    """A purchase recorded and reacted to in one transaction, as the engine does."""
    lead_id = await bench.lead_id("1001")
    async with bench.db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id, lock=True)
        assert lead is not None
        payload = {"amount": amount}
        uow.events.add(lead.id, "purchase", now=bench.clock.now(), payload=payload)
        scenario = bench.scenarios.current.scenario
        started = await sequences.react(
            uow, scenario, lead, bench.clock.now(), [("purchase", payload)], set()
        )
        await uow.commit()
    return started


async def test_reaching_a_stage_starts_the_chain_that_waits_for_it(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    welcome = """
        welcome:
          start_on: {stage: contact}
          steps:
            - {id: hello, after: 30m, text: "Рады знакомству! Пишем раз в неделю."}
    """
    extra = CHAINS + "  " + welcome.strip().replace("\n        ", "\n  ") + "\n"
    bench = Bench(sqlite_db, load(chains(tmp_path, extra)), clock)
    await bench.prospect().start("o_quick")  # no contact left: the chain does not start
    assert await bench.runs() == {}
    await bench.take_guide()  # the e-mail makes the lead a contact
    state = await snapshot(sqlite_db, "1001")
    assert state.sequences == {"warmup": "active", "welcome": "active"}
    assert state.events.count("sequence_started") == 2
    assert await bench.react("1001", stages={"customer"}) == ["after_sale"]

    await bench.run_until(utc(11, 25))
    assert bench.transport.texts() == [
        "Рады знакомству! Пишем раз в неделю.",
        "Анна, получилось открыть гайд?",
        "Сколько стоит внедрение под ключ",
        "Спасибо, что выбрали нас!",
    ]
    assert bench.transport.times() == [
        utc(11, 23, 9, 30),
        utc(11, 23, 10),
        utc(11, 24, 8),
        utc(11, 24, 9),
    ]


# ---- if: steps and step questions ----

RULES = """
questions:
  role:
    type: choice
    text: "Какая у вас роль?"
    options:
      - {text: "Принимаю решение", score: 20, tag: decision_maker}
      - {text: "Подбираю варианты", score: 10, tag: champion}
offers:
  demo:
    title: "Демо"
    ask: [role]
    deliver: {text: "Записали на демо."}
    then: {start: committee}
  feedback:
    title: "Отзыв"
    deliver: {text: "Спасибо, что вы с нами."}
    then: {start: after_sale}
sequences:
  committee:
    steps:
      - {id: intro, after: 1h, text: "Как прошло знакомство с CRM?"}
      - id: boss
        after: 1d
        if: {tag: decision_maker}
        text: "Расчёт окупаемости для руководителя."
      - {id: outro, after: 1d, text: "Мы на связи."}
  after_sale:
    steps:
      - {id: nps, after: 7d, text: "Как вам внедрение?", ask: nps}
      - id: invite
        after: 1d
        if: {answer: {nps: ">= 9"}}
        text: "Спасибо! Поделитесь ссылкой с коллегами."
      - {id: bye, after: 1d, text: "Хорошего дня!"}
"""


async def test_an_if_step_goes_only_to_leads_it_fits_and_the_chain_goes_on(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, RULES)), clock)
    boss = await bench.take_offer("demo", "1001", answers=("Принимаю решение",))
    helper = await bench.take_offer("demo", "2002", answers=("Подбираю варианты",))
    assert boss.texts() == helper.texts() == "Записали на демо."

    await bench.run_until(utc(11, 30))
    assert bench.transport.texts("1001") == [
        "Как прошло знакомство с CRM?",
        "Расчёт окупаемости для руководителя.",
        "Мы на связи.",
    ]
    assert bench.transport.texts("2002") == ["Как прошло знакомство с CRM?", "Мы на связи."]
    # skipped when it fell due, adding no time: the next step counts from the last one sent
    assert bench.transport.times("2002") == [utc(11, 23, 10), utc(11, 24, 10)]
    assert [(r.step, r.status, r.last_error) for r in await bench.rows("2002")] == [
        ("intro", "sent", None),
        ("boss", "skipped", "if: false"),
        ("outro", "sent", None),
    ]


async def test_a_step_question_is_answered_and_only_promoters_get_the_invite(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, RULES)), clock)
    await bench.take_offer("feedback", "1001")
    await bench.take_offer("feedback", "2002")
    await bench.run_until(utc(11, 30, 9))

    for lead in ("1001", "2002"):
        text, question = (s.message for s in bench.transport.sent if s.external_id == lead)
        assert text.text == "Как вам внедрение?"
        assert question.text == "Оцените от 0 до 10"
        assert question.actions == [f"a:nps:{n}" for n in range(11)]
        assert (await snapshot(sqlite_db, lead)).awaiting == {
            "question": "nps",
            "sequence": "after_sale",
            "step": "nps",
        }
    assert [m.text for m in await bench.press("1001", "a:nps:10")] == ["Спасибо за ответ!"]
    assert [m.text for m in await bench.press("2002", "a:nps:6")] == ["Спасибо за ответ!"]
    promoter = await snapshot(sqlite_db, "1001")
    assert (promoter.answers, promoter.awaiting) == ({"nps": "10"}, None)
    assert (await snapshot(sqlite_db, "2002")).answers == {"nps": "6"}

    await bench.run_until(utc(12, 31))
    assert bench.transport.texts("1001") == [
        "Как вам внедрение?",
        "Оцените от 0 до 10",
        "Спасибо! Поделитесь ссылкой с коллегами.",
        "Хорошего дня!",
    ]
    assert bench.transport.texts("2002") == [
        "Как вам внедрение?",
        "Оцените от 0 до 10",
        "Хорошего дня!",
    ]


async def test_a_step_and_its_question_both_reach_a_platform_that_dedups_by_key(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """VK drops a second message with a `random_id` it has seen: each message of a step
    needs a key of its own, stable across retries."""
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, RULES)), clock)
    bench.transport.dedup = True
    await bench.take_offer("feedback", "1001")
    bench.transport.fail_next(RuntimeError("connection reset"))  # a retry resends both
    await bench.run_until(utc(11, 30, 9, 1))
    assert bench.transport.texts() == ["Как вам внедрение?", "Оцените от 0 до 10"]
    keys = [s.key for s in bench.transport.attempts]
    assert len(keys) == 3
    assert keys[0] == keys[1] != keys[2]


# ---- A/B variants ----

VARIANTS = """
sequences:
  promo:
    steps:
      - id: offer
        after: 1h
        text: "Скидка 10% на внедрение до конца месяца."
        variants:
          b: "Только для вас: 10% на внедрение."
"""
TEXTS = {"a": "Скидка 10% на внедрение до конца месяца.", "b": "Только для вас: 10% на внедрение."}


async def enrol(bench: Bench, count: int) -> list[str]:
    """`count` leads with advertising consent, each enrolled in the promo chain at START."""
    now = bench.clock.now()
    scenario = bench.scenarios.current.scenario
    external_ids = [str(5000 + n) for n in range(count)]
    async with bench.db.unit_of_work() as uow:
        for external_id in external_ids:
            lead, _ = await uow.leads.create(
                channel="telegram", external_id=external_id, now=now, first_name="Гость"
            )
            await uow.leads.give_consent(
                lead.id, MARKETING, text_version="v1", channel="telegram", now=now
            )
            assert await sequences.start(uow, scenario, lead, "promo", now) is not None
        await uow.commit()
    return external_ids


async def test_each_lead_gets_one_variant_and_both_variants_are_used(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(scenario_folder(tmp_path, VARIANTS)), clock)
    leads = await enrol(bench, 200)
    assert await bench.tick_at(utc(11, 23, 10)) == 200
    assert len(bench.transport.sent) == 200
    recorded: Counter[str] = Counter()
    for external_id in leads:
        [event] = await bench.events(external_id, "step_sent")
        assert event == {"sequence": "promo", "step": "offer", "variant": event["variant"]}
        assert bench.transport.texts(external_id) == [TEXTS[event["variant"]]]
        recorded[event["variant"]] += 1
    assert set(recorded) == {"a", "b"}
    assert 70 <= recorded["a"] <= 130, recorded


async def test_the_variant_of_a_lead_is_the_same_on_every_try_worker_and_restart(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    folder = scenario_folder(tmp_path, VARIANTS)
    bench = Bench(sqlite_db, load(folder), clock)
    leads = await enrol(bench, 6)
    bench.transport.fail_next(RuntimeError("connection reset"), times=12)
    await bench.tick_at(utc(11, 23, 10))  # w1: every send fails
    await bench.tick_at(utc(11, 23, 10, 0, 5), bench.new_worker("w2"))  # fails again
    # a restart: a new process loads the scenario anew and gets a new worker
    bench.scenarios = ActiveScenario(load(folder))
    await bench.tick_at(utc(11, 23, 10, 0, 15), bench.new_worker("w3"))
    assert len(bench.transport.sent) == 6
    seen: set[str] = set()
    for external_id in leads:
        tries = [s.text for s in bench.transport.attempts if s.external_id == external_id]
        assert len(tries) == 3
        assert len(set(tries)) == 1, tries
        [event] = await bench.events(external_id, "step_sent")
        assert tries[0] == TEXTS[event["variant"]]
        seen.add(event["variant"])
    assert seen == {"a", "b"}


# ---- scenario edits ----


async def test_an_edited_text_applies_to_the_step_not_yet_sent(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    await bench.take_guide()
    await bench.tick_at(utc(11, 23, 10))
    edited = CHAINS.replace("Сколько стоит внедрение под ключ", "Новые тарифы на внедрение")
    bench.scenarios.replace(load(chains(tmp_path, edited, name="edited")))
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts() == [
        "Анна, получилось открыть гайд?",
        "Новые тарифы на внедрение",
        "Кейс клиента: CRM за вечер",
    ]


async def test_a_removed_step_is_cancelled_and_the_step_now_in_its_place_follows(
    sqlite_db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    bench = Bench(sqlite_db, load(chains(tmp_path)), clock)
    await bench.take_guide()
    await bench.tick_at(utc(11, 23, 10))
    assert await bench.pending() == [("pricing", utc(11, 24, 8))]
    edited = CHAINS.replace(
        '{id: pricing, after: 1d, at: "11:00", text: "Сколько стоит внедрение под ключ"}',
        '{id: webinar, after: 1d, text: "Приходите на вебинар в четверг"}',
    )
    assert edited != CHAINS
    bench.scenarios.replace(load(chains(tmp_path, edited, name="edited")))

    await bench.tick_at(utc(11, 24, 8))  # the removed step falls due
    assert bench.transport.texts() == ["Анна, получилось открыть гайд?"]
    assert [(r.step, r.status, r.last_error) for r in await bench.rows()] == [
        ("check_in", "sent", None),
        ("pricing", "cancelled", "step removed from the scenario"),
        ("webinar", "pending", None),
    ]
    # counted from the last step sent, as the edited chain says (a step not sent adds no time)
    assert await bench.pending() == [("webinar", utc(11, 24, 10))]
    await bench.run_until(utc(12, 31))
    assert bench.transport.texts() == [
        "Анна, получилось открыть гайд?",
        "Приходите на вебинар в четверг",
        "Кейс клиента: CRM за вечер",
    ]
    assert bench.transport.times() == [utc(11, 23, 10), utc(11, 24, 10), utc(11, 26, 10)]
