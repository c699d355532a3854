"""The bot's web server as every route sees it: bodies bounded in size and in nesting, and
credentials that can only be ASCII refused when they are not, before any handler parses
them. A client's mistake is a 4xx, never the server's 500."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
# Telegram's deepest update (a reply inside a message, with its keyboard) nests about ten
# levels; Python's JSON parser gives up with RecursionError near a thousand.
MAX_DEPTH = 64
CREDENTIAL_HEADERS = ("Authorization", "X-Telegram-Bot-Api-Secret-Token")
# A JSON string (skipped whole, escapes and all) or a bracket.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Paths that carry a secret: a tracked link's token names a lead to the events API.
_SECRET_PATH = re.compile(r"^(/r/)[^/]+")
# Asked every few seconds by an orchestrator and a Prometheus: logged only when they fail.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def web_app() -> web.Application:
    return web.Application(client_max_size=MAX_BODY, middlewares=[refuse_malformed])


@web.middleware
async def refuse_malformed(request: web.Request, handler: Handler) -> web.StreamResponse:
    for name in CREDENTIAL_HEADERS:
        value = request.headers.get(name)
        if value is not None and not value.isascii():
            log.warning("%s %s refused: a non-ASCII %s header", request.method, request.path, name)
            return web.json_response({"error": f"{name} is not valid"}, status=401)
    if request.body_exists:
        try:
            body = await request.read()  # kept: the handler reads it again for free
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"error": f"the body is larger than {MAX_BODY} bytes"}, status=413
            )
        if nested_too_deep(body):
            log.warning("%s %s refused: JSON nested too deep", request.method, request.path)
            return web.json_response(
                {"error": f"the body nests deeper than {MAX_DEPTH} levels"}, status=400
            )
    return await handler(request)


def nested_too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON text opens more than `limit` arrays and objects inside each other."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # too few brackets to be that deep: the usual update, at C speed
    depth = 0
    for token in _TOKENS.finditer(body):
        bracket = token[0]
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in (b"]", b"}"):
            depth -= 1
    return False


class AccessLog(AbstractAccessLogger):
    """One line a request, without what could name a lead (a tracked link's token) and
    without the query string (a website's parameters are its own)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path in _PROBES and response.status < 400:
            return
        path = _SECRET_PATH.sub(r"\1…", request.path)
        self.logger.info("%s %s %s %.1f ms", request.method, path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
