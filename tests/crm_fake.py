"""A fake Bitrix24 portal: an incoming webhook on 127.0.0.1 that keeps the leads it is given and
answers `crm.lead.add` and `crm.lead.list` the way Bitrix24's REST API does (apidocs.bitrix24.com:
crm-lead-add, crm-lead-list, the system error table).

It is no kinder than a real portal: a wrong webhook code gets INVALID_CREDENTIALS, an unknown
method ERROR_METHOD_NOT_FOUND, and a test can script the next calls to be refused (HTTP 400, an
empty `error` and the reason in `error_description`), fail (5xx, QUERY_LIMIT_EXCEEDED), hang
past the client's timeout, or create the lead and lose the answer, which is what makes a blind
retry of `crm.lead.add` (it has no idempotency key) create a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

TOKEN = "s3cr3tw3bh00kt0k3n"
PAGE = 50  # crm.lead.list answers 50 records at a time, whatever is asked
VALIDATION_ERROR = 'Не заполнено обязательное поле "Бюджет".'
# Multiple fields are not selected by "*": they must be named in `select`.
MULTIPLE_FIELDS = frozenset({"PHONE", "EMAIL", "WEB", "IM", "LINK"})

Behaviour = Callable[[web.Request, "Call"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Call:
    """One request the portal received."""

    verb: str  # the HTTP method: a followed redirect would show as a GET
    method: str  # the REST method, "crm.lead.add", without the ".json" suffix
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, Any]:
        try:
            params = json.loads(self.body)
        except ValueError:
            return {}
        return params if isinstance(params, dict) else {}


def _time() -> dict[str, Any]:
    now = time.time()
    return {"start": now, "finish": now, "duration": 0.0, "processing": 0.0, "operating": 0}


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def error(status: int, code: str, description: str) -> web.Response:
    """A Bitrix24 error answer: `error` is empty for a method's own errors (a refusal)."""
    return _answer(status, {"error": code, "error_description": description})


def _error_body(code: str, description: str) -> bytes:
    return json.dumps({"error": code, "error_description": description}).encode()


def _as_listed(value: Any) -> Any:
    # crm.lead.list gives every scalar as a string ("ID": "5", "OPPORTUNITY": "15000.00").
    if value is None or isinstance(value, (bool, str, list, dict)):
        return value
    return str(value)


class FakeBitrix24:
    """The portal's leads by ID (`leads`), every call it received (`calls`), and a script of
    what the next calls meet instead of the normal answer."""

    def __init__(self, *, user_id: int = 1, token: str = TOKEN) -> None:
        self.user_id = user_id
        self.token = token
        self.base_url = ""
        self.leads: dict[int, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self._script: list[tuple[str | None, Behaviour]] = []
        self._stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def webhook_url(self) -> str:
        """What the bot's `CRM_BITRIX24_WEBHOOK_URL` holds."""
        return f"{self.base_url}/rest/{self.user_id}/{self.token}/"

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    # ---- scripting the next calls (`method` None: whichever call comes next) ----

    def refuse_next(self, description: str = VALIDATION_ERROR) -> None:
        """The next `crm.lead.add` fails the portal's validation, as a required field would."""
        self._then("crm.lead.add", _fixed(400, _error_body("", description)))

    def fail_next(
        self,
        status: int = 500,
        code: str = "INTERNAL_SERVER_ERROR",
        description: str = "Internal server error",
        *,
        method: str | None = None,
        times: int = 1,
    ) -> None:
        for _ in range(times):
            self._then(method, _fixed(status, _error_body(code, description)))

    def limit_next(self, *, method: str | None = None, times: int = 1) -> None:
        """The leaky bucket is full: nothing is done, 503 QUERY_LIMIT_EXCEEDED."""
        self.fail_next(
            503, "QUERY_LIMIT_EXCEEDED", "Too many requests", method=method, times=times
        )

    def hang_next(self, *, method: str | None = None, times: int = 1) -> None:
        """The next calls get no answer until the portal stops: the client times out."""
        for _ in range(times):
            self._then(method, self._hang)

    def lose_answer_next(self, *, hang: bool = False) -> None:
        """The next `crm.lead.add` creates the lead, then the answer is lost: the connection
        drops, or (`hang`) nothing comes back before the client gives up."""

        async def create_then_lose(request: web.Request, call: Call) -> web.StreamResponse:
            self._add(call.params)
            if hang:
                return await self._hang(request, call)
            assert request.transport is not None
            request.transport.close()
            return web.Response()

        self._then("crm.lead.add", create_then_lose)

    def answer_next(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """A recorded answer, verbatim: a fixture's JSON, or bytes (an HTML page, a redirect)."""
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self._then(method, _fixed(status, raw, headers))

    def _then(self, method: str | None, behaviour: Behaviour) -> None:
        self._script.append((method, behaviour))

    async def _hang(self, request: web.Request, call: Call) -> web.StreamResponse:
        # No answer while the portal runs: the client gives up first. The late answer goes to
        # a connection the client has closed.
        await self._stopped.wait()
        return error(504, "", "Gateway Timeout")

    def _scripted(self, method: str) -> Behaviour | None:
        for index, (wanted, behaviour) in enumerate(self._script):
            if wanted in (None, method):
                del self._script[index]
                return behaviour
        return None

    # ---- the REST API ----

    async def handle(self, request: web.Request) -> web.StreamResponse:
        user, token, method = _route(request.path)
        call = Call(
            request.method, method, request.path, dict(request.headers), await request.read()
        )
        self.calls.append(call)
        if (user, token) != (str(self.user_id), self.token):
            return error(401, "INVALID_CREDENTIALS", "Invalid request credentials")
        behaviour = self._scripted(method)
        if behaviour is not None:
            return await behaviour(request, call)
        if method == "crm.lead.add":
            return self._add(call.params)
        if method == "crm.lead.list":
            return self._list(call.params)
        return error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")

    def _add(self, params: dict[str, Any]) -> web.Response:
        fields = params.get("fields")
        if not isinstance(fields, dict):
            return error(400, "", "Не указаны поля лида.")
        lead_id = max(self.leads, default=0) + 1
        self.leads[lead_id] = {**fields, "ID": str(lead_id)}
        return _answer(200, {"result": lead_id, "time": _time()})

    def _list(self, params: dict[str, Any]) -> web.Response:
        conditions = params.get("filter") or {}
        unsupported = [key for key in conditions if key.lstrip("=")[:1] in "<>!@%"]
        if unsupported:
            # The fake answers only what it models, rather than a wrong list.
            return error(400, "", f"fake Bitrix24: unsupported filter {unsupported}")
        found = [
            lead
            for lead in self.leads.values()
            if all(
                str(lead.get(key.lstrip("="))) == str(value) for key, value in conditions.items()
            )
        ]
        order = params.get("order") or {"ID": "ASC"}
        for key, direction in reversed(list(order.items())):
            found.sort(
                key=lambda lead, key=key: _sort_key(lead.get(key)),
                reverse=str(direction).upper() == "DESC",
            )
        start = int(params.get("start") or 0)
        select = params.get("select") or ["*"]
        page = [_selected(lead, select) for lead in found[start : start + PAGE]]
        answer: dict[str, Any] = {"result": page, "total": len(found), "time": _time()}
        if start + PAGE < len(found):
            answer["next"] = start + PAGE
        return _answer(200, answer)

    # ---- running ----

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # The access log would print paths, which hold the webhook code.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopped.set()
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def running(portal: FakeBitrix24 | None = None) -> AsyncIterator[FakeBitrix24]:
    portal = portal or FakeBitrix24()
    await portal.start()
    try:
        yield portal
    finally:
        await portal.stop()


def _route(path: str) -> tuple[str, str, str]:
    """(user, token, method) of `/rest/<user>/<token>/<method>[.json]`."""
    parts = [part for part in path.split("/") if part]
    if len(parts) != 4 or parts[0] != "rest":
        return "", "", ""
    method = parts[3].removesuffix(".json")
    return parts[1], parts[2], method


def _selected(lead: dict[str, Any], select: list[str]) -> dict[str, Any]:
    wanted = {
        key for key in lead if key in select or ("*" in select and key not in MULTIPLE_FIELDS)
    }
    return {key: _as_listed(lead[key]) for key in lead if key in wanted}


def _sort_key(value: Any) -> tuple[int, Any]:
    number = str(value)
    return (0, int(number)) if number.isdigit() else (1, number)


def _fixed(status: int, body: bytes, headers: dict[str, str] | None = None) -> Behaviour:
    async def behaviour(request: web.Request, call: Call) -> web.StreamResponse:
        return web.Response(
            status=status,
            body=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    return behaviour
