"""Requests of a person's time in the shipped scenario: `handoff:` buttons and offers take the
lead to the managers (a card the first time, then a post about each request), and every
button a prospect can press answers with content, asks a question or reaches the managers."""

from __future__ import annotations

import pytest

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.handoff import ManagerDesk
from bot.messages import Kind
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scenario.model import OfferButton, Scenario, StepButton
from bot.scoring import Routes
from storage.database import Database
from storage.models import Handoff
from tests.conftest import ROOT
from tests.delivery.harness import RecordingTransport, fake_clock_worker
from tests.prospect import Prospect, snapshot
from tests.test_handoff import IVAN, FakeManagersChat

SHIPPED = ROOT / "scenarios"


class Office:
    """The shipped scenario with a managers' chat in Telegram and a delivery worker."""

    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.db = db
        self.scenarios = ActiveScenario(load_scenario(SHIPPED))
        self.s: Scenario = self.scenarios.current.scenario
        self.funnel = Funnel(db, self.scenarios, clock, routes=Routes(managers=("telegram",)))
        self.chat = FakeManagersChat()
        self.desk = ManagerDesk(db, self.scenarios, clock, {"telegram": self.chat})
        self.transport = RecordingTransport(clock)
        self.worker = fake_clock_worker(
            self.funnel, {"telegram": self.transport}, managers={"telegram": self.chat}
        )

    def button(self, label: str) -> StepButton:
        [found] = {b for _, b in self.s.step_buttons() if b.text == label}  # equal copies: one
        return found

    async def press(self, prospect: Prospect, label: str) -> str:
        await prospect.send(Kind.BUTTON, payload=self.button(label).action)
        return prospect.texts()

    def posts(self, mark: str = "") -> list[str]:
        """Texts posted to the managers: cards start with 🔥, requests with 🔔."""
        return [text for _, text, _, _ in self.chat.posts if text.startswith(mark)]


@pytest.fixture
def office(sqlite_db: Database, clock: FakeClock) -> Office:
    return Office(sqlite_db, clock)


async def guide_lead(office: Office, user: str = "1001") -> Prospect:
    """A prospect who took the guide: consent, an e-mail, score 10, not handed over."""
    anna = Prospect(office.funnel, external_id=user)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("anna@company.ru")
    assert "Держите гайд" in anna.texts()
    return anna


async def audit_lead(office: Office, user: str = "2002") -> Prospect:
    oleg = Prospect(office.funnel, external_id=user, first_name="Олег")
    await oleg.start("o_audit")
    await oleg.press("Даю согласие")
    await oleg.press("Нет, спасибо")
    await oleg.say("Олег")
    await oleg.share("79161234567")
    # company size, role, current CRM and the audit's time: the first option of each
    for _ in range(4):
        await oleg.send(Kind.BUTTON, payload=oleg.last[-1].buttons[0][0].action)
    assert "Вы записаны на «Час добра»" in oleg.texts()
    return oleg


async def test_a_request_hands_a_lead_never_handed_over_to_the_managers(office: Office) -> None:
    anna = await guide_lead(office)
    assert (await snapshot(office.db, "1001")).stage == "warming"

    said = await office.press(anna, "Получить расчёт")

    assert said == office.button("Получить расчёт").reply
    state = await snapshot(office.db, "1001")
    assert (state.stage, state.score) == ("qualified", 10 + 40)  # proposal_requested: 40
    assert "proposal_requested" in state.events
    assert "qualified" in state.events
    assert await office.worker.drain() >= 1
    [card] = office.posts("🔥")
    assert "Почему: после гайда просит расчёт внедрения со скидкой 10%" in card
    assert "anna@company.ru" in card
    # The guide's warm-up stops on `qualified`: no discount a week later as if nothing happened.
    assert state.sequences["guide_warmup"] == "stopped"


async def test_the_audit_offer_hands_over_and_a_later_request_is_posted_to_the_managers(
    office: Office,
) -> None:
    oleg = await audit_lead(office)
    await office.worker.drain()
    [card] = office.posts("🔥")
    assert "Почему: записался на «Час добра»: время — в карточке; если его нет," in card
    # The first free time (15:00: three hours' notice from noon) is on the card.
    assert "📅 Запись: «Час добра» (аудит) — пн, 23 ноября, 15:00 МСК (analyst_olga)" in card

    said = await office.press(oleg, "Перезвоните мне")
    await office.worker.drain()

    assert "он позвонит в ближайшее рабочее время" in said
    lead_id = (await snapshot(office.db, "2002")).lead_id
    assert len(office.posts("🔥")) == 1  # no second card: a post about the request
    [post] = office.posts("🔔")
    assert post == (
        f"🔔 Олег (лид #{lead_id}, карточка ещё не взята)\n"
        "просит перезвонить: аудит ещё не назначен\n"
        "📞 +79161234567 ✔\n"  # shared with the contact button: verified
        "Ответьте на это сообщение — ответ уйдёт клиенту."
    )
    # The manager answers the post, and the answer goes to the prospect.
    [reference] = [ref for ref, text, _, _ in office.chat.posts if text == post]
    assert await office.desk.reply(IVAN, reference, "m1", "Олег, позвоню в 15:00") is None
    await office.worker.drain()
    assert [s.message.text for s in office.transport.sent][-1] == "Олег, позвоню в 15:00"

    # Once a manager holds the lead, the post says who.
    await office.desk.press(IVAN, f"h:claim:{lead_id}")
    await office.press(oleg, "Созвон с руководителем")
    await office.worker.drain()
    assert office.posts("🔔")[-1].startswith(f"🔔 Олег (лид #{lead_id}, у Иван Петров)\n")
    async with office.db.unit_of_work() as uow:
        handoff = await uow.session.get(Handoff, lead_id)
        assert handoff is not None
        assert handoff.status == "claimed"


async def test_buttons_of_one_event_answer_each_their_own_and_old_buttons_still_reach_managers(
    office: Office,
) -> None:
    anna = await guide_lead(office)
    kp = await office.press(anna, "Получить КП")
    estimate = await office.press(anna, "Получить смету")
    assert kp == office.button("Получить КП").reply
    assert estimate == office.button("Получить смету").reply
    assert kp != estimate

    # A message sent before labels had a digest: the event's handoff button answers.
    boris = await guide_lead(office, "3003")
    await boris.send(Kind.BUTTON, payload="e:webinar_registered")
    assert "Записали!" in boris.texts()
    await boris.send(Kind.BUTTON, payload="e:joint_call_requested")
    assert (await snapshot(office.db, "3003")).stage == "qualified"

    # A forged event is a stale button, not a crash or a record.
    await boris.send(Kind.BUTTON, payload="e:no_such_event:deadbeef")
    assert office.s.messages.stale_button in boris.texts()
    assert "no_such_event" not in (await snapshot(office.db, "3003")).events


async def test_every_shipped_button_answers_with_content_asks_or_reaches_managers(
    office: Office,
) -> None:
    """Each button a prospect can meet, pressed by a prospect who took the guide: a link, a
    reply of its own (not the bare «Отметили»), a question, a magnet, or the managers."""
    s = office.s
    buttons: list[tuple[str, StepButton | OfferButton]] = [
        (str(path), button) for path, button in s.step_buttons()
    ]
    buttons += [(f"start.buttons[{i}]", b) for i, b in enumerate(s.start.buttons)]  # type: ignore[misc]
    buttons += [
        (f"faq[{i}].buttons[{j}]", b)  # type: ignore[misc]
        for i, entry in enumerate(s.faq)
        for j, b in enumerate(entry.buttons)
    ]
    assert len(buttons) > 30
    for number, (where, button) in enumerate(buttons):
        if getattr(button, "url", None):
            assert button.url.startswith("https://"), where  # type: ignore[union-attr]
            continue
        user = str(10_000 + number)
        prospect = await guide_lead(office, user)
        posts_before = len(office.chat.posts)
        if isinstance(button, OfferButton) or button.offer:
            offer = button.offer
            assert offer is not None
            await prospect.send(Kind.BUTTON, payload=f"o:{offer}")
            state = await snapshot(office.db, user)
            asks = (state.awaiting or {}).get("question") in s.questions
            delivered = state.events.count("magnet_delivered") == 2  # the guide's, and this
            assert asks or delivered, f"{where}: {offer} neither asks nor delivers"
            continue
        await prospect.send(Kind.BUTTON, payload=button.action)
        said = prospect.texts()
        assert said not in ("", s.messages.noted), f"{where}: {button.text!r} says {said!r}"
        if button.handoff:
            await office.worker.drain()
            state = await snapshot(office.db, user)
            reached = state.stage == "qualified" or len(office.chat.posts) > posts_before
            assert reached, f"{where}: {button.text!r} did not reach the managers"
            async with office.db.unit_of_work() as uow:
                assert await uow.session.get(Handoff, state.lead_id) is not None, where


async def test_a_moved_or_cancelled_booking_is_posted_to_the_managers(office: Office) -> None:
    oleg = await audit_lead(office)  # booked the first free time: Monday 15:00
    await office.worker.drain()
    await oleg.send(Kind.BOOKING)
    await oleg.press("Перенести")
    await oleg.press("вт 24 ноя, 12:00")
    assert "Перенесли: теперь вы записаны на вт, 24 ноября, 12:00 МСК." in oleg.texts()
    await oleg.send(Kind.BOOKING)
    await oleg.press("Отменить запись")
    await office.worker.drain()
    lead_id = (await snapshot(office.db, "2002")).lead_id
    moved, cancelled = office.posts("🔔")
    assert moved.splitlines()[:2] == [
        f"🔔 Олег (лид #{lead_id}, карточка ещё не взята)",
        "перенёс запись: «Час добра» (аудит) — вт, 24 ноября, 12:00 МСК (analyst_olga)",
    ]
    assert cancelled.splitlines()[1] == (
        "отменил запись: «Час добра» (аудит) — вт, 24 ноября, 12:00 МСК (analyst_olga)"
    )
    # /lead shows the card as it is now: no booking, and the time is no answer.
    card = await office.desk.card_for(str(lead_id), phone_region="RU")
    assert card is not None
    assert "📅 Запись" not in card[1]
    assert "24 ноября" not in card[1]  # nor is the time an answer any more
