"""How many statements one event of the shipped funnel costs, on both databases: a turn loads
its state in a few reads and writes its changes together at commit. A bound that is crossed
means a query per something crept back into the turn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import SHIPPED_SCENARIO
from tests.prospect import Prospect, snapshot

# The most statements each event may take (BEGIN and COMMIT not counted).
BOUNDS = {
    "start": 6,  # a new lead: find, create lead and identity, answers, the event, the lead
    "offer": 6,  # a button: the offer taken, the stage, consent asked (consents read)
    "consent": 6,
    "marketing": 6,
    # An answer that is a contact, delivers the guide and starts its chain: the lead, its
    # answers, the contact's other owners, consents and chains read; the chain's row (its id
    # goes in the step's row), the step; then everything else at commit.
    "e-mail": 16,
    "question": 4,  # free text the FAQ answers: the lead, its answers, the event, the lead
}
# SQLite cannot tell which new id is whose in a multi-row INSERT ... RETURNING, so
# SQLAlchemy inserts a flush's events one by one there (three events at the e-mail).
SQLITE_EXTRA = {"e-mail": 2}


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "COMMIT")):
            seen.append(" ".join(sql.split()[:4]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", statement)


async def test_each_event_of_the_guide_walk_stays_within_its_statements(
    db: Database, clock: FakeClock
) -> None:
    loaded = load_scenario(SHIPPED_SCENARIO)
    s = loaded.scenario
    funnel = Funnel(db, ActiveScenario(loaded), clock)
    anna = Prospect(funnel)
    walk: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("start", lambda: anna.start("src_site")),
        ("offer", lambda: anna.press(s.offers["guide"].title)),
        ("consent", lambda: anna.press(s.consent.accept)),
        ("marketing", lambda: anna.press(s.consent.marketing_accept)),
        ("e-mail", lambda: anna.say("anna@example.com")),
        ("question", lambda: anna.say("сколько стоит внедрение?")),
    ]
    counts = {}
    for name, step in walk:
        with counting(db) as seen:
            await step()
        counts[name] = len(seen)
        bound = BOUNDS[name] + (SQLITE_EXTRA.get(name, 0) if db.dialect == "sqlite" else 0)
        assert len(seen) <= bound, f"{name}: {len(seen)} statements: {seen}"
    # The walk did what it is there to do, so the counts are of the real work.
    state = await snapshot(db, "1001")
    assert state.contacts == {("email", "anna@example.com", False)}
    assert state.sequences == {"guide_warmup": "active"}
    assert {"magnet_delivered", "faq_answered"} <= set(state.events)
    assert counts["question"] >= 3  # the lead read, the event and the lead's update
