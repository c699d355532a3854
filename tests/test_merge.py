"""One person, two messengers (bot/merge.py): a phone proven in Telegram that a VK lead typed
makes the two one lead; a typed contact never opens somebody else's lead; a second account
in the same messenger stays apart; a warm-up chain both were in sends each step once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot import merge
from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.messages import Incoming, Kind
from bot.referrals import ReferralLinks
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scenario.model import Scenario
from bot.scoring import Routes
from bot.stages import RANK
from storage.database import Database
from storage.models import (
    Answer,
    Consent,
    Contact,
    Event,
    Handoff,
    Identity,
    Lead,
    OutboxRow,
    SequenceRun,
    Tag,
)
from storage.unit_of_work import UnitOfWork
from tests.delivery.harness import RecordingTransport, fake_clock_worker, scenario_folder
from tests.prospect import Prospect, events_of, snapshot

EXTRA = """
offers:
  callback:
    title: "Обратный звонок"
    ask: [phone]
    deliver: {text: "Перезвоним, {name}."}
promos:
  friend_gift: {kind: personal, prefix: FRIEND, discount: "10%", valid: 14d}
referral: {invitee_promo: friend_gift}
"""
PHONE = "+79161234567"
TYPED_PHONE = "8 (916) 123-45-67"  # as a VK user types it
SHARED_PHONE = "79161234567"  # as Telegram shares it: no "+"
ERROR = "Что-то пошло не так"  # the start of messages.error


def asks(person: Prospect, question: str) -> bool:
    return bool(person.last) and person.last[-1].text == question


class TwoMessengers:
    """The engine on one database and fake clock, people writing from Telegram and VK."""

    def __init__(self, db: Database, clock: FakeClock, folder: Path) -> None:
        self.db = db
        self.clock = clock
        self.scenarios = ActiveScenario(load_scenario(folder))
        self.funnel = Funnel(
            db, self.scenarios, clock, referral_links=ReferralLinks(telegram_bot="test_bot")
        )

    @property
    def s(self) -> Scenario:
        return self.scenarios.current.scenario

    def tg(self, external_id: str = "1001", first_name: str = "Ольга") -> Prospect:
        return Prospect(self.funnel, external_id, channel="telegram", first_name=first_name)

    def vk(self, external_id: str = "501", first_name: str = "Ольга") -> Prospect:
        return Prospect(self.funnel, external_id, channel="vk", first_name=first_name)

    async def open_offer(self, person: Prospect, offer: str) -> None:
        """Open an offer by its deep link and agree to both consents if asked."""
        await person.start(f"o_{offer}")
        for label in ("Даю согласие", "Да, присылайте"):
            if label in person.labels():
                await person.press(label)

    async def audit(
        self, person: Prospect, name: str, *, phone: str | None = None, share: str | None = None
    ) -> None:
        """The audit to the end: a name if asked, the phone typed or shared, a company size
        if asked."""
        await self.open_offer(person, "audit")
        if asks(person, "Как к вам обращаться?"):
            await person.say(name)
        if asks(person, "Оставьте номер телефона"):
            await (person.share(share) if share else person.say(phone or TYPED_PHONE))
        if asks(person, "Сколько сотрудников?"):
            await person.press("10–50")
        assert person.texts().endswith("Менеджер позвонит."), person.texts()

    async def callback(self, person: Prospect, *, typed: str | None = None) -> None:
        await self.open_offer(person, "callback")
        if asks(person, "Оставьте номер телефона"):
            await (person.say(typed) if typed else person.share(SHARED_PHONE))
        assert person.texts().startswith("Перезвоним"), person.texts()

    async def guide(self, person: Prospect, email: str) -> None:
        await self.open_offer(person, "guide")
        if asks(person, "Напишите e-mail"):
            await person.say(email)
        assert person.texts().startswith("Ваш гайд"), person.texts()

    async def lead_id(self, person: Prospect) -> int:
        return (await snapshot(self.db, person.external_id, person.channel)).lead_id

    async def mydata(self, person: Prospect) -> dict[str, Any]:
        await person.send(Kind.MY_DATA)
        [message] = person.last
        assert message.file is not None
        assert message.file.data is not None
        return json.loads(message.file.data)  # type: ignore[no-any-return]


async def tombstone(db: Database, lead_id: int) -> dict[str, Any]:
    """What is left of a lead merged into another: should be nothing but the row."""
    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        rows = {}
        for model in (Identity, Contact, Answer, Tag, Consent, Event, SequenceRun, OutboxRow):
            query = select(func.count()).where(model.lead_id == lead_id)  # type: ignore[attr-defined]
            rows[model.__tablename__] = (await uow.session.execute(query)).scalar_one()
        return {
            "erased": lead.erased_at is not None,
            "first_name": lead.first_name,
            "score": lead.score,
            "rows": {table: n for table, n in rows.items() if n},
        }


EMPTY = {"erased": True, "first_name": None, "score": 0, "rows": {}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return scenario_folder(tmp_path, EXTRA)


@pytest.fixture
def both(db: Database, clock: FakeClock, folder: Path) -> TwoMessengers:
    """On SQLite and on PostgreSQL."""
    return TwoMessengers(db, clock, folder)


# ---- when two leads become one ----


async def test_a_phone_shared_in_telegram_merges_the_vk_lead_that_typed_it(
    both: TwoMessengers, clock: FakeClock
) -> None:
    vk, tg = both.vk(), both.tg()
    await both.audit(vk, "Ольга")  # VK: the phone typed, unproven
    vk_id = await both.lead_id(vk)
    clock.advance(timedelta(minutes=5))
    await both.guide(tg, "Olga@Example.com")
    tg_id = await both.lead_id(tg)
    assert tg_id != vk_id

    clock.advance(timedelta(minutes=5))
    await both.open_offer(tg, "audit")
    await tg.say("Оля")
    assert tg.texts() == "Оставьте номер телефона"
    await tg.share(SHARED_PHONE)  # proven by Telegram: the same person as in VK
    # The company size is known from VK; the name the older lead gave stays.
    assert tg.texts() == "Спасибо, Ольга! Менеджер позвонит."

    person = await snapshot(both.db, "1001", "telegram")
    assert person.lead_id == vk_id == (await snapshot(both.db, "501", "vk")).lead_id
    assert person.contacts == {("phone", PHONE, True), ("email", "Olga@example.com", False)}
    assert person.answers == {
        "name": "Ольга",
        "phone": PHONE,
        "company_size": "10–50",
        "email": "Olga@example.com",
    }
    assert person.tags == {"wants_audit"}
    assert person.consents == {"personal_data", "marketing"}
    assert person.funnel_stage == person.stage == "qualified"
    assert person.sequences == {"audit_followup": "active", "guide_warmup": "active"}
    # VK: 15 (10–50) + 5 (contact) + 40 (audit); Telegram: 5 (e-mail) + 10 (guide) and 5
    # for the phone, over contact_shared's max_times (2) once the leads are one.
    assert person.score == 75
    assert Counter(person.events)["start"] == 3
    assert Counter(person.events)["magnet_delivered"] == 3
    assert await events_of(both.db, vk_id, "merged") == [{"lead": tg_id}]
    assert await tombstone(both.db, tg_id) == EMPTY

    data = await both.mydata(vk)
    assert {(a["channel"], a["id"]) for a in data["messenger_accounts"]} == {
        ("vk", "501"),
        ("telegram", "1001"),
    }


async def test_the_older_lead_survives_whichever_messenger_writes(
    both: TwoMessengers, clock: FakeClock
) -> None:
    """The lead that was there first is kept: here the Telegram one, and VK joins it."""
    tg, vk = both.tg(), both.vk()
    await both.guide(tg, "olga@example.com")
    tg_id = await both.lead_id(tg)
    clock.advance(timedelta(minutes=1))
    await both.callback(vk, typed=TYPED_PHONE)
    vk_id = await both.lead_id(vk)
    clock.advance(timedelta(minutes=1))

    await both.callback(tg)  # shares the phone now

    assert tg.texts() == "Перезвоним, Ольга."
    assert (await snapshot(both.db, "501", "vk")).lead_id == tg_id
    assert await events_of(both.db, tg_id, "merged") == [{"lead": vk_id}]
    assert await tombstone(both.db, vk_id) == EMPTY


async def test_typing_somebody_elses_phone_opens_nothing_of_theirs(
    both: TwoMessengers, clock: FakeClock
) -> None:
    """Account takeover: a VK user types the phone a Telegram user proved. No merge: the
    typist is asked everything anew and sees nothing of the owner."""
    owner = both.tg("1001", "Ольга")
    await both.audit(owner, "Ольга Иванова", share=SHARED_PHONE)
    owner_before = await snapshot(both.db, "1001", "telegram")
    clock.advance(timedelta(minutes=1))

    typist = both.vk("666", "Иван")
    await both.open_offer(typist, "audit")
    assert typist.texts() == "Как к вам обращаться?"
    await typist.say("Иван")
    await typist.say(TYPED_PHONE)
    assert typist.texts() == "Сколько сотрудников?"  # not known from the owner's lead
    await typist.press("до 10")
    assert typist.texts() == "Спасибо, Иван! Менеджер позвонит."

    theirs = await snapshot(both.db, "666", "vk")
    assert theirs.lead_id != owner_before.lead_id
    assert theirs.contacts == {("phone", PHONE, False)}
    assert "merged" not in theirs.events
    data = json.dumps(await both.mydata(typist), ensure_ascii=False)
    assert "Ольга" not in data
    assert "1001" not in data
    owner_after = await snapshot(both.db, "1001", "telegram")
    assert (owner_after.answers, owner_after.contacts, owner_after.score) == (
        owner_before.answers,
        owner_before.contacts,
        owner_before.score,
    )


async def test_typed_emails_in_two_messengers_stay_apart_in_any_case(
    both: TwoMessengers,
) -> None:
    """Nobody vouches for a typed e-mail: matching is not proof."""
    await both.guide(both.tg(), "Olga@Example.com")
    await both.guide(both.vk(), "olga@example.com")
    tg = await snapshot(both.db, "1001", "telegram")
    vk = await snapshot(both.db, "501", "vk")
    assert tg.lead_id != vk.lead_id
    assert "merged" not in tg.events + vk.events


async def test_a_verified_email_merges_whatever_its_letters_case(
    both: TwoMessengers, clock: FakeClock
) -> None:
    """When a channel vouches for an e-mail (none does yet), it is matched in any case and
    the union keeps one copy of it, verified."""
    await both.guide(both.vk(), "OLGA@example.com")
    await both.guide(both.tg(), "olga.work@example.com")
    vk_id = await both.lead_id(both.vk())
    tg_id = await both.lead_id(both.tg())
    clock.advance(timedelta(minutes=1))
    async with both.db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001", lock=True)
        assert found is not None
        lead = found[0]
        await uow.leads.add_contact(
            lead.id,
            "email",
            "olga@example.com",
            verified=True,
            channel="telegram",
            now=clock.now(),
        )
        merged = await merge.on_contact(
            uow, both.s, lead, "email", "olga@example.com", verified=True, now=clock.now()
        )
        assert merged is not None
        assert merged.id == vk_id
        await uow.commit()

    person = await snapshot(both.db, "1001", "telegram")
    assert person.lead_id == vk_id
    assert person.contacts == {
        ("email", "OLGA@example.com", True),
        ("email", "olga.work@example.com", False),
    }
    assert await tombstone(both.db, tg_id) == EMPTY


async def test_a_second_account_in_the_same_messenger_is_never_merged(
    both: TwoMessengers, clock: FakeClock
) -> None:
    """Two Telegram accounts with one phone stay two leads (the referral programme tells a
    self-referral so), even when one of them is merged with a VK lead already."""
    await both.callback(both.vk(), typed=TYPED_PHONE)
    clock.advance(timedelta(minutes=1))
    await both.callback(both.tg("1001"))
    person = await snapshot(both.db, "1001", "telegram")
    assert (await snapshot(both.db, "501", "vk")).lead_id == person.lead_id
    clock.advance(timedelta(minutes=1))

    await both.callback(both.tg("2002"))

    second = await snapshot(both.db, "2002", "telegram")
    assert second.lead_id != person.lead_id
    assert second.contacts == {("phone", PHONE, True)}
    assert "merged" not in second.events
    assert (await snapshot(both.db, "1001", "telegram")).events.count("merged") == 1


async def test_the_person_inviting_himself_from_the_other_messenger_is_void(
    both: TwoMessengers, clock: FakeClock
) -> None:
    """A referral between the two accounts of one person is void; the welcome code stays
    the person's."""
    vk = both.vk()
    await vk.start()
    await vk.send(Kind.INVITE)
    await vk.press("Даю согласие")
    code = vk.texts().split("ref_")[1].split()[0]
    await both.callback(vk, typed=TYPED_PHONE)
    clock.advance(timedelta(minutes=1))

    tg = both.tg()
    await tg.start(f"ref_{code}")
    assert "FRIEND-" in tg.texts()
    tg_id = await both.lead_id(tg)
    await both.callback(tg)

    person = await snapshot(both.db, "501", "vk")
    assert person.lead_id == (await snapshot(both.db, "1001", "telegram")).lead_id
    assert await events_of(both.db, person.lead_id, "referral_void") == [
        {"reason": "self-referral: merged with the referrer"}
    ]
    await vk.send(Kind.INVITE)
    assert "Приглашайте коллег" in vk.texts()
    assert "По вашей ссылке пришли" not in vk.texts()  # the self-referral does not count
    await vk.send(Kind.PROMO)
    assert "FRIEND-" in vk.texts()
    assert (await tombstone(both.db, tg_id))["rows"] == {}


async def test_managers_hear_of_the_merge_and_keep_the_handoff_under_the_kept_number(
    db: Database, clock: FakeClock, folder: Path
) -> None:
    """The newer lead was handed over, the older one not: the handoff goes to the older
    lead, its card is posted again under that number, and the managers are told."""
    both = TwoMessengers(db, clock, folder)
    both.funnel.routes = Routes(managers=("telegram",))
    tg, vk = both.tg(), both.vk()
    await both.guide(tg, "olga@example.com")
    tg_id = await both.lead_id(tg)
    clock.advance(timedelta(minutes=1))
    await both.audit(vk, "Ольга")  # qualifies: a handoff and its card
    vk_id = await both.lead_id(vk)
    clock.advance(timedelta(minutes=1))

    await both.callback(tg)

    async with db.unit_of_work() as uow:
        assert await uow.session.get(Handoff, vk_id) is None
        handoff = await uow.session.get(Handoff, tg_id)
        assert handoff is not None
        assert handoff.status == "open"
        query = select(OutboxRow).where(OutboxRow.lead_id == tg_id).order_by(OutboxRow.id)
        rows = {r.idempotency_key: r for r in (await uow.session.execute(query)).scalars()}
        posts = {(key, r.status) for key, r in rows.items() if r.kind != "step"}
        notice = rows[f"merged:{vk_id}:telegram"].payload["text"]
    assert {
        (f"card:{vk_id}:telegram", "cancelled"),
        (f"card:{tg_id}:telegram", "pending"),
        (f"merged:{vk_id}:telegram", "pending"),
    } <= posts
    assert notice.startswith(f"🔗 Лид #{vk_id} — тот же человек, что и лид #{tg_id}")


# ---- a warm-up chain both were in ----


class Delivery:
    """A delivery worker with a recording transport per messenger."""

    def __init__(self, both: TwoMessengers) -> None:
        self.both = both
        clock = both.clock
        self.sent = {
            "telegram": RecordingTransport(clock, "telegram"),
            "vk": RecordingTransport(clock, "vk"),
        }
        self.worker = fake_clock_worker(both.funnel, self.sent, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.both.clock.advance(timedelta(seconds=seconds))

    async def run_until(self, end: datetime) -> None:
        clock = self.both.clock
        while (due := await self.worker.next_due()) is not None and due <= end:
            clock.advance(max(due - clock.now(), timedelta(0)))
            await self.worker.tick()
        clock.advance(max(end - clock.now(), timedelta(0)))

    def texts(self) -> list[tuple[str, str]]:
        """What each messenger sent, in the order it was sent."""
        sent = [(s.at, channel, s.text) for channel, t in self.sent.items() for s in t.sent]
        return [(channel, text) for _, channel, text in sorted(sent)]


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


CHAIN = ["Ольга, получилось открыть гайд?", "Оцените нас", "Оцените от 0 до 10"]


@pytest.mark.parametrize("first", ["vk", "telegram"])
async def test_a_chain_both_were_in_sends_each_step_once(
    both: TwoMessengers, clock: FakeClock, first: str
) -> None:
    """Both leads are in guide_warmup; one got its first step before the merge, the other's
    is still queued. After the merge the person gets the first step no more and every later
    one once, whichever lead (the older VK one, or Telegram's) was further along."""
    delivery = Delivery(both)
    vk, tg = both.vk(), both.tg()
    await both.callback(vk, typed=TYPED_PHONE)  # 09:00 UTC, 12:00 in Moscow
    ahead, behind = (vk, tg) if first == "vk" else (tg, vk)
    clock.advance(timedelta(minutes=5))
    await both.guide(ahead, f"{ahead.channel}@example.com")
    await delivery.run_until(utc(23, 10, 10))  # its first step, an hour later
    assert delivery.texts() == [(ahead.channel, CHAIN[0])]
    clock.advance(timedelta(minutes=5))
    await both.guide(behind, f"{behind.channel}@example.com")  # its first step is queued

    clock.advance(timedelta(minutes=5))
    await both.callback(tg)  # the phone proven: one lead
    assert (await snapshot(both.db, "501", "vk")).lead_id == await both.lead_id(tg)

    await delivery.run_until(utc(23, 10) + timedelta(days=10))
    # The second step goes to the messenger the person wrote from last.
    assert delivery.texts() == [
        (ahead.channel, CHAIN[0]),
        ("telegram", CHAIN[1]),
        ("telegram", CHAIN[2]),  # the step's question
    ]
    person = await snapshot(both.db, "1001", "telegram")
    assert person.sequences == {"guide_warmup": "finished"}
    assert Counter(person.events)["step_sent"] == 2


@pytest.mark.parametrize("last_word", ["stop in VK", "yes in Telegram"])
async def test_advertising_follows_the_persons_last_word(
    both: TwoMessengers, clock: FakeClock, last_word: str
) -> None:
    """A /stop in one messenger after a yes in the other means no, and the other way round."""
    delivery = Delivery(both)
    vk, tg = both.vk(), both.tg()
    await both.callback(vk, typed=TYPED_PHONE)  # with a yes to advertising
    clock.advance(timedelta(minutes=1))
    if last_word == "yes in Telegram":
        await vk.send(Kind.STOP)
        clock.advance(timedelta(minutes=1))
    await both.guide(tg, "olga@example.com")  # a yes in Telegram, and the guide's chain
    clock.advance(timedelta(minutes=1))
    if last_word == "stop in VK":
        await vk.send(Kind.STOP)
        clock.advance(timedelta(minutes=1))

    await both.callback(tg)
    await delivery.run_until(utc(23, 10) + timedelta(days=10))

    person = await snapshot(both.db, "1001", "telegram")
    assert person.lead_id == await both.lead_id(vk)
    if last_word == "stop in VK":
        assert (person.stage, person.consents) == ("unsubscribed", {"personal_data"})
        assert delivery.texts() == []
    else:
        assert (person.stage, person.consents) == ("warming", {"personal_data", "marketing"})
        assert [text for _, text in delivery.texts()] == CHAIN


# ---- locks ----


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_busy_older_lead_is_waited_for_in_id_order(
    both: TwoMessengers, clock: FakeClock
) -> None:
    """The Telegram lead (newer) proves the phone of a VK lead (older) another transaction
    holds. The event is handled again taking the older lead's lock first: while it waits it
    holds no lock of the newer lead (so a worker locking in id order cannot deadlock with
    it), and it merges once the older lead is free."""
    vk, tg = both.vk(), both.tg()
    await both.callback(vk, typed=TYPED_PHONE)
    await both.open_offer(tg, "callback")
    vk_id, tg_id = await both.lead_id(vk), await both.lead_id(tg)
    assert vk_id < tg_id

    async with both.db.unit_of_work() as holder:
        await holder.leads.get(vk_id, lock=True)
        sharing = asyncio.create_task(tg.share(SHARED_PHONE))
        await asyncio.sleep(0.5)
        assert not sharing.done()
        async with both.db.unit_of_work() as worker:
            assert await worker.leads.try_lock(tg_id)
        await holder.rollback()
    await asyncio.wait_for(sharing, 10)

    assert tg.texts() == "Перезвоним, Ольга."
    assert (await snapshot(both.db, "1001", "telegram")).lead_id == vk_id


# ---- any interleaving of the two conversations ----


@dataclass(frozen=True)
class Step:
    kind: Kind
    payload: str | None = None
    text: str | None = None
    phone: str | None = None


def telegram_script(phone: str) -> list[Step]:
    return [
        Step(Kind.START),
        Step(Kind.BUTTON, "o:audit"),
        Step(Kind.BUTTON, "c:y"),
        Step(Kind.BUTTON, "m:y"),
        Step(Kind.TEXT, text="Анна"),
        Step(Kind.CONTACT, phone=phone.removeprefix("+")),
        Step(Kind.BUTTON, "a:company_size:2"),
        Step(Kind.BUTTON, "e:case_read"),
    ]


def vk_script(phone: str, email: str) -> list[Step]:
    return [
        Step(Kind.START),
        Step(Kind.BUTTON, "o:audit"),
        Step(Kind.BUTTON, "c:y"),
        Step(Kind.BUTTON, "m:n"),
        Step(Kind.TEXT, text="Аня"),
        Step(Kind.TEXT, text=phone),
        Step(Kind.BUTTON, "a:company_size:1"),
        Step(Kind.BUTTON, "o:guide"),
        Step(Kind.TEXT, text=email),
        Step(Kind.BUTTON, "e:case_read"),
    ]


@dataclass(frozen=True)
class Facts:
    """What a lead holds, as the property compares it."""

    identities: frozenset[tuple[str, str]]
    contacts: frozenset[tuple[str, str, bool]]
    answers: dict[str, str]
    tags: frozenset[str]
    events: int
    funnel_stage: str


async def facts(uow: UnitOfWork, lead_id: int) -> Facts:
    await uow.session.flush()
    lead = await uow.leads.get(lead_id)
    assert lead is not None
    events = select(func.count()).where(Event.lead_id == lead_id)
    return Facts(
        identities=frozenset(
            (i.channel, i.external_id) for i in await uow.leads.identities(lead_id)
        ),
        contacts=frozenset(
            (c.kind, c.value.lower() if c.kind == "email" else c.value, c.verified)
            for c in await uow.leads.contacts(lead_id)
        ),
        answers={q: a.value for q, a in (await uow.leads.answers(lead_id)).items()},
        tags=frozenset(await uow.leads.tags(lead_id)),
        events=(await uow.session.execute(events)).scalar_one(),
        funnel_stage=lead.funnel_stage,
    )


def union(survivor: Facts, gone: Facts) -> Facts:
    """What the merged lead must hold: everything of both, a verified copy of a contact
    winning, the survivor's answer where both answered, one event more (`merged`)."""
    contacts: dict[tuple[str, str], bool] = {}
    for kind, value, verified in survivor.contacts | gone.contacts:
        contacts[kind, value] = contacts.get((kind, value), False) or verified
    return Facts(
        identities=survivor.identities | gone.identities,
        contacts=frozenset((k, v, verified) for (k, v), verified in contacts.items()),
        answers=gone.answers | survivor.answers,
        tags=survivor.tags | gone.tags,
        events=survivor.events + gone.events + 1,
        funnel_stage=max(survivor.funnel_stage, gone.funnel_stage, key=RANK.__getitem__),
    )


@pytest.fixture
def merges(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Facts, Facts, int]]:
    """Each merge as it happens: what it should make (the union of the two leads just
    before), what it made (the survivor just after, in the merge's own transaction), and
    the lead that went."""
    seen: list[tuple[Facts, Facts, int]] = []
    real = merge.merge_leads

    async def watched(uow: UnitOfWork, s: Scenario, survivor: Lead, gone: Lead, **kw: Any) -> None:
        expected = union(await facts(uow, survivor.id), await facts(uow, gone.id))
        await real(uow, s, survivor, gone, **kw)
        seen.append((expected, await facts(uow, survivor.id), gone.id))

    monkeypatch.setattr(merge, "merge_leads", watched)
    return seen


async def phone_saved_at(db: Database, lead_id: int, phone: str) -> datetime | None:
    async with db.unit_of_work() as uow:
        query = select(Contact.created_at).where(
            Contact.lead_id == lead_id, Contact.kind == "phone", Contact.value == phone
        )
        return (await uow.session.execute(query)).scalar_one_or_none()


PEOPLE = count(1)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.permutations([True] * 8 + [False] * 10))
async def test_any_interleaving_of_the_two_conversations_ends_in_one_lead(
    db: Database,
    clock: FakeClock,
    folder: Path,
    merges: list[tuple[Facts, Facts]],
    order: list[bool],
) -> None:
    """Telegram takes the audit and shares its phone; VK takes the audit typing that phone
    and the guide; both press an event button; the two conversations interleaved in any
    order. Each merge makes exactly the union of the two leads, the further stage, and an
    empty tombstone; at the end the person is one lead exactly when the phone was proven
    after VK typed it (proven before, VK's typing opened nothing: two leads)."""
    both = TwoMessengers(db, clock, folder)
    n = next(PEOPLE)
    phone, email = f"+7916{2000000 + n}", f"anna{n}@Example.com"
    tg_id, vk_id = f"t{n}", f"v{n}"
    scripts = {True: iter(telegram_script(phone)), False: iter(vk_script(phone, email))}
    merges.clear()
    for telegram in order:
        step = next(scripts[telegram])
        clock.advance(timedelta(seconds=1))
        reply = await both.funnel.handle(
            Incoming(
                channel="telegram" if telegram else "vk",
                external_id=tg_id if telegram else vk_id,
                kind=step.kind,
                payload=step.payload,
                text=step.text,
                phone=step.phone,
                first_name="Анна",
            )
        )
        assert not any(m.text.startswith(ERROR) for m in reply.messages)

    for expected, made, gone in merges:
        assert made == expected
        assert await tombstone(db, gone) == EMPTY
    t = await snapshot(db, tg_id, "telegram")
    v = await snapshot(db, vk_id, "vk")
    if t.lead_id == v.lead_id:
        assert len(merges) == 1
        [(_, made, _)] = merges
        async with db.unit_of_work() as uow:
            final = await facts(uow, t.lead_id)
        # Nothing the merge brought together is lost afterwards (answers may be changed).
        assert final.identities == made.identities
        assert made.contacts <= final.contacts
        assert made.tags <= final.tags
        assert made.answers.keys() <= final.answers.keys()
        assert made.events <= final.events
        assert ("phone", phone, True) in final.contacts
        assert t.funnel_stage == "qualified"  # the audit's tag, whoever finished it
        return
    assert merges == []
    # Two leads only when the phone was never proven in Telegram or typed in VK, or was
    # typed only after the proof: the typist could be anybody.
    proof = await phone_saved_at(db, t.lead_id, phone)
    typed = await phone_saved_at(db, v.lead_id, phone)
    assert proof is None or typed is None or typed > proof
    assert "merged" not in t.events + v.events
