"""Handing qualified leads to managers: the card, claims, deals, reminders, relayed answers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.crm import CrmLead
from bot.engine.funnel import Funnel
from bot.handoff import Manager, ManagerDesk, remind_unclaimed
from bot.messages import Button
from bot.outside import LeadRef, OutsideEvents
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import Routes
from storage.database import Database
from storage.models import Event, Handoff, ManagerMessage, OutboxRow
from tests.conftest import FIXTURE_SCENARIO
from tests.delivery.harness import RecordingTransport, fake_clock_worker
from tests.prospect import Prospect, snapshot

IVAN = Manager("telegram", "501", "Иван Петров")
OLGA = Manager("telegram", "502", "Ольга Смирнова")


class FakeManagersChat:
    """A managers' chat that remembers posts and keeps edited texts by reference."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, tuple[tuple[Button, ...], ...], bool]] = []
        self.texts: dict[str, str] = {}
        self.buttons: dict[str, list[str]] = {}

    async def post_to_managers(
        self,
        text: str,
        buttons: tuple[tuple[Button, ...], ...] = (),
        *,
        expect_reply: bool = False,
    ) -> str:
        reference = str(len(self.posts) + 1)
        self.posts.append((reference, text, buttons, expect_reply))
        self.texts[reference] = text
        self.buttons[reference] = [b.text for row in buttons for b in row]
        return reference

    async def edit_in_managers(
        self, reference: str, text: str, buttons: tuple[tuple[Button, ...], ...] = ()
    ) -> None:
        self.texts[reference] = text
        self.buttons[reference] = [b.text for row in buttons for b in row]

    def cards(self) -> list[str]:
        return [ref for ref, text, _, _ in self.posts if "🔥 Лид #" in text]


class FakeCrm:
    targets = ("webhook",)

    def __init__(self) -> None:
        self.exported: list[tuple[str, CrmLead, str]] = []

    async def export(self, target: str, lead: CrmLead, *, idempotency_key: str) -> str:
        self.exported.append((target, lead, idempotency_key))
        return "crm-1"


async def walk_to_qualified(anna: Prospect) -> None:
    """The audit by an ad's link, consent, name and a shared phone, then a big company: the
    audit tags wants_audit, a qualify rule, so a card and a CRM export are queued."""
    await anna.start("src_vkads-o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна Петрова")
    await anna.share("79991234567")
    await anna.press("больше 50")


class Desk:
    """The engine, the managers' desk and a worker on one database and fake clock."""

    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        scenarios = ActiveScenario(load_scenario(FIXTURE_SCENARIO))
        self.funnel = Funnel(
            db, scenarios, clock, routes=Routes(managers=("telegram",), crm=("webhook",))
        )
        self.chat = FakeManagersChat()
        self.crm = FakeCrm()
        self.transport = RecordingTransport(clock)
        self.desk = ManagerDesk(db, scenarios, clock, {"telegram": self.chat})
        self.worker = fake_clock_worker(
            self.funnel,
            {"telegram": self.transport},
            managers={"telegram": self.chat},
            crm=self.crm,
        )

    async def qualified_lead(self, user: str = "1001") -> int:
        await walk_to_qualified(Prospect(self.funnel, external_id=user))
        await self.worker.drain()
        return (await snapshot(self.db, user)).lead_id

    async def handoff(self, lead_id: int) -> SimpleNamespace:
        """The lead's handoff as it is stored now (a plain copy, readable after the session)."""
        async with self.db.unit_of_work() as uow:
            handoff = await uow.session.get(Handoff, lead_id)
            assert handoff is not None
            return SimpleNamespace(
                **{c.key: getattr(handoff, c.key) for c in Handoff.__table__.columns}
            )

    async def count(self, model: type, *conditions: object) -> int:
        async with self.db.unit_of_work() as uow:
            query = select(func.count()).select_from(model).where(*conditions)  # type: ignore[arg-type]
            return int((await uow.session.execute(query)).scalar_one())


@pytest.fixture
def bench(db: Database, clock: FakeClock) -> Desk:
    return Desk(db, clock)


async def test_a_qualified_lead_gets_one_card_and_one_crm_export(bench: Desk) -> None:
    lead_id = await bench.qualified_lead()
    [card] = bench.chat.cards()
    text = bench.chat.texts[card]
    assert text.startswith(f"🔥 Лид #{lead_id} — Анна Петрова")
    assert "📞 +79991234567" in text
    assert "Telegram: tg://user?id=1001" in text
    assert "Источник: vkads · Оффер: Бесплатный аудит" in text
    assert "Баллы: 95 · Стадия: qualified\nПочему: score 95 >= 60\n" in text
    assert "🟢 Ждёт менеджера" in text
    assert bench.chat.buttons[card] == ["✋ Взял", "🚫 Не наш клиент"]
    [(target, exported, key)] = bench.crm.exported
    assert (target, exported.lead_id, exported.phones, key) == (
        "webhook",
        lead_id,
        ("+79991234567",),
        f"crm:webhook:{lead_id}",
    )
    assert (await snapshot(bench.db, "1001")).stage == "qualified"
    # More interest later is no second handoff.
    await OutsideEvents(bench.funnel).record(LeadRef(lead_id=lead_id), "case_read")
    await bench.worker.drain()
    assert len(bench.chat.cards()) == 1
    assert len(bench.crm.exported) == 1
    assert await bench.count(Event, Event.name == "qualified") == 1


async def test_concurrent_events_qualify_a_lead_exactly_once(bench: Desk) -> None:
    guide = Prospect(bench.funnel, external_id="2002")
    await guide.start("o_guide")
    await guide.press("Даю согласие")
    await guide.press("Да, присылайте")
    await guide.say("boris@example.com")
    lead_id = (await snapshot(bench.db, "2002")).lead_id
    outside = OutsideEvents(bench.funnel)
    # case_read is worth 10: about six of these qualify (score >= 60), all twenty race.
    results = await asyncio.gather(
        *(outside.record(LeadRef(lead_id=lead_id), "case_read") for _ in range(20))
    )
    assert sum(r.qualified for r in results) == 1
    assert await bench.count(Handoff) == 1
    assert await bench.count(Event, Event.name == "qualified") == 1
    assert await bench.count(OutboxRow, OutboxRow.kind == "lead_card") == 1
    await bench.worker.drain()
    assert len(bench.chat.cards()) == 1


async def test_two_managers_pressing_claim_at_once_one_wins(bench: Desk) -> None:
    lead_id = await bench.qualified_lead()
    answers = await asyncio.gather(
        bench.desk.press(IVAN, f"h:claim:{lead_id}"), bench.desk.press(OLGA, f"h:claim:{lead_id}")
    )
    handoff = await bench.handoff(lead_id)
    winner = IVAN if handoff.manager_id == IVAN.key else OLGA
    loser = OLGA if winner is IVAN else IVAN
    assert sorted(answers) == sorted([f"Лид #{lead_id} ваш.", f"Лида уже взял {winner.name}."])
    assert handoff.status == "claimed"
    [card] = bench.chat.cards()
    assert f"🤝 Взял: {winner.name}" in bench.chat.texts[card]
    assert bench.chat.buttons[card] == ["✅ Сделка", "❌ Отказ"]
    assert (await snapshot(bench.db, "1001")).stage == "handed_off"
    # The other manager can neither claim it again nor close someone else's deal.
    assert await bench.desk.press(loser, f"h:won:{lead_id}") == f"Лидом занимается {winner.name}."
    assert await bench.count(Event, Event.name == "claimed") == 1


async def test_won_asks_the_amount_and_makes_a_customer(bench: Desk) -> None:
    lead_id = await bench.qualified_lead()
    await bench.desk.press(IVAN, f"h:claim:{lead_id}")
    answer = await bench.desk.press(IVAN, f"h:won:{lead_id}")
    assert answer == "Ответьте на сообщение в чате суммой сделки."
    ref, prompt, _, expect_reply = bench.chat.posts[-1]
    assert prompt.startswith(f"💰 Сумма сделки по лиду #{lead_id}?")
    assert expect_reply
    assert await bench.desk.reply(OLGA, ref, "m1", "100") == f"Лидом занимается {IVAN.name}."
    assert await bench.desk.reply(IVAN, ref, "m2", "много") == (
        "Не понял сумму. Ответьте на вопрос числом, например 150000."
    )
    assert await bench.desk.reply(IVAN, ref, "m3", "150 000,50 ₽") == (
        f"✅ Лид #{lead_id}: сделка на 150000.5."
    )
    state = await snapshot(bench.db, "1001")
    assert (state.stage, state.funnel_stage) == ("customer", "customer")
    async with bench.db.unit_of_work() as uow:
        [amount] = [
            e.payload["amount"] for e in await uow.events.for_lead(lead_id) if e.name == "purchase"
        ]
    assert amount == 150000.5
    [card] = bench.chat.cards()
    assert "✅ Сделка: 150000.5 (закрыл Иван Петров)" in bench.chat.texts[card]
    assert bench.chat.buttons[card] == []
    assert await bench.desk.press(IVAN, f"h:lost:{lead_id}") == f"Лид #{lead_id} уже закрыт."


async def test_lost_asks_the_reason_and_not_a_fit_closes_at_once(bench: Desk) -> None:
    first = await bench.qualified_lead("1001")
    second = await bench.qualified_lead("1002")
    await bench.desk.press(IVAN, f"h:claim:{first}")
    await bench.desk.press(IVAN, f"h:lost:{first}")
    ref = bench.chat.posts[-1][0]
    assert await bench.desk.reply(IVAN, ref, "m1", "Дорого,  ушли к конкурентам") == (
        f"Лид #{first} закрыт: Дорого, ушли к конкурентам."
    )
    assert (await bench.handoff(first)).reason == "Дорого, ушли к конкурентам"
    assert (await snapshot(bench.db, "1001")).stage == "lost"
    assert await bench.desk.press(OLGA, f"h:nofit:{second}") == f"Лид #{second}: не наш клиент."
    assert (await bench.handoff(second)).status == "not_fit"
    state = await snapshot(bench.db, "1002")
    assert (state.stage, state.funnel_stage) == ("lost", "qualified")


async def test_forged_or_stale_card_data_changes_nothing(bench: Desk) -> None:
    lead_id = await bench.qualified_lead()
    assert await bench.desk.press(IVAN, "h:claim:999999") == "Лид #999999 не найден."
    assert await bench.desk.press(IVAN, f"h:steal:{lead_id}") == "Эта кнопка устарела."
    assert await bench.desk.press(IVAN, f"h:won:{lead_id}") == (
        "Сначала возьмите лида кнопкой «Взял»."
    )
    assert (await bench.handoff(lead_id)).status == "open"


async def test_unclaimed_cards_are_reminded_then_escalated_once(
    bench: Desk, clock: FakeClock
) -> None:
    lead_id = await bench.qualified_lead()
    claimed = await bench.qualified_lead("1002")
    await bench.desk.press(IVAN, f"h:claim:{claimed}")
    managers = ("telegram",)
    remind = [bench.db, bench.funnel.scenarios, clock, managers]
    clock.advance(timedelta(minutes=29))
    assert await remind_unclaimed(*remind) == 0  # type: ignore[arg-type]
    clock.advance(timedelta(minutes=1))
    assert await remind_unclaimed(*remind) == 1  # type: ignore[arg-type]
    assert await remind_unclaimed(*remind) == 0  # type: ignore[arg-type]
    await bench.worker.drain()
    ref, reminder, _, _ = bench.chat.posts[-1]
    assert reminder.startswith("⏰ Лида никто не взял уже 30 мин\n🔥 Лид #")
    assert f"Лид #{lead_id}" in reminder
    assert bench.chat.buttons[ref] == ["✋ Взял", "🚫 Не наш клиент"]
    clock.advance(timedelta(minutes=90))
    assert await remind_unclaimed(*remind) == 1  # type: ignore[arg-type]
    await bench.worker.drain()
    assert bench.chat.posts[-1][1].startswith("🚨 Эскалация: лид ждёт менеджера 2 ч 0 мин")
    clock.advance(timedelta(hours=5))
    assert await remind_unclaimed(*remind) == 0  # type: ignore[arg-type]
    # A claim on the reminder updates every copy of the card.
    await bench.desk.press(OLGA, f"h:claim:{lead_id}")
    copies = [r for r, text, _, _ in bench.chat.posts if f"Лид #{lead_id}" in text]
    assert len(copies) == 3
    assert all("🤝 Взял: Ольга Смирнова" in bench.chat.texts[r] for r in copies)


async def test_a_reminder_due_after_the_claim_is_not_posted(bench: Desk, clock: FakeClock) -> None:
    lead_id = await bench.qualified_lead()
    clock.advance(timedelta(minutes=31))
    await remind_unclaimed(bench.db, bench.funnel.scenarios, clock, ("telegram",))
    await bench.desk.press(IVAN, f"h:claim:{lead_id}")
    posts = len(bench.chat.posts)
    await bench.worker.drain()
    assert len(bench.chat.posts) == posts
    assert await bench.count(OutboxRow, OutboxRow.status == "cancelled") == 1


async def test_an_unanswered_question_reaches_managers_and_the_reply_reaches_the_lead(
    bench: Desk,
) -> None:
    lead_id = await bench.qualified_lead()
    anna = Prospect(bench.funnel)
    await anna.say("А с Мегапланом интегрируетесь?")
    assert anna.texts() == "Передали ваш вопрос менеджеру — ответим здесь же, в этом чате."
    await bench.worker.drain()
    ref, post, _, _ = bench.chat.posts[-1]
    assert post.startswith(f"💬 Анна Петрова (лид #{lead_id}, стадия qualified):\n")
    assert "А с Мегапланом интегрируетесь?" in post
    async with bench.db.unit_of_work() as uow:
        kinds = (await uow.session.execute(select(ManagerMessage.kind))).scalars().all()
    assert sorted(kinds) == ["card", "notice", "question"]
    assert await bench.desk.reply(IVAN, ref, "700", "Да, интегрируемся.") is None
    assert await bench.desk.reply(IVAN, ref, "700", "Да, интегрируемся.") is None  # redelivered
    await bench.worker.drain()
    assert bench.transport.texts("1001")[-1:] == ["Да, интегрируемся."]
    assert bench.transport.texts("1001").count("Да, интегрируемся.") == 1
    # A reply to something that is not ours is not taken for an answer.
    assert await bench.desk.reply(IVAN, "no-such-post", "701", "?") is None


async def test_while_a_manager_holds_the_lead_messages_follow_and_warmup_waits(
    bench: Desk, clock: FakeClock
) -> None:
    lead_id = await bench.qualified_lead()
    await bench.desk.press(IVAN, f"h:claim:{lead_id}")
    anna = Prospect(bench.funnel)
    await anna.say("сколько стоит?")  # an FAQ phrase: the manager answers now, not the FAQ
    assert anna.last == []
    await bench.worker.drain()
    assert bench.chat.posts[-1][1].startswith(f"💬 Анна Петрова (лид #{lead_id}, у Иван Петров)")
    steps_before = len(bench.transport.sent)
    clock.advance(timedelta(days=3))
    await bench.worker.drain()
    assert len(bench.transport.sent) == steps_before  # the warm-up waits for the manager
    await bench.desk.press(IVAN, f"h:lost:{lead_id}")
    await bench.desk.reply(IVAN, bench.chat.posts[-1][0], "m9", "Не сейчас")
    clock.advance(timedelta(minutes=20))
    await bench.worker.drain()
    assert len(bench.transport.sent) > steps_before  # released: the chain goes on


async def test_a_lead_card_by_id_phone_or_email(bench: Desk) -> None:
    lead_id = await bench.qualified_lead()
    for query in (str(lead_id), f"#{lead_id}", "8 (999) 123-45-67", "+7 999 123 45 67"):
        found = await bench.desk.card_for(query, phone_region="RU")
        assert found is not None, query
        assert found[0] == lead_id
    assert await bench.desk.card_for("nobody@example.com", phone_region="RU") is None
    assert await bench.desk.card_for("999999", phone_region="RU") is None


async def test_a_lead_never_handed_over_shows_a_card_without_deal_buttons(bench: Desk) -> None:
    guide = Prospect(bench.funnel, external_id="2002")
    await guide.start("o_guide")
    await guide.press("Даю согласие")
    await guide.press("Да, присылайте")
    await guide.say("boris@example.com")
    found = await bench.desk.card_for("BORIS@example.com", phone_region="RU")
    assert found is not None
    _, text, buttons = found
    assert "✉️ boris@example.com" in text
    assert "Почему:" not in text
    assert buttons == ()
