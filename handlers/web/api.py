"""The HTTP side beside the messengers: `POST /api/events` for the website or CRM,
`POST /api/spend` for ad spend, `GET /api/stats` for a dashboard and `POST /api/promo/redeem`
for the till or the shop (bearer token), and `GET /r/<token>` for tracked links. aiohttp, on
the server of the Telegram webhook when there is one."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar, cast, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.analytics import report
from bot.analytics.spend import MAX_NOTE, add_spend, month_days
from bot.analytics.window import By
from bot.outside import LeadRef, OutsideEvents, Refused
from bot.redemption import Redemptions
from bot.tracking import PATH
from handlers.web.server import MAX_BODY, web_app

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/events"
REDEEM_PATH = "/api/promo/redeem"
SPEND_PATH = "/api/spend"
STATS_PATH = "/api/stats"
OUTSIDE = web.AppKey("outside", OutsideEvents)
REDEMPTIONS = web.AppKey("redemptions", Redemptions)
TOKEN = web.AppKey("api_token", str)
TILLS = web.AppKey("tills", dict)  # token -> Caller, from REDEEM_TOKENS
Body = TypeVar("Body", bound=BaseModel)
# What each outcome of a redemption answers: the JSON's `status` says it in words too.
REDEEM_STATUS = {"redeemed": 200, "unknown": 404, "used_up": 409, "expired": 410, "locked": 429}


class EventBody(BaseModel):
    """What the website or CRM posts: the event, the lead (exactly one way to name it), and
    an optional amount, details and id of its own (a retried request with the same id
    counts once)."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    lead_id: int | None = Field(default=None, ge=1)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    token: str | None = Field(default=None, max_length=32)
    amount: Decimal | None = Field(default=None, ge=0, lt=Decimal("1e12"))
    details: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=20)
    id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_lead(self) -> EventBody:
        given = [k for k in ("lead_id", "phone", "email", "token") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("name the lead with exactly one of lead_id, phone, email, token")
        return self


class RedeemBody(BaseModel):
    """A code to redeem; optionally the amount paid (recorded as a purchase), the buyer
    (needed for a shared campaign code to be counted per client) and an id of the request's
    own (a retry is answered, not counted twice). `source` is still accepted and ignored:
    failures count against the caller's token, which a guesser cannot rotate."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    amount: Decimal | None = Field(default=None, ge=0, lt=Decimal("1e12"))
    lead_id: int | None = Field(default=None, ge=1)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    token: str | None = Field(default=None, max_length=32)
    source: str | None = Field(default=None, min_length=1, max_length=100)
    id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _at_most_one_lead(self) -> RedeemBody:
        given = [k for k in ("lead_id", "phone", "email", "token") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError("name the lead with at most one of lead_id, phone, email, token")
        return self


class SpendBody(BaseModel):
    """Ad spend of one source for a day (`date`) or a month (`month`); an id of the
    request's own makes a retry stored once."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")  # an Id, as in src_<source> links
    amount: Decimal = Field(ge=0, lt=Decimal("1e12"), decimal_places=2)
    day: date | None = Field(default=None, alias="date")  # `date` would shadow the type
    month: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    note: str | None = Field(default=None, max_length=MAX_NOTE)
    id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_span(self) -> SpendBody:
        if (self.day is None) == (self.month is None):
            raise ValueError("give exactly one of date (YYYY-MM-DD) and month (YYYY-MM)")
        if self.month is not None:
            try:
                month_days(self.month)
            except ValueError:
                raise ValueError(f"month {self.month!r} is not a month of the calendar") from None
        return self

    @property
    def days(self) -> tuple[date, date]:
        """The first and the last day the spend covers."""
        if self.month is not None:
            return month_days(self.month)
        assert self.day is not None
        return self.day, self.day


def _bad_request(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


@dataclass(frozen=True)
class Caller:
    """Who a bearer token says is calling: `api` (API_TOKEN) or a till of REDEEM_TOKENS. A
    public one (a form anybody can reach) is not told why a code is refused."""

    name: str
    public: bool = False


def _caller(request: web.Request, *, tills: bool) -> Caller | None:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    given_bytes = given.strip().encode()
    found = None
    expected = request.app.get(TOKEN)
    if expected and hmac.compare_digest(given_bytes, expected.encode()):
        found = Caller("api")
    for token, till in (request.app.get(TILLS) or {}).items() if tills else ():
        if hmac.compare_digest(given_bytes, token.encode()):  # every token compared: no timing
            found = till
    return found


async def _body(
    request: web.Request, model: type[Body], *, tills: bool = False
) -> tuple[Body, Caller] | web.Response:
    """The request's body as `model` and its caller, or the answer that refuses it (401 or
    400)."""
    caller = _caller(request, tills=tills)
    if caller is None:
        return web.json_response(
            {"error": "a valid bearer token is required"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        raw: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _bad_request("the body is not JSON")
    except web.HTTPRequestEntityTooLarge:
        return _bad_request(f"the body is larger than {MAX_BODY} bytes")
    try:
        return model.model_validate(raw), caller
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        return _bad_request(f"{where}: {reason}" if where else reason)


async def post_event(request: web.Request) -> web.Response:
    read = await _body(request, EventBody)
    if isinstance(read, web.Response):
        return read
    body, _ = read
    ref = LeadRef(body.lead_id, body.phone, body.email, body.token)
    try:
        recorded = await request.app[OUTSIDE].record(
            ref, body.event, amount=body.amount, details=dict(body.details), key=body.id
        )
    except Refused as refused:
        return web.json_response({"error": refused.reason}, status=refused.status)
    return web.json_response(
        {
            "lead_id": recorded.lead_id,
            "score": recorded.score,
            "stage": recorded.stage,
            "qualified": recorded.qualified,
            "duplicate": recorded.duplicate,
        }
    )


async def post_spend(request: web.Request) -> web.Response:
    read = await _body(request, SpendBody)
    if isinstance(read, web.Response):
        return read
    body, _ = read
    funnel = request.app[OUTSIDE].funnel
    first, last = body.days
    async with funnel.db.unit_of_work() as uow:
        added = await add_spend(
            uow.session,
            source=body.source,
            amount=body.amount,
            first_day=first,
            last_day=last,
            note=body.note,
            key=body.id,
            now=funnel.clock.now(),
        )
        await uow.commit()
    spend = added.spend
    answer = {
        "id": spend.id,
        "source": spend.source,
        "amount": f"{spend.amount:f}",  # a string: money stays exact
        "first_day": spend.first_day.isoformat(),
        "last_day": spend.last_day.isoformat(),
        "note": spend.note,
        "created_at": spend.created_at.isoformat(),
        "duplicate": added.duplicate,
    }
    return web.json_response(answer, status=200 if added.duplicate else 201)


async def get_stats(request: web.Request) -> web.Response:
    """The report as JSON for a dashboard: `?period=30d`, or `?since=YYYY-MM-DD&until=...`
    (days of the scenario's zone), and `by=source|offer|variant`; API_TOKEN only."""
    if _caller(request, tills=False) is None:
        return web.json_response(
            {"error": "a valid bearer token is required"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    query = request.query
    unknown = sorted(set(query) - {"period", "since", "until", "by"})
    if unknown:
        return _bad_request(f"unknown parameter {unknown[0]!r}: use period, since, until, by")
    by = query.get("by")
    if by not in (None, *get_args(By)):
        return _bad_request("by: use source, offer or variant")
    funnel = request.app[OUTSIDE].funnel
    s = funnel.scenarios.current.scenario
    try:
        window = report.window_for(
            s,
            funnel.clock.now(),
            period=query.get("period"),
            since=query.get("since"),
            until=query.get("until"),
            by=cast(By | None, by),
        )
    except ValueError as exc:
        return _bad_request(str(exc).replace("--", ""))
    async with funnel.db.unit_of_work() as uow:
        built = await report.build(uow.session, s, window)
    return web.json_response(report.as_json(built))


async def redeem_code(request: web.Request) -> web.Response:
    read = await _body(request, RedeemBody, tills=True)
    if isinstance(read, web.Response):
        return read
    body, caller = read
    given = any((body.lead_id, body.phone, body.email, body.token))
    ref = LeadRef(body.lead_id, body.phone, body.email, body.token) if given else None
    try:
        # Failures count against the caller its token proves, never a name in the body: a
        # guesser cannot rotate it, and one till's guesser does not lock out the others.
        outcome = await request.app[REDEMPTIONS].redeem(
            body.code,
            source=f"api:{caller.name}",
            by=caller.name,
            amount=body.amount,
            lead=ref,
            key=body.id,
        )
    except Refused as refused:
        return web.json_response({"error": refused.reason}, status=refused.status)
    if caller.public and outcome.status in ("unknown", "used_up", "expired"):
        refused = {"status": "refused", "code": outcome.code, "error": "the code is not accepted"}
        return web.json_response(refused, status=404)
    answer: dict[str, Any] = {"status": outcome.status, "code": outcome.code}
    if outcome.ok:
        answer |= {
            "promo": outcome.promo,
            "discount": outcome.discount,
            "lead_id": outcome.lead_id,
            "uses_left": outcome.uses_left,
            "duplicate": outcome.duplicate,
        }
    headers = {}
    if outcome.status == "expired":
        answer["error"] = f"the code expired: its last day was {outcome.last_day}"
    elif outcome.status == "used_up":
        answer["error"] = "the code has been used up"
        if outcome.used_at is not None:
            answer["used_at"] = outcome.used_at.isoformat()
    elif outcome.status == "unknown":
        answer["error"] = "no such code"
    elif outcome.status == "locked":
        answer["error"] = "too many failed attempts from this caller; try again later"
        answer["retry_after"] = outcome.retry_after
        headers["Retry-After"] = str(outcome.retry_after)
    return web.json_response(answer, status=REDEEM_STATUS[outcome.status], headers=headers)


async def follow_link(request: web.Request) -> web.Response:
    url = await request.app[OUTSIDE].click(request.match_info["token"])
    if url is None:
        return web.Response(
            status=404,
            text="Ссылка устарела или неверна. / This link is unknown or expired.",
            content_type="text/plain",
        )
    raise web.HTTPFound(url)


def add_api_routes(
    app: web.Application,
    outside: OutsideEvents,
    api_token: str | None,
    redemptions: Redemptions | None = None,
    tills: Mapping[str, Caller] | None = None,
) -> None:
    """Tracked links always; the events and spend API with API_TOKEN, redemption with it or with a
    till's token of REDEEM_TOKENS (no token, no API)."""
    app[OUTSIDE] = outside
    # GET only: a HEAD from a link checker is not a click.
    app.router.add_get(PATH + "{token}", follow_link, allow_head=False)
    if api_token:
        app[TOKEN] = api_token
        app.router.add_post(EVENTS_PATH, post_event)
        app.router.add_post(SPEND_PATH, post_spend)
        app.router.add_get(STATS_PATH, get_stats, allow_head=False)
    if api_token or tills:
        app[TILLS] = dict(tills or {})
        app[REDEMPTIONS] = redemptions or Redemptions(outside.funnel)
        app.router.add_post(REDEEM_PATH, redeem_code)


def api_app(
    outside: OutsideEvents,
    api_token: str | None,
    redemptions: Redemptions | None = None,
    tills: Mapping[str, Caller] | None = None,
) -> web.Application:
    app = web_app()
    add_api_routes(app, outside, api_token, redemptions, tills)
    return app
