"""/delete leaves nothing personal anywhere: a person walks the funnel in VK and Telegram
(one lead after a verified phone), talks to the managers and qualifies, with values found
nowhere else; after the erasure a dump of every table holds none of them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text, update

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.messages import Kind
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import CARD, CRM_EXPORT, Routes
from storage.database import Database
from storage.models import Base, OutboxRow
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import Prospect, snapshot
from tests.test_handoff import Desk, walk_to_qualified

TELEGRAM_ID, VK_ID = "88800123", "7774441"
PERSONAL = (
    "Евлампия",  # the Telegram account's first name, and the typed name
    "Квасников",  # the typed surname
    "Лампа",  # the VK account's first name
    "evlampia_x",  # the Telegram username
    "99955501",  # the phone, in any spelling
    "kvas.evl",  # the e-mail
    "ипотек",  # what she asked the managers
    TELEGRAM_ID,
    VK_ID,
)


async def dump(db: Database) -> str:
    """Every row of every table, as text (JSON columns included)."""
    lines = []
    async with db.unit_of_work() as uow:
        for table in Base.metadata.sorted_tables:
            for row in await uow.session.execute(select(table)):
                lines.append(f"{table.name}: {tuple(row)!r}")
        version = await uow.session.execute(text("select version_num from alembic_version"))
        lines += [f"alembic_version: {tuple(row)!r}" for row in version]
    return "\n".join(lines)


async def test_nothing_personal_is_left_after_delete(db: Database, clock: FakeClock) -> None:
    funnel = Funnel(
        db,
        ActiveScenario(load_scenario(FIXTURE_SCENARIO)),
        clock,
        routes=Routes(managers=("telegram",)),
    )
    in_vk = Prospect(funnel, VK_ID, channel="vk", first_name="Лампа")
    await in_vk.start("src_vkads-o_audit")
    await in_vk.press("Даю согласие")
    await in_vk.press("Да, присылайте")
    await in_vk.say("Евлампия Квасникова")
    await in_vk.say("8 (999) 555-01-23")  # typed: a lead of its own until Telegram vouches

    in_tg = Prospect(funnel, TELEGRAM_ID, first_name="Евлампия")
    await in_tg.send(Kind.START, payload="o_audit", username="evlampia_x")
    await in_tg.press("Даю согласие")
    await in_tg.press("Да, присылайте")
    await in_tg.say("Евлампия Квасникова")
    await in_tg.share("79995550123")  # verified: the two leads become one
    await in_tg.press("больше 50")  # qualifies: a card for the managers
    await in_tg.say("Подскажите про ипотеку Квасниковой, пожалуйста")
    await in_tg.start("o_guide")
    await in_tg.say("kvas.evlampia@example.com")

    before = await dump(db)
    assert [value for value in PERSONAL if value not in before] == []  # all were stored
    async with db.unit_of_work() as uow:  # some posts went out already; some are queued
        await uow.session.execute(
            update(OutboxRow).where(OutboxRow.id % 2 == 0).values(status="sent")
        )
        await uow.commit()

    await in_tg.send(Kind.DELETE)
    await in_tg.press("Да, удалить")
    assert in_tg.texts().startswith("Готово: ваши данные удалены.")

    after = await dump(db)
    left = {value: after.count(value) for value in PERSONAL if value in after}
    assert left == {}, [line for line in after.splitlines() if any(v in line for v in left)]
    # What the counts need stays: the lead, its stage moves and anonymous events.
    assert "leads: " in after
    assert "magnet_delivered" in after


async def test_nothing_queued_for_a_person_goes_out_after_delete(
    db: Database, clock: FakeClock
) -> None:
    """Qualified, then erased before the worker's next tick: the lead card, the CRM export and
    the person's own queued messages were waiting. None of them goes anywhere afterwards, and
    nothing of the lead is left waiting in the queue."""
    bench = Desk(db, clock)
    anna = Prospect(bench.funnel, external_id="1001")
    await walk_to_qualified(anna)  # a card and a CRM export are queued
    lead_id = (await snapshot(db, "1001")).lead_id
    async with db.unit_of_work() as uow:
        queued = await uow.session.scalars(
            select(OutboxRow.kind).where(
                OutboxRow.lead_id == lead_id, OutboxRow.status == "pending"
            )
        )
        assert {CARD, CRM_EXPORT, "step"} <= set(queued)

    await anna.send(Kind.DELETE)
    await anna.press("Да, удалить")
    for _ in range(3):  # a week of ticks: steps, reminders, retries would all be due
        clock.advance(timedelta(days=3))
        await bench.worker.drain()

    assert bench.chat.posts == []
    assert bench.crm.exported == []
    assert bench.transport.attempts == []
    async with db.unit_of_work() as uow:
        waiting = await uow.session.scalar(
            select(func.count()).where(
                OutboxRow.lead_id == lead_id, OutboxRow.status.in_(("pending", "sending"))
            )
        )
    assert waiting == 0
