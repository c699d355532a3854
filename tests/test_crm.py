"""CRM export over real HTTP: a fake Bitrix24 portal (tests/crm_fake.py) keeps the leads and
answers as Bitrix24 does, or with recorded Bitrix24 REST responses; a fake webhook receiver on
127.0.0.1 records what the exporter sent."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.crm import (
    BITRIX24,
    WEBHOOK,
    CrmExporter,
    CrmLead,
    CrmRejected,
    bitrix24_lookup,
    bitrix24_request,
    sign,
    webhook_body,
)
from bot.transport import RetryLater, TemporaryFailure
from tests.crm_fake import FakeBitrix24, running

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "crm"
# The secret parts of the two URLs; no error text or log line may contain them.
BITRIX24_TOKEN = "s3cr3tw3bh00kt0k3n"
WEBHOOK_PATH_SECRET = "hk7Qm2secretpath"
WEBHOOK_SECRET = "shared-signing-secret"
KEY = "crm:42:bitrix24"

SAMPLE = CrmLead(
    lead_id=42,
    title="Лид из Telegram: Анна (аудит)",
    name="Анна",
    phones=("+79161234567", "+74951234567"),
    emails=("anna@example.ru",),
    source="vkads",
    utm={
        "utm_source": "vk",
        "utm_medium": "cpc",
        "utm_campaign": "spring_audit",
        "utm_content": "banner_2",
        "utm_term": "",
    },
    offer="Аудит рекламы",
    stage="qualified",
    score=65,
    qualified_by="score 65 >= 60",
    answers=(
        ("Какой у вас бюджет?", "100–300 тыс. ₽"),
        ("Когда хотите начать?", "В этом месяце"),
    ),
    messenger="telegram:@anna",
    created_at=datetime(2025, 5, 14, 9, 30, tzinfo=UTC),
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    """A webhook receiver: records every request and answers each with the configured status,
    body and headers."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            Received(request.method, request.path, dict(request.headers), await request.read())
        )
        return web.Response(status=self.status, body=self.body, headers=self.headers)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    # The fake server's own access log prints paths; only what the exporter logs is checked.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def portal() -> AsyncIterator[FakeBitrix24]:
    async with running(FakeBitrix24(token=BITRIX24_TOKEN)) as fake:
        yield fake


@pytest.fixture
async def bitrix(portal: FakeBitrix24) -> AsyncIterator[CrmExporter]:
    # A short timeout: the portal's hang outlasts it.
    exporter = CrmExporter(bitrix24_url=portal.webhook_url, timeout=0.3)
    try:
        yield exporter
    finally:
        await exporter.aclose()


@pytest.fixture
async def hook(server: FakeServer) -> AsyncIterator[CrmExporter]:
    exporter = CrmExporter(
        webhook_url=f"{server.base_url}/hooks/{WEBHOOK_PATH_SECRET}?source=leadbot",
        webhook_secret=WEBHOOK_SECRET,
    )
    try:
        yield exporter
    finally:
        await exporter.aclose()


def free_port() -> int:
    """A port nobody listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Bitrix24 ---------------------------------------------------------------------------


def rest_path(method: str) -> str:
    return f"/rest/1/{BITRIX24_TOKEN}/{method}.json"


async def test_bitrix24_looks_the_lead_up_then_adds_the_fixture_request(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    result = await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    lookup, add = portal.calls
    assert (lookup.verb, lookup.path) == ("POST", rest_path("crm.lead.list"))
    assert (
        lookup.params
        == bitrix24_lookup(SAMPLE)
        == {
            "filter": {"ORIGINATOR_ID": "leadbot", "ORIGIN_ID": "42"},
            "select": ["ID", "ORIGINATOR_ID", "ORIGIN_ID"],
            "order": {"ID": "ASC"},
        }
    )
    assert (add.verb, add.path) == ("POST", rest_path("crm.lead.add"))
    assert add.headers["Content-Type"] == "application/json"
    assert add.params == fixture("bitrix24_request.json")
    [stored] = portal.leads.values()
    assert result == stored["ID"]
    assert (stored["ORIGINATOR_ID"], stored["ORIGIN_ID"], stored["NAME"]) == (
        "leadbot",
        "42",
        "Анна",
    )


async def test_bitrix24_recorded_success_answer_gives_its_lead_id(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    recorded = fixture("bitrix24_success.json")
    portal.answer_next(recorded["status"], recorded["body"], method="crm.lead.add")

    assert await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY) == "3465"


@pytest.mark.parametrize("suffix", ["", "/", "//"])
async def test_bitrix24_methods_are_joined_whatever_the_setting_ends_with(
    portal: FakeBitrix24, suffix: str
) -> None:
    exporter = CrmExporter(bitrix24_url=f"{portal.base_url}/rest/1/{BITRIX24_TOKEN}{suffix}")
    try:
        await exporter.export(BITRIX24, SAMPLE, idempotency_key=KEY)
    finally:
        await exporter.aclose()

    assert [c.path for c in portal.calls] == [
        rest_path("crm.lead.list"),
        rest_path("crm.lead.add"),
    ]


async def test_a_lead_already_in_bitrix24_is_not_added_again(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    first = await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)
    again = await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert again == first
    assert len(portal.leads) == 1
    assert portal.methods() == ["crm.lead.list", "crm.lead.add", "crm.lead.list"]


@pytest.mark.parametrize("hang", [False, True], ids=["dropped", "timed-out"])
async def test_a_lead_created_whose_answer_was_lost_is_found_by_the_retry(
    portal: FakeBitrix24, bitrix: CrmExporter, hang: bool
) -> None:
    portal.lose_answer_next(hang=hang)

    with pytest.raises(TemporaryFailure):
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)
    [created] = portal.leads.values()
    retried = await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert retried == created["ID"]
    assert len(portal.leads) == 1
    assert portal.methods().count("crm.lead.add") == 1


async def test_a_listed_lead_of_another_origin_is_not_taken_for_this_one(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    # What a portal that ignored the filter would list.
    others = [
        {"ID": "7", "ORIGINATOR_ID": "another-app", "ORIGIN_ID": "42"},
        {"ID": "8", "ORIGINATOR_ID": "leadbot", "ORIGIN_ID": "420"},
    ]
    portal.answer_next(200, {"result": others, "total": 2}, method="crm.lead.list")

    result = await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    [created] = portal.leads.values()
    assert result == created["ID"]


def test_a_lead_without_contacts_or_tags_sends_no_empty_fields() -> None:
    bare = dataclasses.replace(
        SAMPLE, name=None, phones=(), emails=(), source=None, utm={}, offer=None, answers=()
    )

    fields = bitrix24_request(bare)["fields"]

    assert not {"NAME", "PHONE", "EMAIL"} & fields.keys()
    assert not [key for key in fields if key.startswith("UTM_")]
    assert None not in fields.values()
    assert fields["SOURCE_DESCRIPTION"] == "telegram:@anna"
    assert fields["COMMENTS"] == (
        "Этап: qualified\nБаллы: 65\nКвалифицирован: score 65 >= 60\nМессенджер: telegram:@anna"
    )
    assert (fields["ORIGINATOR_ID"], fields["ORIGIN_ID"]) == ("leadbot", "42")


@pytest.mark.parametrize("method", ["crm.lead.list", "crm.lead.add"])
@pytest.mark.parametrize(
    ("name", "error", "text"),
    [
        ("bitrix24_query_limit_exceeded.json", RetryLater, "QUERY_LIMIT_EXCEEDED"),
        ("bitrix24_internal_error.json", TemporaryFailure, "INTERNAL_SERVER_ERROR"),
        ("bitrix24_no_auth_found.json", CrmRejected, "Wrong authorization data"),
        ("bitrix24_invalid_credentials.json", CrmRejected, "Invalid request credentials"),
        ("bitrix24_insufficient_scope.json", CrmRejected, "insufficient_scope"),
        ("bitrix24_validation_error.json", CrmRejected, 'обязательное поле "Бюджет"'),
    ],
)
async def test_bitrix24_errors_map_to_what_the_worker_does_next(
    portal: FakeBitrix24,
    bitrix: CrmExporter,
    caplog: pytest.LogCaptureFixture,
    method: str,
    name: str,
    error: type[Exception],
    text: str,
) -> None:
    recorded = fixture(name)
    portal.answer_next(recorded["status"], recorded["body"], method=method)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(error) as raised:
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    # The worker retries RetryLater and TemporaryFailure; CrmRejected must not be either.
    assert type(raised.value) is error
    assert text in str(raised.value)
    assert f"{method}: HTTP {recorded['status']}" in str(raised.value)
    assert BITRIX24_TOKEN not in str(raised.value)
    assert BITRIX24_TOKEN not in caplog.text
    assert portal.methods()[-1] == method
    assert portal.leads == {}


async def test_bitrix24_query_limit_waits_for_the_bucket_to_drain(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    portal.limit_next()

    with pytest.raises(RetryLater) as raised:
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert 1 <= raised.value.seconds <= 10


async def test_bitrix24_error_text_never_echoes_the_webhook_url(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    url = f"{portal.base_url}{rest_path('crm.lead.add')}"
    portal.answer_next(
        400, {"error": "", "error_description": f"Bad call to {url}"}, method="crm.lead.add"
    )

    with pytest.raises(CrmRejected) as raised:
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert "Bad call to" in str(raised.value)
    assert BITRIX24_TOKEN not in str(raised.value)


async def test_a_wrong_webhook_code_is_refused_without_echoing_it(portal: FakeBitrix24) -> None:
    exporter = CrmExporter(bitrix24_url=f"{portal.base_url}/rest/1/n0t-the-c0de/")
    try:
        with pytest.raises(CrmRejected, match="INVALID_CREDENTIALS") as raised:
            await exporter.export(BITRIX24, SAMPLE, idempotency_key=KEY)
    finally:
        await exporter.aclose()

    assert "n0t-the-c0de" not in str(raised.value)
    assert portal.leads == {}


async def test_bitrix24_html_page_means_a_wrong_url_not_a_lead(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    portal.answer_next(200, b"<html>Bitrix24 login</html>", {"Content-Type": "text/html"})

    with pytest.raises(CrmRejected, match="not a REST answer"):
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert portal.leads == {}


async def test_a_redirect_is_not_followed_as_a_bodyless_get(
    portal: FakeBitrix24, bitrix: CrmExporter
) -> None:
    portal.answer_next(301, b"", {"Location": f"{portal.base_url}/elsewhere"})

    with pytest.raises(CrmRejected, match="redirected"):
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert [c.verb for c in portal.calls] == ["POST"]


async def test_an_unreachable_portal_is_a_temporary_failure_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = CrmExporter(bitrix24_url=f"http://127.0.0.1:{free_port()}/rest/1/{BITRIX24_TOKEN}/")
    try:
        with pytest.raises(TemporaryFailure) as raised:
            await exporter.export(BITRIX24, SAMPLE, idempotency_key=KEY)
    finally:
        await exporter.aclose()

    assert BITRIX24_TOKEN not in str(raised.value)
    assert BITRIX24_TOKEN not in caplog.text
    # A logged traceback prints the cause too, and aiohttp's texts may hold the URL.
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize("method", ["crm.lead.list", "crm.lead.add"])
async def test_a_portal_that_does_not_answer_in_time_is_a_temporary_failure(
    portal: FakeBitrix24, bitrix: CrmExporter, method: str
) -> None:
    portal.hang_next(method=method)

    with pytest.raises(TemporaryFailure) as raised:
        await bitrix.export(BITRIX24, SAMPLE, idempotency_key=KEY)

    assert "Timeout" in str(raised.value)
    assert method in str(raised.value)
    assert BITRIX24_TOKEN not in str(raised.value)
    assert portal.leads == {}


# --- Generic webhook --------------------------------------------------------------------


EXPECTED_WEBHOOK = {
    "event": "lead.handed_off",
    "lead": {
        "id": 42,
        "name": "Анна",
        "phones": ["+79161234567", "+74951234567"],
        "emails": ["anna@example.ru"],
        "source": "vkads",
        "utm": {
            "utm_source": "vk",
            "utm_medium": "cpc",
            "utm_campaign": "spring_audit",
            "utm_content": "banner_2",
            "utm_term": "",
        },
        "offer": "Аудит рекламы",
        "stage": "qualified",
        "score": 65,
        "qualified_by": "score 65 >= 60",
        "answers": [
            {"question": "Какой у вас бюджет?", "answer": "100–300 тыс. ₽"},
            {"question": "Когда хотите начать?", "answer": "В этом месяце"},
        ],
        "messenger": "telegram:@anna",
        "created_at": "2025-05-14T09:30:00+00:00",
    },
}


async def test_webhook_is_signed_keyed_and_shaped(server: FakeServer, hook: CrmExporter) -> None:
    server.answer(202, b"")

    result = await hook.export(WEBHOOK, SAMPLE, idempotency_key=KEY)

    assert result is None
    [request] = server.received
    assert request.method == "POST"
    assert request.path == f"/hooks/{WEBHOOK_PATH_SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == KEY
    # What a receiver does: HMAC the raw bytes it got and compare in constant time.
    expected = hmac.new(WEBHOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Leadbot-Signature"], f"sha256={expected}")
    assert json.loads(request.body) == EXPECTED_WEBHOOK


async def test_webhook_body_is_compact_sorted_utf8_and_stable() -> None:
    body = webhook_body(SAMPLE)

    assert body == webhook_body(dataclasses.replace(SAMPLE))
    assert body == json.dumps(
        EXPECTED_WEBHOOK, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    assert "Анна".encode() in body


def test_signature_changes_with_the_body_and_the_secret() -> None:
    body = webhook_body(SAMPLE)
    other = webhook_body(dataclasses.replace(SAMPLE, score=66))

    assert sign(WEBHOOK_SECRET, body).startswith("sha256=")
    assert len(sign(WEBHOOK_SECRET, body)) == len("sha256=") + 64
    assert sign(WEBHOOK_SECRET, body) != sign(WEBHOOK_SECRET, other)
    assert sign(WEBHOOK_SECRET, body) != sign("another-secret", body)


async def test_webhook_without_a_secret_is_sent_unsigned(server: FakeServer) -> None:
    server.answer(200, {"ok": True})
    exporter = CrmExporter(webhook_url=f"{server.base_url}/hooks/plain")
    try:
        assert await exporter.export(WEBHOOK, SAMPLE, idempotency_key=KEY) is None
    finally:
        await exporter.aclose()

    [request] = server.received
    assert "X-Leadbot-Signature" not in request.headers
    assert request.headers["Idempotency-Key"] == KEY
    assert request.body == webhook_body(SAMPLE)


@pytest.mark.parametrize(("headers", "seconds"), [({"Retry-After": "17"}, 17.0), ({}, 30.0)])
async def test_webhook_429_waits_as_told(
    server: FakeServer, hook: CrmExporter, headers: dict[str, str], seconds: float
) -> None:
    server.answer(429, {"error": "slow down"}, headers)

    with pytest.raises(RetryLater) as raised:
        await hook.export(WEBHOOK, SAMPLE, idempotency_key=KEY)

    assert raised.value.seconds == seconds


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TemporaryFailure), (503, TemporaryFailure), (400, CrmRejected), (404, CrmRejected)],
)
async def test_webhook_failures_map_by_status(
    server: FakeServer,
    hook: CrmExporter,
    caplog: pytest.LogCaptureFixture,
    status: int,
    error: type[Exception],
) -> None:
    server.answer(status, {"error": "lead rejected by receiver"})

    with pytest.raises(error) as raised:
        await hook.export(WEBHOOK, SAMPLE, idempotency_key=KEY)

    assert type(raised.value) is error
    assert f"HTTP {status}" in str(raised.value)
    assert "lead rejected by receiver" in str(raised.value)
    assert WEBHOOK_PATH_SECRET not in str(raised.value)
    assert WEBHOOK_PATH_SECRET not in caplog.text


# --- Configuration ----------------------------------------------------------------------


async def test_an_unconfigured_target_is_a_programming_error(server: FakeServer) -> None:
    exporter = CrmExporter(webhook_url=f"{server.base_url}/hooks/x")
    try:
        with pytest.raises(ValueError, match="bitrix24"):
            await exporter.export(BITRIX24, SAMPLE, idempotency_key=KEY)
        with pytest.raises(ValueError, match="amocrm"):
            await exporter.export("amocrm", SAMPLE, idempotency_key=KEY)
    finally:
        await exporter.aclose()

    assert server.received == []


def test_targets_list_what_is_configured_bitrix24_first() -> None:
    assert CrmExporter().targets == ()
    assert CrmExporter(bitrix24_url="", webhook_url="").targets == ()
    assert CrmExporter(webhook_url="https://h.example/x").targets == (WEBHOOK,)
    both = CrmExporter(webhook_url="https://h.example/x", bitrix24_url="https://b.example/r/1/t/")
    assert both.targets == (BITRIX24, WEBHOOK)


def test_a_malformed_url_fails_at_startup_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="bitrix24_url") as raised:
        CrmExporter(bitrix24_url=f"example.bitrix24.ru/rest/1/{BITRIX24_TOKEN}/")

    assert BITRIX24_TOKEN not in str(raised.value)


def test_a_naive_creation_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(SAMPLE, created_at=datetime(2025, 5, 14, 9, 30))


async def test_aclose_is_safe_before_use_and_twice(server: FakeServer) -> None:
    server.answer(204, b"")
    exporter = CrmExporter(webhook_url=f"{server.base_url}/hooks/x")
    await exporter.aclose()
    await exporter.export(WEBHOOK, SAMPLE, idempotency_key=KEY)
    await exporter.aclose()
    await exporter.aclose()

    assert len(server.received) == 1
