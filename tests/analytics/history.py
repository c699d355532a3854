"""A generated history for the report tests, made by the bot itself: prospects arrive by deep
links over six weeks on a fake clock, take offers through the engine, get a chain with two
variants from the delivery worker, answer its NPS question by pressing a button, and buy
through the events API. What each simulated person did is kept on the Python side
(`Person`), so a test computes the expected figures from the simulation, not from the rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from bot.clock import FakeClock
from bot.messages import Kind
from bot.outside import LeadRef, OutsideEvents
from storage.database import Database
from storage.models import AdSpend
from tests.delivery.harness import Bench, load, scenario_folder, utc

START = utc(11, 2, 6)  # a Monday, 09:00 in Moscow
DAYS = 42
SOURCES = ("vk", "ya", None)  # None: came without a deep-link source
SPEND = {"vk": Decimal("84000"), "ya": Decimal("126000")}  # each over the six weeks
QUESTION = "А рассрочка у вас есть?"
VARIANT_A = "Вариант А: {name}, получилось открыть гайд?"
VARIANT_B = "Вариант Б: {name}, как вам гайд?"
CHAIN = f"""
sequences:
  report_chain:
    stop_on: [purchase]
    steps:
      - id: hello
        after: 1h
        text: "{VARIANT_A}"
        variants: {{b: "{VARIANT_B}"}}
        buttons: [{{text: "Открыл, спасибо", event: guide_opened}}]
      - {{id: nps, after: 7d, text: "Оцените нас", ask: nps, service: true}}
"""


@dataclass
class Person:
    external_id: str
    arrived: datetime
    source: str | None
    offer: str | None  # "guide", "audit" or None (only pressed /start)
    leaves: bool = False  # gives the consents, then never answers the offer's first question
    asks: bool = False  # asks something the FAQ cannot answer (not one who left mid-offer)
    stops: bool = False  # sends /stop on getting `hello`
    lead_id: int = 0
    variant: str | None = None  # "a" or "b": which text of `hello` reached the person
    hello_at: datetime | None = None
    clicked: bool = False  # pressed the button under `hello`
    nps: int | None = None
    nps_at: datetime | None = None
    purchases: list[tuple[datetime, Decimal]] = field(default_factory=list)

    @property
    def revenue(self) -> Decimal:
        return sum((amount for _, amount in self.purchases), Decimal(0))


@dataclass
class History:
    people: list[Person]
    bench: Bench
    spend: dict[str, Decimal]
    first_day: date
    last_day: date

    @property
    def now(self) -> datetime:
        return self.bench.clock.now()


async def generate(db: Database, tmp_path: Path, *, people: int = 150, seed: int = 17) -> History:
    """`people` prospects over six weeks; the clock ends two days after the last arrival."""
    rng = random.Random(seed)
    folder = scenario_folder(tmp_path, CHAIN, guide_starts="report_chain")
    bench = Bench(db, load(folder), FakeClock(START))
    outside = OutsideEvents(bench.funnel)
    crowd = sorted(
        (
            Person(
                external_id=str(5000 + n),
                arrived=START + timedelta(minutes=rng.randrange(DAYS * 24 * 60)),
                source=rng.choice(SOURCES),
                offer=rng.choices(("guide", "audit", None), (6, 2, 2))[0],
                leaves=(leaves := rng.random() < 0.15),
                asks=not leaves and rng.random() < 0.12,
                stops=rng.random() < 0.08,
            )
            for n in range(people)
        ),
        key=lambda p: p.arrived,
    )
    plans: dict[str, list[tuple[datetime, Decimal]]] = {}
    for person in crowd:
        if person.leaves:
            continue
        # Buyers: more of the audit's, a few of the rest; one to three purchases each.
        chance = {"audit": 0.5, "guide": 0.2, None: 0.05}[person.offer]
        if rng.random() < chance:
            first = person.arrived + timedelta(days=rng.uniform(0.5, 20))
            plans[person.external_id] = [
                (first + timedelta(days=10 * k), Decimal(rng.randrange(10, 200) * 500))
                for k in range(rng.choice((1, 1, 2, 3)))
            ]
    moments = sorted(
        [(p.arrived, "arrive", p) for p in crowd]
        + [(at, "buy", p) for p in crowd for at, _ in plans.get(p.external_id, [])],
        key=lambda item: item[0],
    )
    by_id = {p.external_id: p for p in crowd}
    for moment, what, person in moments:
        await _until(bench, moment, by_id, rng)
        if what == "arrive":
            await _arrive(bench, person)
        else:
            amount = dict(plans[person.external_id])[moment]
            await outside.record(
                LeadRef(lead_id=person.lead_id),
                "purchase",
                amount=amount,
                details={"product": "внедрение"},
            )
            person.purchases.append((moment, amount))
    await _until(bench, crowd[-1].arrived + timedelta(days=2), by_id, rng)
    first_day = START.date()
    last_day = first_day + timedelta(days=DAYS - 1)
    async with db.unit_of_work() as uow:
        await uow.session.execute(
            insert(AdSpend),
            [
                {
                    "source": source,
                    "first_day": first_day,
                    "last_day": last_day,
                    "amount": str(amount),
                    "created_at": START,
                }
                for source, amount in SPEND.items()
            ],
        )
        await uow.commit()
    return History(crowd, bench, dict(SPEND), first_day, last_day)


async def _arrive(bench: Bench, person: Person) -> None:
    prospect = bench.prospect(person.external_id, first_name="Гость")
    link = "-".join(
        part
        for part in (
            f"src_{person.source}" if person.source else "",
            f"o_{person.offer}" if person.offer else "",
        )
        if part
    )
    await prospect.start(link or None)
    if person.offer is not None:
        await prospect.press("Даю согласие")
        await prospect.press("Да, присылайте")
        if person.leaves:
            person.lead_id = await bench.lead_id(person.external_id)
            return
        answers = (
            (f"lead{person.external_id}@example.com",)
            if person.offer == "guide"
            else ("Олег", f"+7916{int(person.external_id):07d}", "10–50")
        )
        for answer in answers:
            if answer in prospect.labels():
                await prospect.press(answer)
            else:
                await prospect.say(answer)
    if person.asks:  # at the menu, once the offer (if any) is done
        await prospect.say(QUESTION)
    person.lead_id = await bench.lead_id(person.external_id)


async def _until(
    bench: Bench, moment: datetime, by_id: dict[str, Person], rng: random.Random
) -> None:
    """Run the worker up to `moment`; whoever got the NPS question answers it at once, and
    the text of `hello` that reached a person tells the variant."""
    seen = len(bench.transport.sent)
    await bench.run_until(moment)
    for sent in bench.transport.sent[seen:]:
        person = by_id[sent.external_id]
        buttons = {b.text: b.action for row in sent.message.buttons for b in row}
        if sent.text.startswith(("Вариант А", "Вариант Б")):
            person.variant = "a" if sent.text.startswith("Вариант А") else "b"
            person.hello_at = sent.at
            # b is the better text: it gets pressed more often
            if rng.random() < (0.3 if person.variant == "a" else 0.5):
                person.clicked = True
                await bench.press(person.external_id, buttons["Открыл, спасибо"])
            if person.stops:
                await bench.prospect(person.external_id).send(Kind.STOP)
        elif buttons.get("10") == "a:nps:10" and rng.random() < 0.8:
            person.nps = rng.choices(range(11), (1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 4))[0]
            person.nps_at = bench.clock.now()
            await bench.press(person.external_id, buttons[str(person.nps)])
