"""A delivery bench: the engine, a worker and a recording transport on one fake clock.

Scenarios are the test funnel (tests/fixtures/funnel) copied into a temporary folder, with
the guide offer pointed at a chain of the test's own and extra YAML files beside it.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot import reactions, sequences
from bot.clock import FakeClock
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.messages import Incoming, Kind, Outgoing
from bot.pacing import DEFAULT_LIMITS, MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import LoadedScenario, load_scenario
from bot.transport import Transport
from storage.database import Database
from storage.models import OutboxRow
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import Prospect, events_of

MSK = ZoneInfo("Europe/Moscow")
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # the `clock` fixture: 12:00 in Moscow


def utc(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def scenario_folder(
    tmp_path: Path,
    extra: str = "",
    *,
    guide_starts: str | None = None,
    name: str = "scenario",
) -> Path:
    """The test funnel in `tmp_path/name`, plus `extra` (YAML) as extra.yaml; `guide_starts`
    makes the guide offer start that chain instead of guide_warmup."""
    folder = tmp_path / name
    shutil.copytree(FIXTURE_SCENARIO, folder)
    if guide_starts is not None:
        funnel_yaml = folder / "funnel.yaml"
        text = funnel_yaml.read_text(encoding="utf-8")
        assert text.count("start: guide_warmup") == 1
        funnel_yaml.write_text(
            text.replace("start: guide_warmup", f"start: {guide_starts}"), encoding="utf-8"
        )
    if extra:
        (folder / "extra.yaml").write_text(textwrap.dedent(extra), encoding="utf-8")
    return folder


def load(folder: Path) -> LoadedScenario:
    return load_scenario(folder)


@dataclass(frozen=True)
class Sent:
    external_id: str
    message: Outgoing
    key: str | None
    at: datetime

    @property
    def text(self) -> str:
        return self.message.text


class RecordingTransport:
    """Records every message it is given; can be told to fail the next sends. With `dedup`
    it behaves like VK's random_id: a second send with a key seen before is dropped."""

    def __init__(self, clock: FakeClock, channel: str = "telegram", *, dedup: bool = False):
        self.channel = channel
        self.clock = clock
        self.dedup = dedup
        self.attempts: list[Sent] = []  # everything handed to the platform, failed or not
        self.sent: list[Sent] = []  # what reached the person
        self._failures: list[BaseException] = []

    def fail_next(self, error: BaseException, times: int = 1) -> None:
        self._failures += [error] * times

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        record = Sent(external_id, message, idempotency_key, self.clock.now())
        self.attempts.append(record)
        if self._failures:
            raise self._failures.pop(0)
        if self.dedup and any(s.key == idempotency_key for s in self.sent):
            return
        self.sent.append(record)

    def texts(self, external_id: str | None = None) -> list[str]:
        return [s.text for s in self.sent if external_id in (None, s.external_id)]

    def times(self, external_id: str | None = None) -> list[datetime]:
        return [s.at for s in self.sent if external_id in (None, s.external_id)]


@dataclass(frozen=True)
class RowView:
    step: str
    status: str
    due_at: datetime
    attempts: int
    last_error: str | None
    leased_by: str | None


def fake_clock_worker(
    funnel: Funnel,
    transports: Mapping[str, Transport],
    *,
    worker_id: str = "w1",
    **options: Any,
) -> DeliveryWorker:
    """A delivery worker for the funnel's database and scenario, on its (fake) clock, the
    pacer and the waits too (a wait moves the clock); `options` as DeliveryWorker takes them
    (managers, crm, sleep)."""
    clock = funnel.clock
    pacer = MemoryPacer(DEFAULT_LIMITS, clock=lambda: clock.now().timestamp())

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    options.setdefault("sleep", sleep)
    return DeliveryWorker(
        funnel.db,
        funnel.scenarios,
        clock,
        transports,
        pacer,
        funnel,
        worker_id=worker_id,
        **options,
    )


class Bench:
    """The engine and a delivery worker sharing one database, scenario and fake clock."""

    def __init__(self, db: Database, loaded: LoadedScenario, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        self.scenarios = ActiveScenario(loaded)
        self.funnel = Funnel(db, self.scenarios, clock)
        self.transport = RecordingTransport(clock)
        self.worker = self.new_worker("w1")

    def new_worker(
        self,
        worker_id: str,
        transport: RecordingTransport | None = None,
    ) -> DeliveryWorker:
        """A worker with its own pacer, as a separate process (or a restart) would have."""
        transports = {"telegram": transport or self.transport}
        return fake_clock_worker(self.funnel, transports, worker_id=worker_id, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        """Pacing waits move the fake clock; nothing sleeps on wall time."""
        self.clock.advance(timedelta(seconds=seconds))

    def move_to(self, moment: datetime) -> None:
        self.clock.advance(moment - self.clock.now())

    async def tick_at(self, moment: datetime, worker: DeliveryWorker | None = None) -> int:
        self.move_to(moment)
        return await (worker or self.worker).tick()

    async def run_until(self, end: datetime) -> None:
        """Tick at every due time up to `end`, then move the clock to `end`."""
        while (due := await self.worker.next_due()) is not None and due <= end:
            await self.tick_at(max(due, self.clock.now()))
        self.move_to(max(end, self.clock.now()))

    # ---- prospects ----

    def prospect(self, external_id: str = "1001", first_name: str = "Анна") -> Prospect:
        return Prospect(self.funnel, external_id, first_name=first_name)

    async def take_offer(
        self,
        offer: str,
        external_id: str = "1001",
        *,
        first_name: str = "Анна",
        answers: tuple[str, ...] = (),
        timezone: str | None = None,
        marketing: bool = True,
    ) -> Prospect:
        """Open an offer by deep link, agree to both consents, answer its questions (a
        label of the last reply's buttons is pressed, anything else is typed)."""
        prospect = self.prospect(external_id, first_name)
        await prospect.start(f"o_{offer}")
        if timezone is not None:
            await self.set_timezone(external_id, timezone)
        await prospect.press("Даю согласие")
        await prospect.press("Да, присылайте" if marketing else "Нет, спасибо")
        for answer in answers:
            if answer in prospect.labels():
                await prospect.press(answer)
            else:
                await prospect.say(answer)
        return prospect

    async def take_guide(
        self, external_id: str = "1001", *, first_name: str = "Анна", timezone: str | None = None
    ) -> Prospect:
        prospect = await self.take_offer(
            "guide",
            external_id,
            first_name=first_name,
            answers=(f"lead{external_id}@example.com",),
            timezone=timezone,
        )
        assert prospect.texts() == f"Ваш гайд, {first_name}."
        return prospect

    async def press(self, external_id: str, action: str) -> list[Outgoing]:
        """A press of a button the worker sent (its action comes back as the payload)."""
        reply = await self.funnel.handle(
            Incoming(
                channel="telegram",
                external_id=external_id,
                kind=Kind.BUTTON,
                payload=action,
                first_name="Анна",
            )
        )
        return reply.messages

    async def react(
        self,
        external_id: str,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
        stages: set[str] | None = None,
    ) -> list[str]:
        """Feed events or reached stages to `stop_on`/`start_on`, as the engine does at the
        end of an event (for what the engine cannot record yet: a purchase with a product,
        a stage set by a later release)."""
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            lead = await uow.leads.get(lead_id, lock=True)
            assert lead is not None
            started = await sequences.react(
                uow,
                self.scenarios.current.scenario,
                lead,
                self.clock.now(),
                list(events),
                stages or set(),
            )
            await uow.commit()
        return started

    async def happen(self, external_id: str, name: str, **payload: Any) -> None:
        """An event from outside the chat (the events API, a manager) recorded and reacted
        to as those are: chains, promos, referrals and the dates events carry."""
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            lead = await uow.leads.get(lead_id, lock=True)
            assert lead is not None
            now, scenario = self.clock.now(), self.scenarios.current.scenario
            uow.events.add(lead.id, name, now=now, payload=payload)
            await reactions.react_and_record(uow, scenario, lead, now, [(name, payload)], set())
            await uow.commit()

    # ---- reading the database ----

    async def lead_id(self, external_id: str = "1001") -> int:
        async with self.db.unit_of_work() as uow:
            found = await uow.leads.find_by_identity("telegram", external_id)
            assert found is not None
            return found[0].id

    async def set_timezone(self, external_id: str, timezone: str) -> None:
        async with self.db.unit_of_work() as uow:
            found = await uow.leads.find_by_identity("telegram", external_id)
            assert found is not None
            found[0].timezone = timezone
            await uow.commit()

    async def rows(self, external_id: str = "1001") -> list[RowView]:
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            query = select(OutboxRow).where(OutboxRow.lead_id == lead_id).order_by(OutboxRow.id)
            return [
                RowView(
                    r.payload["step"], r.status, r.due_at, r.attempts, r.last_error, r.leased_by
                )
                for r in (await uow.session.execute(query)).scalars()
            ]

    async def runs(self, external_id: str = "1001") -> dict[str, str]:
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            return {r.sequence: r.status for r in await uow.sequences.for_lead(lead_id)}

    async def run_row(self, sequence: str, external_id: str = "1001") -> tuple[str, int]:
        """The status and the number of the lead's run of the chain now."""
        lead_id = await self.lead_id(external_id)
        async with self.db.unit_of_work() as uow:
            run = await uow.sequences.get(lead_id, sequence)
            assert run is not None, f"{external_id} was never in {sequence}"
            return run.status, run.run_no

    async def pending(self, external_id: str = "1001") -> list[tuple[str, datetime]]:
        return [(r.step, r.due_at) for r in await self.rows(external_id) if r.status == "pending"]

    async def events(self, external_id: str, name: str) -> list[dict[str, Any]]:
        return await events_of(self.db, await self.lead_id(external_id), name)
