"""/mydata, /delete, redelivered updates, blocked leads and the managers' notice."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.handoff import MANAGERS_POST
from bot.messages import Incoming, Kind
from bot.scoring import Routes
from storage.database import Database
from storage.models import OutboxRow
from tests.prospect import Prospect, snapshot


async def walk_audit(anna: Prospect) -> None:
    await anna.start("src_vkads-o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна Петрова")
    await anna.share("79991234567")
    await anna.press("больше 50")


async def test_mydata_is_a_json_document_of_everything_stored(funnel: Funnel) -> None:
    anna = Prospect(funnel)
    await walk_audit(anna)
    await anna.send(Kind.MY_DATA)
    [message] = anna.last
    assert message.text == "Всё, что мы о вас храним, — в этом файле."
    assert message.file is not None
    assert message.file.name == "mydata.json"
    document = json.loads(message.file.data or b"")
    assert document["contacts"][0]["value"] == "+79991234567"
    assert document["answers"]["name"]["value"] == "Анна Петрова"
    assert [c["kind"] for c in document["consents"]] == ["personal_data", "marketing"]
    assert document["messenger_accounts"] == [
        {
            "channel": "telegram",
            "id": "1001",
            "username": None,
            "first_seen": document["messenger_accounts"][0]["first_seen"],
        }
    ]
    assert "magnet_delivered" in [e["name"] for e in document["events"]]
    assert document["promo_codes"] == []  # the test funnel issues none


async def test_delete_asks_first_and_then_forgets_the_person(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await walk_audit(anna)
    await anna.send(Kind.DELETE)
    assert anna.texts().startswith("Удалить все ваши данные")
    await anna.press("Отмена")
    assert anna.texts() == "Хорошо, ничего не удаляем."
    assert (await snapshot(sqlite_db, "1001")).contacts  # still there

    await anna.send(Kind.DELETE)
    await anna.press("Да, удалить")
    assert (
        anna.texts()
        == "Готово: ваши данные удалены. Если захотите вернуться — просто напишите нам."
    )
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.leads.find_by_identity("telegram", "1001") is None
    await anna.start()  # a new, empty lead: nothing of the old one is linked to them
    state = await snapshot(sqlite_db, "1001")
    assert state.contacts == set()
    assert state.answers == {}
    assert state.events == ["start"]


async def test_a_delete_button_without_the_question_is_stale(
    funnel: Funnel, sqlite_db: Database
) -> None:
    anna = Prospect(funnel)
    await walk_audit(anna)
    await anna.send(Kind.BUTTON, payload="del:y")
    assert anna.texts().startswith("Эта кнопка уже устарела.")
    assert (await snapshot(sqlite_db, "1001")).contacts


async def test_a_redelivered_update_is_handled_once(funnel: Funnel, sqlite_db: Database) -> None:
    anna = Prospect(funnel)
    await anna.start()
    press = Incoming(
        channel="telegram",
        external_id="1001",
        kind=Kind.BUTTON,
        payload="o:audit",
        event_key="telegram:7",
    )
    first = await funnel.handle(press)
    again = await funnel.handle(press)
    assert first.messages
    assert not first.duplicate
    assert again.duplicate
    assert again.messages == []
    assert (await snapshot(sqlite_db, "1001")).events.count("offer_taken") == 1


async def test_a_blocked_lead_leaves_the_funnel_until_they_write_again(
    funnel: Funnel, sqlite_db: Database, clock: FakeClock
) -> None:
    anna = Prospect(funnel)
    await walk_audit(anna)
    async with sqlite_db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "1001")
        assert found is not None
        await uow.outbox.enqueue(
            idempotency_key="k1",
            channel="telegram",
            kind="step",
            due_at=clock.now() + timedelta(days=1),
            now=clock.now(),
            lead_id=found[0].id,
        )
        await uow.commit()
    await funnel.mark_blocked("telegram", "1001")
    state = await snapshot(sqlite_db, "1001")
    assert (state.stage, state.funnel_stage) == ("blocked", "qualified")
    async with sqlite_db.unit_of_work() as uow:
        assert await uow.outbox.pending_for_lead(found[0].id) == []
    await anna.start()
    state = await snapshot(sqlite_db, "1001")
    assert state.stage == "qualified"
    assert state.events.count("blocked") == 1


async def _posts(db: Database) -> list[str]:
    async with db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(OutboxRow).where(OutboxRow.kind == MANAGERS_POST).order_by(OutboxRow.id)
        )
        return [row.payload["text"] for row in rows.scalars()]


async def test_managers_hear_of_a_lead_once_when_contacts_arrive(
    funnel: Funnel, sqlite_db: Database
) -> None:
    funnel.routes = Routes(managers=("telegram",))
    anna = Prospect(funnel)
    await anna.start("src_vkads-o_audit")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say("Анна Петрова")
    assert await _posts(sqlite_db) == []
    await anna.share("79991234567")
    [notice] = await _posts(sqlite_db)
    lead_id = (await snapshot(sqlite_db, "1001")).lead_id
    assert notice.splitlines() == [
        f"🆕 Новый лид #{lead_id} оставил контакты",
        "Имя: Анна Петрова",
        "Телефон: +79991234567",
        "Источник: vkads",
        "Оффер: Бесплатный аудит",
        "telegram: id 1001",
    ]
    await anna.press("больше 50")
    assert len(await _posts(sqlite_db)) == 1
