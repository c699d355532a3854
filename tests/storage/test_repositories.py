"""Storage behaviour the bot relies on, run on SQLite and PostgreSQL alike (`db` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, StatementError

from storage.database import Database
from storage.models import (
    Answer,
    Consent,
    Contact,
    Event,
    Identity,
    Lead,
    OutboxRow,
    SequenceRun,
    StageChange,
    Tag,
)

# Microseconds on purpose: a storage format that drops them would make this unequal.
NOW = datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)
MOSCOW = timezone(timedelta(hours=3))


async def new_lead(db: Database, channel: str = "telegram", external_id: str = "100") -> int:
    async with db.unit_of_work() as uow:
        lead, _ = await uow.leads.create(channel=channel, external_id=external_id, now=NOW)
        await uow.commit()
        return lead.id


async def test_created_lead_is_found_by_its_messenger_account(db: Database) -> None:
    async with db.unit_of_work() as uow:
        lead, identity = await uow.leads.create(
            channel="telegram", external_id="100", now=NOW, first_name="Анна", username="anna"
        )
        await uow.commit()

    async with db.unit_of_work() as uow:
        found = await uow.leads.find_by_identity("telegram", "100")
        assert found is not None
        found_lead, found_identity = found
        assert found_lead.id == lead.id
        assert found_identity.id == identity.id
        assert (found_lead.first_name, found_lead.stage, found_lead.funnel_stage) == (
            "Анна",
            "new",
            "new",
        )
        assert found_lead.score == 0
        assert found_identity.username == "anna"
        assert [i.id for i in await uow.leads.identities(lead.id)] == [identity.id]
        # The same number in another messenger is someone else until proven otherwise.
        assert await uow.leads.find_by_identity("vk", "100") is None
        assert await uow.leads.find_by_identity("telegram", "101") is None


async def test_one_messenger_account_belongs_to_one_lead(db: Database) -> None:
    await new_lead(db, "telegram", "100")

    async with db.unit_of_work() as uow:
        with pytest.raises(IntegrityError):
            await uow.leads.create(channel="telegram", external_id="100", now=NOW)

    async with db.unit_of_work() as uow:
        await uow.leads.create(channel="vk", external_id="100", now=NOW)
        await uow.commit()

    async with db.unit_of_work() as uow:
        identities = (await uow.session.execute(select(Identity))).scalars().all()
        assert sorted((i.channel, i.external_id) for i in identities) == [
            ("telegram", "100"),
            ("vk", "100"),
        ]
        assert (await uow.session.execute(select(func.count()).select_from(Lead))).scalar() == 2


async def test_uncommitted_work_is_rolled_back(db: Database) -> None:
    lead_id = await new_lead(db)

    async with db.unit_of_work() as uow:
        await uow.leads.create(channel="telegram", external_id="200", now=NOW)
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        lead.score = 50
        uow.events.add(lead_id, "qualified", now=NOW)
        await uow.events.count(lead_id, "qualified")  # flushed, yet still not committed

    async def crash_after_tagging() -> None:
        async with db.unit_of_work() as uow:
            await uow.leads.add_tag(lead_id, "hot", now=NOW)
            raise RuntimeError("handler crashed")

    with pytest.raises(RuntimeError, match="handler crashed"):
        await crash_after_tagging()

    async with db.unit_of_work() as uow:
        assert await uow.leads.find_by_identity("telegram", "200") is None
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        assert lead.score == 0
        assert await uow.events.count(lead_id, "qualified") == 0
        assert await uow.leads.tags(lead_id) == set()


async def test_datetimes_come_back_aware_utc_and_exact(db: Database) -> None:
    moscow_time = datetime(2026, 11, 23, 12, 0, 0, 654321, tzinfo=MOSCOW)
    async with db.unit_of_work() as uow:
        lead, _ = await uow.leads.create(channel="telegram", external_id="100", now=NOW)
        lead.unsubscribed_at = moscow_time
        await uow.commit()

    async with db.unit_of_work() as uow:
        stored = await uow.leads.get(lead.id)
        assert stored is not None
        for value, expected in [
            (stored.created_at, NOW),
            (stored.updated_at, NOW),
            (stored.unsubscribed_at, moscow_time),
        ]:
            assert value is not None
            assert value.tzinfo is not None
            assert value.utcoffset() == timedelta(0)
            assert value == expected
            assert value.microsecond == expected.microsecond
        assert stored.unreachable_at is None


async def test_a_naive_datetime_is_refused(db: Database) -> None:
    async with db.unit_of_work() as uow:
        with pytest.raises(StatementError, match="naive datetime"):
            await uow.leads.create(
                channel="telegram", external_id="100", now=NOW.replace(tzinfo=None)
            )


async def test_a_contact_is_stored_once_and_verification_only_upgrades(db: Database) -> None:
    lead_id = await new_lead(db)
    other_id = await new_lead(db, "vk", "500")

    async with db.unit_of_work() as uow:
        await uow.leads.add_contact(
            lead_id, "phone", "+79161234567", verified=False, channel="telegram", now=NOW
        )
        await uow.leads.add_contact(
            lead_id, "phone", "+79161234567", verified=False, channel="telegram", now=NOW
        )
        await uow.commit()

    async with db.unit_of_work() as uow:
        contact = await uow.leads.add_contact(
            lead_id, "phone", "+79161234567", verified=True, channel="telegram", now=NOW
        )
        assert contact.verified
        await uow.commit()

    async with db.unit_of_work() as uow:
        # An unverified repeat (typed by hand later) must not undo the messenger's word.
        await uow.leads.add_contact(
            lead_id, "phone", "+79161234567", verified=False, channel="vk", now=NOW
        )
        await uow.leads.add_contact(
            lead_id, "email", "anna@example.com", verified=False, channel="telegram", now=NOW
        )
        await uow.leads.add_contact(
            other_id, "phone", "+79161234567", verified=False, channel="vk", now=NOW
        )
        await uow.commit()

    async with db.unit_of_work() as uow:
        contacts = await uow.leads.contacts(lead_id)
        assert [(c.kind, c.value, c.verified, c.channel) for c in contacts] == [
            ("phone", "+79161234567", True, "telegram"),
            ("email", "anna@example.com", False, "telegram"),
        ]
        assert sorted(await uow.leads.find_by_contact("phone", "+79161234567")) == [
            lead_id,
            other_id,
        ]
        assert list(await uow.leads.find_by_contact("email", "anna@example.com")) == [lead_id]
        assert list(await uow.leads.find_by_contact("email", "nobody@example.com")) == []


async def test_consent_to_a_new_text_replaces_the_old_one(db: Database) -> None:
    lead_id = await new_lead(db)
    later = NOW + timedelta(days=3)
    withdrawn = NOW + timedelta(days=5)

    async with db.unit_of_work() as uow:
        assert await uow.leads.active_consent(lead_id, "personal_data") is None
        first = await uow.leads.give_consent(
            lead_id, "personal_data", text_version="v1", channel="telegram", now=NOW
        )
        again = await uow.leads.give_consent(
            lead_id, "personal_data", text_version="v1", channel="telegram", now=later
        )
        assert again is first
        await uow.commit()

    async with db.unit_of_work() as uow:
        await uow.leads.give_consent(
            lead_id, "personal_data", text_version="v2", channel="vk", now=later
        )
        await uow.leads.give_consent(
            lead_id, "advertising", text_version="v1", channel="vk", now=later
        )
        await uow.commit()

    async with db.unit_of_work() as uow:
        active = await uow.leads.active_consent(lead_id, "personal_data")
        assert active is not None
        assert (active.text_version, active.channel, active.given_at) == ("v2", "vk", later)
        history = (
            (
                await uow.session.execute(
                    select(Consent)
                    .where(Consent.lead_id == lead_id, Consent.kind == "personal_data")
                    .order_by(Consent.id)
                )
            )
            .scalars()
            .all()
        )
        assert [(c.text_version, c.given_at, c.withdrawn_at) for c in history] == [
            ("v1", NOW, later),
            ("v2", later, None),
        ]

        assert await uow.leads.withdraw_consent(lead_id, "personal_data", now=withdrawn)
        await uow.commit()

    async with db.unit_of_work() as uow:
        assert await uow.leads.active_consent(lead_id, "personal_data") is None
        assert not await uow.leads.withdraw_consent(lead_id, "personal_data", now=withdrawn)
        # Withdrawing one kind of consent leaves the other alone.
        advertising = await uow.leads.active_consent(lead_id, "advertising")
        assert advertising is not None
        assert advertising.withdrawn_at is None


async def test_a_tag_is_added_once(db: Database) -> None:
    lead_id = await new_lead(db)

    async with db.unit_of_work() as uow:
        assert await uow.leads.add_tag(lead_id, "hot", now=NOW)
        assert not await uow.leads.add_tag(lead_id, "hot", now=NOW)
        assert await uow.leads.add_tag(lead_id, "b2b", now=NOW)
        await uow.commit()

    async with db.unit_of_work() as uow:
        assert not await uow.leads.add_tag(lead_id, "hot", now=NOW)
        await uow.commit()

    async with db.unit_of_work() as uow:
        assert await uow.leads.tags(lead_id) == {"hot", "b2b"}
        count = select(func.count()).select_from(Tag).where(Tag.lead_id == lead_id)
        assert (await uow.session.execute(count)).scalar() == 2


async def test_a_new_answer_replaces_the_previous_one(db: Database) -> None:
    lead_id = await new_lead(db)
    later = NOW + timedelta(minutes=5)

    async with db.unit_of_work() as uow:
        await uow.leads.set_answer(lead_id, "budget", "до 100 тыс.", score=5, now=NOW)
        await uow.leads.set_answer(lead_id, "budget", "до 200 тыс.", score=10, now=NOW)
        await uow.leads.set_answer(lead_id, "city", "Казань", score=0, now=NOW)
        await uow.commit()

    async with db.unit_of_work() as uow:
        await uow.leads.set_answer(lead_id, "budget", "больше 500 тыс.", score=30, now=later)
        await uow.commit()

    async with db.unit_of_work() as uow:
        answers = await uow.leads.answers(lead_id)
        assert {q: (a.value, a.score, a.created_at) for q, a in answers.items()} == {
            "budget": ("больше 500 тыс.", 30, later),
            "city": ("Казань", 0, NOW),
        }
        count = select(func.count()).select_from(Answer).where(Answer.lead_id == lead_id)
        assert (await uow.session.execute(count)).scalar() == 2


async def test_events_are_counted_per_name_and_listed_newest_first(db: Database) -> None:
    lead_id = await new_lead(db)
    other_id = await new_lead(db, "vk", "500")

    async with db.unit_of_work() as uow:
        uow.events.add(lead_id, "started", now=NOW, channel="telegram", payload={"ref": "ads"})
        uow.events.add(lead_id, "answered", now=NOW + timedelta(seconds=1))
        uow.events.add(lead_id, "answered", now=NOW + timedelta(seconds=2))
        uow.events.add(other_id, "answered", now=NOW)
        await uow.commit()

    async with db.unit_of_work() as uow:
        uow.events.add(lead_id, "qualified", now=NOW + timedelta(seconds=3))
        # Counted before commit: the engine decides on events of the current update too.
        assert await uow.events.count(lead_id, "qualified") == 1
        await uow.commit()

    async with db.unit_of_work() as uow:
        assert await uow.events.count(lead_id, "answered") == 2
        assert await uow.events.count(lead_id, "started") == 1
        assert await uow.events.count(lead_id, "lost") == 0
        assert await uow.events.count(other_id, "answered") == 1
        events = await uow.events.for_lead(lead_id)
        assert [e.name for e in events] == ["qualified", "answered", "answered", "started"]
        assert events[-1].payload == {"ref": "ads"}
        assert events[-1].channel == "telegram"
        assert events[0].payload == {}
        assert [e.name for e in await uow.events.for_lead(lead_id, limit=2)] == [
            "qualified",
            "answered",
        ]


async def test_stage_history_is_kept_in_order(db: Database) -> None:
    lead_id = await new_lead(db)
    moves = [(None, "new"), ("new", "engaged"), ("engaged", "lost"), ("lost", "engaged")]

    for step, (from_stage, to_stage) in enumerate(moves):
        async with db.unit_of_work() as uow:
            uow.events.add_stage_change(
                lead_id, from_stage, to_stage, reason=f"step {step}", now=NOW
            )
            await uow.commit()

    async with db.unit_of_work() as uow:
        history = await uow.events.stage_history(lead_id)
        assert [(c.from_stage, c.to_stage, c.reason) for c in history] == [
            (from_stage, to_stage, f"step {step}")
            for step, (from_stage, to_stage) in enumerate(moves)
        ]


async def test_a_chain_never_runs_twice_for_a_lead(db: Database) -> None:
    lead_id = await new_lead(db)

    async with db.unit_of_work() as uow:
        run = await uow.sequences.start(lead_id, "warmup", now=NOW)
        assert run is not None
        assert await uow.sequences.start(lead_id, "warmup", now=NOW) is None
        await uow.commit()

    async with db.unit_of_work() as uow:
        assert await uow.sequences.start(lead_id, "warmup", now=NOW) is None
        stored = await uow.sequences.get(lead_id, "warmup")
        assert stored is not None
        stored.status, stored.stopped_at, stored.stop_reason = "stopped", NOW, "unsubscribed"
        await uow.commit()

    async with db.unit_of_work() as uow:
        # A stopped chain is finished for good, not free to start over.
        assert await uow.sequences.start(lead_id, "warmup", now=NOW) is None
        assert await uow.sequences.start(lead_id, "reactivation", now=NOW) is not None
        await uow.commit()

    async with db.unit_of_work() as uow:
        runs = await uow.sequences.for_lead(lead_id)
        assert [(r.sequence, r.status, r.stop_reason) for r in runs] == [
            ("warmup", "stopped", "unsubscribed"),
            ("reactivation", "active", None),
        ]


async def test_the_outbox_queues_a_key_once_and_lists_by_due_time(db: Database) -> None:
    lead_id = await new_lead(db)
    other_id = await new_lead(db, "vk", "500")
    # Due times given in two time zones: the order is by instant, not by wall-clock text.
    due = {
        "warmup:1": NOW + timedelta(hours=2),
        "warmup:2": (NOW + timedelta(hours=1)).astimezone(MOSCOW),
        "warmup:3": NOW + timedelta(hours=3),
    }

    async with db.unit_of_work() as uow:
        for key, due_at in due.items():
            row = await uow.outbox.enqueue(
                idempotency_key=f"{lead_id}:{key}",
                channel="telegram",
                kind="message",
                due_at=due_at,
                now=NOW,
                lead_id=lead_id,
                payload={"step": key},
            )
            assert row is not None
        assert (
            await uow.outbox.enqueue(
                idempotency_key=f"{lead_id}:warmup:1",
                channel="telegram",
                kind="message",
                due_at=NOW,
                now=NOW,
                lead_id=lead_id,
            )
            is None
        )
        await uow.outbox.enqueue(
            idempotency_key=f"{other_id}:warmup:1",
            channel="vk",
            kind="message",
            due_at=NOW,
            now=NOW,
            lead_id=other_id,
        )
        await uow.commit()

    async with db.unit_of_work() as uow:
        repeat = await uow.outbox.enqueue(
            idempotency_key=f"{lead_id}:warmup:2",
            channel="telegram",
            kind="message",
            due_at=NOW,
            now=NOW,
            lead_id=lead_id,
        )
        assert repeat is None
        pending = await uow.outbox.pending_for_lead(lead_id)
        assert [r.payload["step"] for r in pending] == ["warmup:2", "warmup:1", "warmup:3"]
        assert [r.due_at for r in pending] == [due["warmup:2"], due["warmup:1"], due["warmup:3"]]
        pending[0].status, pending[0].sent_at = "sent", NOW
        await uow.commit()

    async with db.unit_of_work() as uow:
        pending = await uow.outbox.pending_for_lead(lead_id)
        assert [r.payload["step"] for r in pending] == ["warmup:1", "warmup:3"]
        rows = select(func.count()).select_from(OutboxRow).where(OutboxRow.lead_id == lead_id)
        assert (await uow.session.execute(rows)).scalar() == 3


async def test_deleting_a_lead_deletes_everything_about_it(db: Database) -> None:
    lead_id = await new_lead(db)
    kept_id = await new_lead(db, "vk", "500")

    for owner in (lead_id, kept_id):
        async with db.unit_of_work() as uow:
            await uow.leads.add_contact(
                owner, "phone", "+79161234567", verified=True, channel="telegram", now=NOW
            )
            await uow.leads.give_consent(
                owner, "personal_data", text_version="v1", channel="telegram", now=NOW
            )
            await uow.leads.add_tag(owner, "hot", now=NOW)
            await uow.leads.set_answer(owner, "budget", "100", score=1, now=NOW)
            uow.events.add(owner, "started", now=NOW)
            uow.events.add_stage_change(owner, None, "new", reason="start", now=NOW)
            await uow.sequences.start(owner, "warmup", now=NOW)
            await uow.outbox.enqueue(
                idempotency_key=f"{owner}:warmup:1",
                channel="telegram",
                kind="message",
                due_at=NOW,
                now=NOW,
                lead_id=owner,
            )
            await uow.commit()

    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        await uow.session.delete(lead)
        await uow.commit()

    tables = [Identity, Contact, Consent, Tag, Answer, Event, StageChange, SequenceRun, OutboxRow]
    async with db.unit_of_work() as uow:
        assert await uow.leads.get(lead_id) is None
        assert await uow.leads.find_by_identity("telegram", "100") is None
        for table in tables:
            left = select(func.count()).select_from(table).where(table.lead_id == lead_id)
            kept = select(func.count()).select_from(table).where(table.lead_id == kept_id)
            assert (await uow.session.execute(left)).scalar() == 0, table.__tablename__
            assert (await uow.session.execute(kept)).scalar() == 1, table.__tablename__


async def test_locked_read_modify_write_loses_no_update(db: Database) -> None:
    lead_id = await new_lead(db)

    async def add_point() -> None:
        async with db.unit_of_work() as uow:
            found = await uow.leads.find_by_identity("telegram", "100", lock=True)
            assert found is not None
            lead, _ = found
            score = lead.score
            await asyncio.sleep(0.001)  # let the others run between the read and the write
            lead.score = score + 1
            await uow.commit()

    await asyncio.gather(*(add_point() for _ in range(20)))

    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        assert lead.score == 20


# SQLite takes the write lock at BEGIN, so a transaction never holds a stale read there;
# on PostgreSQL a row read earlier in the transaction may have changed before the lock.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_locked_read_refreshes_a_lead_read_earlier(db: Database) -> None:
    lead_id = await new_lead(db)

    async with db.unit_of_work() as uow:
        before = await uow.leads.get(lead_id)
        assert before is not None
        assert before.score == 0

        async with db.unit_of_work() as other:
            concurrent = await other.leads.get(lead_id, lock=True)
            assert concurrent is not None
            concurrent.score = 7
            await other.commit()

        found = await uow.leads.find_by_identity("telegram", "100", lock=True)
        assert found is not None
        lead, _ = found
        assert lead.score == 7
        lead.score += 1
        await uow.commit()

    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        assert lead.score == 8


async def test_events_are_counted_by_their_details(db: Database) -> None:
    lead_id = await new_lead(db)
    async with db.unit_of_work() as uow:
        uow.events.add(lead_id, "magnet_delivered", now=NOW, payload={"offer": "guide"})
        uow.events.add(lead_id, "magnet_delivered", now=NOW, payload={"offer": "audit"})
        uow.events.add(lead_id, "magnet_delivered", now=NOW, payload={"offer": "guide"})
        assert await uow.events.count(lead_id, "magnet_delivered") == 3
        assert await uow.events.count(lead_id, "magnet_delivered", offer="guide") == 2
        assert await uow.events.count(lead_id, "magnet_delivered", offer="consult") == 0


async def test_an_update_key_is_handled_once_even_by_racing_transactions(db: Database) -> None:
    async with db.unit_of_work() as uow:
        assert await uow.inbound.first_time("telegram:1", now=NOW)
        await uow.commit()
    async with db.unit_of_work() as uow:
        assert not await uow.inbound.first_time("telegram:1", now=NOW)
        assert await uow.inbound.first_time("telegram:2", now=NOW)
        await uow.commit()
    async with db.unit_of_work() as uow:
        assert await uow.inbound.forget_before(NOW + timedelta(seconds=1)) == 2
        await uow.commit()
    async with db.unit_of_work() as uow:
        assert await uow.inbound.first_time("telegram:1", now=NOW)  # forgotten: new again


async def test_erasure_forgets_the_person_and_keeps_anonymous_counts(db: Database) -> None:
    lead_id = await new_lead(db)
    async with db.unit_of_work() as uow:
        await uow.leads.add_contact(
            lead_id, "phone", "+79991234567", verified=True, channel="telegram", now=NOW
        )
        await uow.leads.set_answer(lead_id, "name", "Анна", score=0, now=NOW)
        await uow.leads.add_tag(lead_id, "vip", now=NOW)
        await uow.leads.give_consent(
            lead_id, "personal_data", text_version="v1", channel="telegram", now=NOW
        )
        uow.events.add(lead_id, "answered", now=NOW, payload={"question": "name", "value": "Анна"})
        uow.events.add(lead_id, "unmatched_text", now=NOW, payload={"text": "мой паспорт 1234"})
        await uow.commit()
    async with db.unit_of_work() as uow:
        await uow.leads.erase_personal_data(lead_id, now=NOW)
        await uow.commit()
    async with db.unit_of_work() as uow:
        lead = await uow.leads.get(lead_id)
        assert lead is not None
        assert lead.erased_at == NOW
        assert lead.first_name is None
        assert await uow.leads.find_by_identity("telegram", "100") is None
        assert await uow.leads.contacts(lead_id) == []
        assert await uow.leads.answers(lead_id) == {}
        assert await uow.leads.tags(lead_id) == set()
        assert await uow.leads.active_consent(lead_id, "personal_data") is None
        events = {e.name: e.payload for e in await uow.events.for_lead(lead_id)}
        assert events == {"answered": {"question": "name"}, "unmatched_text": {}}
