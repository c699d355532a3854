"""The HTTP side beside the messengers, through a real aiohttp server and client:
`POST /api/events` (bearer token) and `GET /r/<token>` (tracked links)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.messages import Button, Outgoing
from bot.outside import OutsideEvents
from bot.redemption import Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import CARD, Routes
from bot.tracking import link_token, track_buttons
from handlers.web.api import EVENTS_PATH, Caller, api_app
from storage.database import Database
from storage.models import OutboxRow, TrackedLink
from tests.conftest import FIXTURE_SCENARIO
from tests.prospect import LeadState, Prospect, events_of, snapshot

API_TOKEN = "secret-token"
LINK_BASE = "https://bot.example"
CASE_URL = "https://example.com/case?utm_source=bot"


def make_funnel(db: Database, clock: FakeClock) -> Funnel:
    return Funnel(
        db,
        ActiveScenario(load_scenario(FIXTURE_SCENARIO)),
        clock,
        routes=Routes(managers=("telegram",)),
        link_base=LINK_BASE,
    )


@dataclass
class Api:
    """A client of the running app: posts to `path` with `token` unless told otherwise."""

    base: str
    http: aiohttp.ClientSession
    path: str = EVENTS_PATH
    token: str = API_TOKEN

    async def post(
        self,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        raw = data if data is not None else json.dumps(body).encode()
        auth = {"Authorization": f"Bearer {self.token}"} if headers is None else headers
        sent = {"Content-Type": "application/json", **auth}
        async with self.http.post(self.base + self.path, data=raw, headers=sent) as response:
            return response.status, await response.json(), response.headers

    async def record(self, body: dict[str, Any]) -> dict[str, Any]:
        """Post an event that must be accepted; its answer."""
        status, answer, _ = await self.post(body)
        assert status == 200, answer
        return answer

    async def follow(self, url: str) -> tuple[int, str | None]:
        """Open a tracked link as a browser would (without following the redirect)."""
        path = urlsplit(url).path
        async with self.http.get(f"{self.base}{path}", allow_redirects=False) as response:
            await response.read()
            return response.status, response.headers.get("Location")


@asynccontextmanager
async def serving(
    funnel: Funnel,
    redemptions: Redemptions | None = None,
    *,
    path: str = EVENTS_PATH,
    tills: Mapping[str, Caller] | None = None,
) -> AsyncIterator[Api]:
    """The API app on a free port, and a client posting to `path` with the token."""
    runner = web.AppRunner(api_app(OutsideEvents(funnel), API_TOKEN, redemptions, tills))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://127.0.0.1:{port}", http, path=path)
    finally:
        await runner.cleanup()


@pytest.fixture
def funnel(sqlite_db: Database, clock: FakeClock) -> Funnel:
    """The test funnel with a managers' chat and tracked links (SQLite)."""
    return make_funnel(sqlite_db, clock)


@pytest.fixture
async def api(funnel: Funnel) -> AsyncIterator[Api]:
    async with serving(funnel) as client:
        yield client


@pytest.fixture
def any_funnel(db: Database, clock: FakeClock) -> Funnel:
    """The same on each database (SQLite and PostgreSQL)."""
    return make_funnel(db, clock)


@pytest.fixture
async def any_api(any_funnel: Funnel) -> AsyncIterator[Api]:
    async with serving(any_funnel) as client:
        yield client


# ---- leads made by walking the funnel ----


async def guide_lead(
    funnel: Funnel, external_id: str = "1001", email: str = "anna@example.com"
) -> LeadState:
    """A lead who took the guide and left an e-mail: 15 points, not qualified."""
    anna = Prospect(funnel, external_id)
    await anna.start("o_guide")
    await anna.press("Даю согласие")
    await anna.press("Да, присылайте")
    await anna.say(email)
    state = await snapshot(funnel.db, external_id)
    assert (state.score, state.stage) == (15, "warming")
    return state


async def audit_lead(
    funnel: Funnel, external_id: str = "2002", phone: str = "+79991234567"
) -> LeadState:
    """A lead who asked for the audit and typed a phone number (qualified by the walk)."""
    boris = Prospect(funnel, external_id, first_name="Борис")
    await boris.start()
    await boris.press("Бесплатный аудит")
    await boris.press("Даю согласие")
    await boris.press("Нет, спасибо")
    await boris.say("Борис")
    await boris.say(phone)
    await boris.press("до 10")
    return await snapshot(funnel.db, external_id)


async def cards_of(db: Database, lead_id: int) -> int:
    async with db.unit_of_work() as uow:
        query = select(func.count()).where(OutboxRow.lead_id == lead_id, OutboxRow.kind == CARD)
        return int((await uow.session.execute(query)).scalar_one())


# ---- who may post ----


async def test_without_a_token_the_api_answers_401_and_records_nothing(
    api: Api, funnel: Funnel
) -> None:
    before = await guide_lead(funnel)
    body = {"event": "case_read", "lead_id": before.lead_id}

    status, answer, headers = await api.post(body, headers={})
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in answer["error"]

    for header in ("Bearer wrong-token", "Basic c2VjcmV0LXRva2Vu", API_TOKEN, "Bearer"):
        status, _, headers = await api.post(body, headers={"Authorization": header})
        assert status == 401, header
        assert headers["WWW-Authenticate"] == "Bearer"

    after = await snapshot(funnel.db, "1001")
    assert (after.score, after.events) == (before.score, before.events)


# ---- what is refused ----


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"lead_id": "LEAD"}, "event: Field required"),
        ({"event": "Case-Read!", "lead_id": "LEAD"}, "event: String should match pattern"),
        ({"event": "case_read"}, "exactly one of lead_id, phone, email, token"),
        (
            {"event": "case_read", "lead_id": "LEAD", "email": "anna@example.com"},
            "exactly one of lead_id, phone, email, token",
        ),
        (
            {"event": "purchase", "lead_id": "LEAD", "amount": -1},
            "amount: Input should be greater",
        ),
        ({"event": "case_read", "lead_id": "LEAD", "colour": "red"}, "colour: Extra inputs"),
        ({"event": "case_read", "lead_id": "LEAD", "details": {"page": {"a": 1}}}, "details.page"),
        ({"event": "case_read", "lead_id": "LEAD", "details": {"tags": [1, 2]}}, "details.tags"),
        (
            {"event": "case_read", "lead_id": "LEAD", "details": {f"k{i}": i for i in range(21)}},
            "details: Dictionary should have at most 20 items",
        ),
        ({"event": "webinar_watched", "lead_id": "LEAD"}, "declare it under events:"),
        (["case_read"], "valid dictionary"),
    ],
    ids=[
        "missing-event",
        "bad-event-characters",
        "no-lead",
        "two-leads",
        "negative-amount",
        "unknown-field",
        "nested-details",
        "list-in-details",
        "too-many-details",
        "event-unknown-to-scenario",
        "not-an-object",
    ],
)
async def test_a_bad_body_is_refused_with_the_reason_and_records_nothing(
    api: Api, funnel: Funnel, body: Any, reason: str
) -> None:
    before = await guide_lead(funnel)
    if isinstance(body, dict) and body.get("lead_id") == "LEAD":
        body = {**body, "lead_id": before.lead_id}
    status, answer, _ = await api.post(body)
    assert status == 400
    assert reason in answer["error"]
    after = await snapshot(funnel.db, "1001")
    assert (after.score, after.events) == (before.score, before.events)


async def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    status, answer, _ = await api.post(data=b"event=case_read&lead_id=1")
    assert (status, answer) == (400, {"error": "the body is not JSON"})
    status, answer, _ = await api.post(data=b"\xff\xfe{")
    assert (status, answer) == (400, {"error": "the body is not JSON"})


@pytest.mark.parametrize(
    "ref",
    [{"lead_id": 999}, {"phone": "+7 912 000-00-00"}, {"email": "nobody@example.com"}],
    ids=["lead_id", "phone", "email"],
)
async def test_an_unknown_lead_is_404(api: Api, funnel: Funnel, ref: dict[str, Any]) -> None:
    await guide_lead(funnel)
    await audit_lead(funnel)
    status, answer, _ = await api.post({"event": "case_read", **ref})
    assert (status, answer) == (404, {"error": "no such lead"})


async def test_an_unknown_tracking_token_is_404_for_the_api_and_for_a_click(
    api: Api, funnel: Funnel
) -> None:
    await guide_lead(funnel)
    status, answer, _ = await api.post({"event": "case_read", "token": "no-such-token"})
    assert (status, answer) == (404, {"error": "no such lead"})
    assert await api.follow(f"{LINK_BASE}/r/no-such-token") == (404, None)


# ---- naming the lead ----


async def test_the_lead_is_found_by_id_phone_in_another_spelling_and_email_in_capitals(
    api: Api, funnel: Funnel
) -> None:
    anna = await guide_lead(funnel, email="anna@example.com")
    boris = await audit_lead(funnel, phone="+79991234567")

    by_id = await api.record({"event": "case_read", "lead_id": anna.lead_id})
    assert (by_id["lead_id"], by_id["score"]) == (anna.lead_id, anna.score + 10)

    for spelling in ("8 (999) 123-45-67", "+7 999 123 45 67", "79991234567", "89991234567"):
        answer = await api.record({"event": "contact_shared", "phone": spelling})
        assert answer["lead_id"] == boris.lead_id, spelling

    by_email = await api.record({"event": "case_read", "email": "ANNA@EXAMPLE.COM"})
    assert (by_email["lead_id"], by_email["score"]) == (anna.lead_id, anna.score + 20)


async def test_the_lead_is_found_by_the_token_of_its_tracked_link(
    api: Api, funnel: Funnel
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    [site] = [b for m in anna.last for row in m.buttons for b in row if b.url]
    assert site.text == "Сайт"
    assert site.url is not None
    assert site.url.startswith(f"{LINK_BASE}/r/")
    token = site.url.removeprefix(f"{LINK_BASE}/r/")

    answer = await api.record({"event": "case_read", "token": token})
    state = await snapshot(funnel.db, "1001")
    assert answer["lead_id"] == state.lead_id
    assert state.events[-1] == "case_read"


# ---- scoring, qualification, purchases ----


async def test_points_follow_the_scenario_and_max_times(api: Api, funnel: Funnel) -> None:
    anna = await guide_lead(funnel)  # one contact_shared (5 points) already
    ref = {"lead_id": anna.lead_id}
    scores = [(await api.record({"event": "contact_shared", **ref}))["score"] for _ in range(3)]
    assert scores == [20, 20, 20]  # max_times: 2, the walk's e-mail was the first
    assert (await api.record({"event": "case_read", **ref}))["score"] == 30
    assert (await api.record({"event": "start", **ref}))["score"] == 30  # no points declared
    state = await snapshot(funnel.db, "1001")
    assert state.score == 30
    assert state.events.count("contact_shared") == 4
    payloads = await events_of(funnel.db, anna.lead_id, "case_read")
    assert payloads == [{"via": "api"}]


async def test_the_lead_qualifies_once_and_one_card_is_queued(
    any_api: Api, any_funnel: Funnel
) -> None:
    anna = await guide_lead(any_funnel)
    assert await cards_of(any_funnel.db, anna.lead_id) == 0
    answers = [
        await any_api.record({"event": "case_read", "lead_id": anna.lead_id, "details": d})
        for d in ({"page": "/case/1"}, {"page": "/case/2"}, {}, {"n": 4}, {"ok": True}, {})
    ]
    assert [a["score"] for a in answers] == [25, 35, 45, 55, 65, 75]
    assert [a["qualified"] for a in answers] == [False, False, False, False, True, False]
    assert [a["stage"] for a in answers][-2:] == ["qualified", "qualified"]

    state = await snapshot(any_funnel.db, "1001")
    assert state.stage == "qualified"
    assert state.events.count("qualified") == 1
    assert state.sequences == {"guide_warmup": "stopped"}  # stop_on: [qualified]
    assert await cards_of(any_funnel.db, anna.lead_id) == 1
    payloads = await events_of(any_funnel.db, anna.lead_id, "case_read")
    assert payloads[0] == {"page": "/case/1", "via": "api"}
    assert payloads[4] == {"ok": True, "via": "api"}


async def test_a_repeated_request_with_the_same_id_counts_once(
    any_api: Api, any_funnel: Funnel
) -> None:
    anna = await guide_lead(any_funnel)
    body = {"event": "case_read", "lead_id": anna.lead_id, "id": "crm-42"}
    first = await any_api.record(body)
    again = await any_api.record(body)
    assert first == {
        "lead_id": anna.lead_id,
        "score": 25,
        "stage": "warming",
        "qualified": False,
        "duplicate": False,
    }
    assert again == {**first, "duplicate": True}
    other = await any_api.record({**body, "id": "crm-43"})
    assert (other["score"], other["duplicate"]) == (35, False)
    state = await snapshot(any_funnel.db, "1001")
    assert (state.score, state.events.count("case_read")) == (35, 2)


async def test_a_purchase_makes_a_customer_and_keeps_the_amount(api: Api, funnel: Funnel) -> None:
    anna = await guide_lead(funnel)
    answer = await api.record(
        {
            "event": "purchase",
            "email": "anna@example.com",
            "amount": "15000.50",
            "details": {"order": "A-17"},
        }
    )
    assert (answer["stage"], answer["qualified"]) == ("customer", False)
    state = await snapshot(funnel.db, "1001")
    assert state.stage == "customer"
    assert state.stages[-1] == "customer"
    assert state.sequences == {"guide_warmup": "stopped"}  # stop_on: [purchase]
    [payload] = await events_of(funnel.db, anna.lead_id, "purchase")
    assert payload == {"order": "A-17", "via": "api", "amount": 15000.5}
    assert await cards_of(funnel.db, anna.lead_id) == 0  # a customer is not handed over


# ---- tracked links ----


async def test_a_menu_link_redirects_with_the_token_and_records_the_click(
    api: Api, funnel: Funnel
) -> None:
    anna = Prospect(funnel)
    await anna.start()
    [site] = [b for m in anna.last for row in m.buttons for b in row if b.url]
    assert site.url is not None
    token = site.url.removeprefix(f"{LINK_BASE}/r/")

    status, location = await api.follow(site.url)
    assert status == 302
    assert location is not None
    parts = urlsplit(location)
    assert (parts.netloc, parts.path.strip("/"), parts.query) == ("example.com", "", f"lb={token}")
    state = await snapshot(funnel.db, "1001")
    assert state.events[-1] == "link_clicked"
    assert state.score == 0
    payloads = await events_of(funnel.db, state.lead_id, "link_clicked")
    assert payloads == [{"url": "https://example.com"}]

    await anna.start()  # shown again: the same link
    [again] = [b for m in anna.last for row in m.buttons for b in row if b.url]
    assert again.url == site.url


async def test_a_step_button_link_records_its_event_with_points_and_keeps_the_query(
    api: Api, funnel: Funnel
) -> None:
    anna = await guide_lead(funnel)
    step = Outgoing(
        "Анна, получилось открыть гайд?",
        buttons=((Button("Читать кейс", url=CASE_URL, event="case_read"),),),
    )
    async with funnel.db.unit_of_work() as uow:
        [tracked] = await track_buttons(
            uow, anna.lead_id, [step], LINK_BASE + "/", funnel.clock.now()
        )
        await uow.commit()
    [[button]] = tracked.buttons
    assert button.text == "Читать кейс"
    assert button.url is not None
    assert button.url.startswith(f"{LINK_BASE}/r/")
    assert button.event is None  # the event stays with the token, recorded on the click
    token = button.url.removeprefix(f"{LINK_BASE}/r/")

    status, location = await api.follow(button.url)
    assert status == 302
    assert location is not None
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "example.com", "/case")
    assert parse_qsl(parts.query) == [("utm_source", "bot"), ("lb", token)]

    state = await snapshot(funnel.db, "1001")
    assert state.score == anna.score + 10
    assert state.events[-2:] == ["link_clicked", "case_read"]
    assert await events_of(funnel.db, anna.lead_id, "case_read") == [{"via": "link"}]

    # Opened again (by the person, a link preview or a script): redirected, not counted.
    for _ in range(3):
        assert (await api.follow(button.url))[0] == 302
    state = await snapshot(funnel.db, "1001")
    assert state.score == anna.score + 10
    assert state.events.count("case_read") == 1
    assert state.events.count("link_clicked") == 1


async def test_a_tracked_link_is_the_same_for_the_same_lead_url_and_event(
    funnel: Funnel, clock: FakeClock
) -> None:
    anna = await guide_lead(funnel)
    boris = await guide_lead(funnel, "2002", "boris@example.com")
    now = clock.now()
    async with funnel.db.unit_of_work() as uow:
        first = await link_token(uow, anna.lead_id, CASE_URL, "case_read", now)
        await uow.commit()
    async with funnel.db.unit_of_work() as uow:
        same = await link_token(uow, anna.lead_id, CASE_URL, "case_read", now)
        no_event = await link_token(uow, anna.lead_id, CASE_URL, None, now)
        other_lead = await link_token(uow, boris.lead_id, CASE_URL, "case_read", now)
        await uow.commit()
    assert same == first
    assert len({first, no_event, other_lead}) == 3
    async with funnel.db.unit_of_work() as uow:
        count = select(func.count()).select_from(TrackedLink)
        assert (await uow.session.execute(count)).scalar_one() == 3
