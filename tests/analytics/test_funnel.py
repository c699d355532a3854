"""The report's funnel on both databases: a generated history of a few hundred leads whose
paths the test knows, and buyers through the events API who must not count as handed off."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bot import scoring, stats
from bot.analytics import funnel
from bot.analytics.window import Window
from bot.clock import FakeClock
from bot.handoff import Manager, ManagerDesk
from bot.outside import LeadRef, OutsideEvents
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import Routes
from storage.database import Database
from storage.models import Event, Handoff, Lead, StageChange
from tests.conftest import FIXTURE_SCENARIO
from tests.test_events_api import make_funnel

SINCE = datetime(2026, 10, 5, tzinfo=UTC)
UNTIL = datetime(2026, 11, 2, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
MSK = ZoneInfo("Europe/Moscow")
SOURCES = ("vk", "ya", "tg", None)
OFFERS = ("guide", "audit", None)

# A path: (funnel_stage, stage now, handoff status or None, claimed, bought, how it bought).
# `how`: "stage" a stage change to customer, "event" only a purchase event (an advocate
# who bought later), None: no purchase.
PATHS: dict[str, tuple[str, str, str | None, bool, bool, str | None]] = {
    "new": ("new", "new", None, False, False, None),
    "engaged": ("engaged", "engaged", None, False, False, None),
    "contact": ("contact", "contact", None, False, False, None),
    "warming": ("warming", "warming", None, False, False, None),
    "warming_unsubscribed": ("warming", "unsubscribed", None, False, False, None),
    "engaged_blocked": ("engaged", "blocked", None, False, False, None),
    "qualified_open": ("qualified", "qualified", "open", False, False, None),
    "not_fit": ("qualified", "lost", "not_fit", False, False, None),
    "claimed": ("handed_off", "handed_off", "claimed", True, False, None),
    "claimed_lost": ("handed_off", "lost", "lost", True, False, None),
    "won": ("customer", "customer", "won", True, True, "stage"),
    "bought_outside": ("customer", "customer", None, False, True, "stage"),
    "open_then_bought": ("customer", "customer", "open", False, True, "stage"),
    "claimed_then_bought": ("customer", "customer", "claimed", True, True, "stage"),
    "advocate_only": ("advocate", "advocate", None, False, False, None),
    "advocate_bought": ("advocate", "advocate", None, False, True, "event"),
    "won_advocate": ("advocate", "advocate", "won", True, True, "stage"),
}
WEIGHTS = {name: 3 if name in ("new", "engaged", "contact", "warming") else 1 for name in PATHS}


@dataclass
class Person:
    arrived: datetime
    source: str | None
    offer: str | None
    path: str
    lead_id: int = 0

    @property
    def funnel_stage(self) -> str:
        return PATHS[self.path][0]

    @property
    def stage(self) -> str:
        return PATHS[self.path][1]

    @property
    def handed_off(self) -> bool:
        return PATHS[self.path][3]

    @property
    def bought(self) -> bool:
        return PATHS[self.path][4]

    @property
    def qualified(self) -> bool:
        return PATHS[self.path][2] is not None or self.bought


async def generate(db: Database, seed: int, people: int = 320) -> list[Person]:
    """Leads over nine weeks around the window, each with the rows its path leaves."""
    rng = random.Random(seed)
    names, weights = list(PATHS), [WEIGHTS[n] for n in PATHS]
    crowd = [
        Person(
            arrived=SINCE - timedelta(days=14) + timedelta(minutes=rng.randrange(63 * 24 * 60)),
            source=rng.choice(SOURCES),
            offer=rng.choice(OFFERS),
            path=rng.choices(names, weights)[0],
        )
        for _ in range(people)
    ]
    # The window's edges exactly: the first moment is in, `until` is out.
    crowd[0].arrived, crowd[1].arrived = SINCE, UNTIL
    async with db.unit_of_work() as uow:
        leads = [
            Lead(
                created_at=p.arrived,
                updated_at=p.arrived,
                funnel_stage=p.funnel_stage,
                stage=p.stage,
                source=p.source,
                offer=p.offer,
            )
            for p in crowd
        ]
        uow.session.add_all(leads)
        await uow.session.flush()
        changes, handoffs, events = [], [], []
        for person, lead in zip(crowd, leads, strict=True):
            person.lead_id = lead.id
            _rows(person, rng, changes, handoffs, events)
        for model, rows in ((StageChange, changes), (Handoff, handoffs), (Event, events)):
            if rows:
                await uow.session.execute(insert(model), rows)
        await uow.commit()
    return crowd


def _rows(
    p: Person,
    rng: random.Random,
    changes: list[dict[str, object]],
    handoffs: list[dict[str, object]],
    events: list[dict[str, object]],
) -> None:
    """What bot.stages, bot.scoring, bot.handoff and bot.outside leave for this path."""
    at = p.arrived
    _, _, status, claimed, bought, how = PATHS[p.path]

    def change(before: str, after: str, reason: str) -> None:
        nonlocal at
        at += timedelta(hours=rng.randrange(1, 48))
        changes.append(
            {
                "lead_id": p.lead_id,
                "from_stage": before,
                "to_stage": after,
                "reason": reason,
                "created_at": at,
            }
        )

    last = "new"
    for stage in ("engaged", "contact", "warming"):
        if stage == p.funnel_stage or (
            p.funnel_stage not in ("new", "engaged", "contact") and rng.random() < 0.7
        ):
            change(last, stage, "chat")
            last = stage
        if stage == p.funnel_stage:
            break
    if status is not None:
        change(last, "qualified", "qualify: score")
        last = "qualified"
        row: dict[str, object] = {
            "lead_id": p.lead_id,
            "status": status,
            "rule": "score",
            "qualified_at": at,
        }
        if claimed:
            change(last, "handed_off", "claimed by Анна")
            last = "handed_off"
            row |= {"claimed_at": at, "manager_id": "telegram:1", "manager_name": "Анна"}
        if status in ("won", "lost", "not_fit"):
            row["closed_at"] = at
        handoffs.append(row)
    if bought:
        events.append(
            {
                "lead_id": p.lead_id,
                "name": "purchase",
                "payload": {"amount": 1000.0},
                "created_at": at + timedelta(hours=1),
            }
        )
        if how == "stage":
            change(last, "customer", "purchase reported")
            last = "customer"
    if p.funnel_stage == "advocate":
        change(last, "advocate", "friend #1")
    if p.stage in ("lost", "unsubscribed", "blocked"):
        change(p.funnel_stage, p.stage, "side")


def window(by: str | None = None) -> Window:
    return Window(since=SINCE, until=UNTIL, now=NOW, zone=MSK, by=by)  # type: ignore[arg-type]


def expected(people: list[Person]) -> tuple[dict[str, int], dict[str, int], int, int]:
    """reached per stage, side stages, customers through a manager and without, from paths."""
    stages = ("new", "engaged", "contact", "warming")
    rank = {s: i for i, s in enumerate(stages)}
    reached = dict.fromkeys((*stages, "qualified", "handed_off", "customer", "advocate"), 0)
    side = {"lost": 0, "unsubscribed": 0, "blocked": 0}
    via = without = 0
    for p in people:
        top = rank.get(p.funnel_stage, len(stages))  # higher stages passed all four
        for s in stages:
            reached[s] += rank[s] <= top
        reached["qualified"] += p.qualified
        reached["handed_off"] += p.handed_off
        reached["customer"] += p.bought
        reached["advocate"] += p.funnel_stage == "advocate"
        via += p.bought and p.handed_off
        without += p.bought and not p.handed_off
        if p.stage in side:
            side[p.stage] += 1
    return reached, side, via, without


def arrived_in_window(people: list[Person]) -> list[Person]:
    return [p for p in people if SINCE <= p.arrived < UNTIL]


async def test_the_funnel_counts_handoffs_and_purchases_from_what_happened(db: Database) -> None:
    people = await generate(db, seed=11)
    async with db.unit_of_work() as uow:
        figures = await funnel.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window()
        )
    inside = arrived_in_window(people)
    reached, side, via, without = expected(inside)
    c = figures.overall
    assert c.total == len(inside)
    assert c.reached == reached
    assert c.side == side
    assert (c.via_manager, c.without_manager) == (via, without)
    assert without > 0
    assert via > 0
    # The old count (every stage up to funnel_stage) would have put every buyer and advocate
    # under handed_off; these did not get there.
    inflated = sum(p.funnel_stage in ("handed_off", "customer", "advocate") for p in inside)
    assert c.reached["handed_off"] < inflated
    assert c.manager_conversion() == 100 * via / reached["handed_off"]
    assert c.conversion("customer") == 100 * reached["customer"] / reached["qualified"]
    assert c.conversion("handed_off") == 100 * reached["handed_off"] / reached["qualified"]
    assert c.share("lost") == 100 * side["lost"] / len(inside)
    assert figures.groups == ()


async def test_the_funnel_per_source_and_per_offer(db: Database) -> None:
    people = await generate(db, seed=12)
    inside = arrived_in_window(people)
    scenario = load_scenario(FIXTURE_SCENARIO).scenario
    for by in ("source", "offer"):
        async with db.unit_of_work() as uow:
            figures = await funnel.figures(uow.session, scenario, window(by))
        names = {getattr(p, by) for p in inside}
        sizes = {n: sum(getattr(p, by) == n for p in inside) for n in names}
        assert [name for name, _ in figures.groups] == sorted(
            names, key=lambda n: (-sizes[n], n is None, n or "")
        )
        for name, counts in figures.groups:
            group = [p for p in inside if getattr(p, by) == name]
            reached, side, via, without = expected(group)
            assert (counts.total, counts.reached, counts.side) == (len(group), reached, side)
            assert (counts.via_manager, counts.without_manager) == (via, without)
        assert figures.overall.reached == expected(inside)[0]
        table = funnel.tables(figures)[-1]
        assert [row[0] for row in table.rows][-1] != ""
        assert len(table.rows) == len(names)
        none_label = funnel.NO_GROUP_NAMES[by]
        by_label = {row[0]: row for row in table.rows}
        for name, counts in figures.groups:
            row = by_label[none_label if name is None else name]
            assert row[1:8] == (
                counts.total,
                *(counts.reached[s] for s in ("engaged", "contact", "warming", "qualified")),
                counts.reached["handed_off"],
                counts.via_manager,
            )
    # The variant split is for A/B: the funnel is then shown whole.
    async with db.unit_of_work() as uow:
        assert (await funnel.figures(uow.session, scenario, window("variant"))).groups == ()


async def test_the_old_stats_agree_with_the_report(db: Database) -> None:
    people = await generate(db, seed=13)
    async with db.unit_of_work() as uow:
        figures = await funnel.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window("source")
        )
        old = await stats.funnel_report(uow.session, since=SINCE, until=UNTIL, by="source")
    assert old.overall == figures.overall
    assert old.groups == {
        stats.NO_GROUP if name is None else name: counts for name, counts in figures.groups
    }
    assert old.overall.reached == expected(arrived_in_window(people))[0]


async def test_the_tables_show_the_figures(db: Database) -> None:
    people = await generate(db, seed=14, people=200)
    async with db.unit_of_work() as uow:
        figures = await funnel.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window()
        )
    inside = arrived_in_window(people)
    reached, side, via, without = expected(inside)
    main, side_table = funnel.tables(figures)
    rows = {row[0]: row for row in main.rows}
    assert rows["у менеджера (handed_off)"][1:3] == (
        reached["handed_off"],
        100 * reached["handed_off"] / reached["qualified"],
    )
    assert rows["  через менеджера"][1:3] == (via, 100 * via / reached["handed_off"])
    assert rows["  без менеджера"][1:] == (without, None, 100 * without / len(inside))
    assert rows["пришли (new)"][1:] == (len(inside), None, 100.0)
    assert [row[:2] for row in side_table.rows] == [
        ("потеряны (lost)", side["lost"]),
        ("отписались (unsubscribed)", side["unsubscribed"]),
        ("заблокировали бота (blocked)", side["blocked"]),
    ]


async def test_an_empty_window_has_no_percentages(db: Database) -> None:
    async with db.unit_of_work() as uow:
        figures = await funnel.figures(
            uow.session, load_scenario(FIXTURE_SCENARIO).scenario, window()
        )
    assert figures.overall.total == 0
    main, _ = funnel.tables(figures)
    assert all(row[2] is None and row[3] is None for row in main.rows)


async def test_buyers_through_the_events_api_are_not_handed_off(
    db: Database, clock: FakeClock
) -> None:
    """Real rows: two buyers reported by the website (one of them handed over to a manager
    and claimed first), a lead the managers only got a card of, and a lead with no deal."""
    arrived = clock.now()
    async with db.unit_of_work() as uow:
        leads = [
            Lead(created_at=arrived, updated_at=arrived, source="site", offer="guide")
            for _ in range(4)
        ]
        uow.session.add_all(leads)
        await uow.commit()
    outside_buyer, claimed_buyer, open_card, _idle = (lead.id for lead in leads)
    clock.advance(timedelta(hours=1))
    async with db.unit_of_work() as uow:
        for lead_id in (claimed_buyer, open_card):
            lead = await uow.leads.get(lead_id, lock=True)
            assert lead is not None
            assert await scoring.hand_over(uow, lead, clock.now(), Routes(), "просит звонок")
        await uow.commit()
    scenarios = ActiveScenario(load_scenario(FIXTURE_SCENARIO))
    desk = ManagerDesk(db, scenarios, clock, {})
    anna = Manager("telegram", "1", "Анна")
    assert await desk.press(anna, f"h:claim:{claimed_buyer}") == f"Лид #{claimed_buyer} ваш."
    clock.advance(timedelta(hours=1))
    outside = OutsideEvents(make_funnel(db, clock))
    for lead_id in (outside_buyer, claimed_buyer):
        recorded = await outside.record(LeadRef(lead_id=lead_id), "purchase", amount=Decimal(5000))
        assert recorded.stage == "customer"

    span = Window(since=arrived, until=arrived + timedelta(seconds=1), now=clock.now(), zone=MSK)
    async with db.unit_of_work() as uow:
        c = (await funnel.figures(uow.session, scenarios.current.scenario, span)).overall
        old = await stats.funnel_report(uow.session, since=span.since, until=span.until)
        bought = {
            lead.id: lead.funnel_stage
            for lead in [await uow.leads.get(i) for i in (outside_buyer, claimed_buyer)]
            if lead is not None
        }
    assert bought == {outside_buyer: "customer", claimed_buyer: "customer"}
    assert c.total == 4
    assert c.reached["qualified"] == 3  # two cards and the outside buyer
    assert c.reached["handed_off"] == 1  # only the lead a manager claimed
    assert c.reached["customer"] == 2
    assert (c.via_manager, c.without_manager) == (1, 1)
    assert c.manager_conversion() == 100
    assert old.overall == c
