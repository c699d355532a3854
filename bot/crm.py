"""Exporting a handed-off lead to the managers' CRM: a Bitrix24 incoming webhook
(`crm.lead.list`, then `crm.lead.add` if the lead is not there yet) or a generic signed JSON
webhook.

Failures are raised in the delivery worker's terms: `RetryLater` / `TemporaryFailure` from
`bot.transport` for what a later attempt can fix, `CrmRejected` for what it cannot.
Both configured URLs carry secrets (the Bitrix24 one holds the webhook token in its path), so
no URL is ever logged or put into an exception's text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.transport import RetryLater, TemporaryFailure

log = logging.getLogger(__name__)

BITRIX24 = "bitrix24"
WEBHOOK = "webhook"

WEBHOOK_EVENT = "lead.handed_off"
SIGNATURE_HEADER = "X-Leadbot-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ORIGINATOR_ID = "leadbot"

BITRIX24_ADD = "crm.lead.add"
BITRIX24_LIST = "crm.lead.list"
# Bitrix24's leaky bucket drains two requests a second, so a short wait frees a slot.
BITRIX24_QUERY_LIMIT_WAIT = 2.0
# OPERATION_TIME_LIMIT blocks the method for up to ten minutes of the portal's time budget.
BITRIX24_OPERATION_LIMIT_WAIT = 60.0
BITRIX24_RATE_CODES = frozenset({"QUERY_LIMIT_EXCEEDED"})
BITRIX24_BUDGET_CODES = frozenset({"OPERATION_TIME_LIMIT"})
# Wrong or revoked webhook, missing rights or scope, a closed portal: whatever the HTTP status,
# only a person changing the settings can fix these.
BITRIX24_PERMANENT_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "INVALID_CREDENTIALS",
        "insufficient_scope",
        "ACCESS_DENIED",
        "expired_token",
        "user_access_error",
        "INVALID_REQUEST",
        "ERROR_METHOD_NOT_FOUND",
        "PORTAL_DELETED",
    }
)
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")

WEBHOOK_DEFAULT_RETRY_AFTER = 30.0
# A Retry-After of days would park the row for good; the worker's own limits take over sooner.
MAX_RETRY_AFTER = 3600.0
ERROR_SNIPPET = 200


@dataclass(frozen=True)
class CrmLead:
    """What the CRM is told about one lead, built by the caller from the database."""

    lead_id: int
    title: str
    name: str | None
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    source: str | None
    utm: Mapping[str, str]
    offer: str | None
    stage: str
    score: int
    qualified_by: str | None
    answers: tuple[tuple[str, str], ...]
    messenger: str
    created_at: datetime

    def __post_init__(self) -> None:
        # A naive time would be read as the server's local time and shift the lead's date.
        if self.created_at.tzinfo is None:
            raise ValueError("CrmLead.created_at must be timezone-aware")


class CrmRejected(Exception):
    """The CRM refused the lead or the settings are wrong: retrying cannot help."""


def _comments(lead: CrmLead) -> str:
    """The lead's story for the CRM card, one fact a line; unknown facts are left out."""
    lines = [
        f"{label}: {value}"
        for label, value in (
            ("Оффер", lead.offer),
            ("Этап", lead.stage),
            ("Баллы", str(lead.score)),
            ("Квалифицирован", lead.qualified_by),
            ("Мессенджер", lead.messenger),
            ("Метка источника", lead.source),
        )
        if value
    ]
    if lead.answers:
        lines.append("")
        lines.append("Ответы:")
        lines.extend(f"• {question} — {answer}" for question, answer in lead.answers)
    return "\n".join(lines)


def bitrix24_request(lead: CrmLead) -> dict[str, Any]:
    """The JSON body of `crm.lead.add`. Empty values are omitted: Bitrix24 would store an
    empty phone or a blank UTM tag as given."""
    fields: dict[str, Any] = {"TITLE": lead.title}
    if lead.name:
        fields["NAME"] = lead.name
    phones = [{"VALUE": phone, "VALUE_TYPE": "WORK"} for phone in lead.phones if phone]
    if phones:
        fields["PHONE"] = phones
    emails = [{"VALUE": email, "VALUE_TYPE": "WORK"} for email in lead.emails if email]
    if emails:
        fields["EMAIL"] = emails
    # Without SOURCE_ID Bitrix24 files the lead under the first source in its list ("Call").
    fields["SOURCE_ID"] = "OTHER"
    fields["SOURCE_DESCRIPTION"] = (
        f"{lead.messenger}, метка {lead.source}" if lead.source else lead.messenger
    )
    for key in UTM_KEYS:
        value = lead.utm.get(key)
        if value:
            fields[key.upper()] = value
    fields["COMMENTS"] = _comments(lead)
    # Lets managers (and a later lookup) recognise a lead that was exported twice.
    fields["ORIGINATOR_ID"] = ORIGINATOR_ID
    fields["ORIGIN_ID"] = str(lead.lead_id)
    return {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}}


def bitrix24_lookup(lead: CrmLead) -> dict[str, Any]:
    """The JSON body of the `crm.lead.list` call that finds this lead if it was exported
    before. The origin is selected too and checked in the answer, so a portal that ignored
    the filter cannot pass another lead off as this one."""
    return {
        "filter": {"ORIGINATOR_ID": ORIGINATOR_ID, "ORIGIN_ID": str(lead.lead_id)},
        "select": ["ID", "ORIGINATOR_ID", "ORIGIN_ID"],
        "order": {"ID": "ASC"},
    }


def _exported_id(result: Any, lead: CrmLead) -> str | None:
    """The Bitrix24 ID of the first listed lead that carries this lead's origin, if any."""
    if not isinstance(result, list):
        return None
    for record in result:
        if (
            isinstance(record, dict)
            and record.get("ORIGINATOR_ID") == ORIGINATOR_ID
            and str(record.get("ORIGIN_ID")) == str(lead.lead_id)
            and record.get("ID")
        ):
            return str(record["ID"])
    return None


def _created_id(result: Any) -> str | None:
    """The new lead's ID from `crm.lead.add`'s result (a number; a string is taken too)."""
    if isinstance(result, int) and not isinstance(result, bool):
        result = str(result)
    return result if isinstance(result, str) and result else None


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def webhook_body(lead: CrmLead) -> bytes:
    """The generic webhook's body: compact UTF-8 JSON with sorted keys, so the same lead gives
    the same bytes (and the same signature) on every attempt. Unknown values are null, so a
    receiver sees the same shape every time."""
    payload = {
        "event": WEBHOOK_EVENT,
        "lead": {
            "id": lead.lead_id,
            "name": lead.name,
            "phones": list(lead.phones),
            "emails": list(lead.emails),
            "source": lead.source,
            "utm": dict(lead.utm),
            "offer": lead.offer,
            "stage": lead.stage,
            "score": lead.score,
            "qualified_by": lead.qualified_by,
            "answers": [
                {"question": question, "answer": answer} for question, answer in lead.answers
            ],
            "messenger": lead.messenger,
            "created_at": lead.created_at.astimezone(UTC).isoformat(),
        },
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(
        "utf-8"
    )


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the exact body bytes, the form GitHub webhooks use."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _secret_parts(url: str) -> tuple[str, ...]:
    """The spellings of a configured URL that must never reach a log or an error text."""
    parts = urlsplit(url)
    candidates = {url, url.rstrip("/"), parts.path, parts.path.rstrip("/"), parts.query}
    return tuple(sorted((c for c in candidates if len(c) > 1), key=len, reverse=True))


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def _checked_url(setting: str, url: str | None) -> str | None:
    """The URL, or None when unset; a malformed one fails at startup rather than per lead.
    The message names the setting, never the value, which holds a secret."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{setting} must be an http(s) URL")
    return url


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (a number or an HTTP date), bounded."""
    if not value:
        return WEBHOOK_DEFAULT_RETRY_AFTER
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return WEBHOOK_DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return WEBHOOK_DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class CrmExporter:
    """Sends leads to the configured CRM targets over one lazily opened HTTP session."""

    def __init__(
        self,
        *,
        bitrix24_url: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        # Empty settings (an unset environment variable) mean "not configured".
        self._bitrix24_url = _checked_url("bitrix24_url", bitrix24_url)
        self._webhook_url = _checked_url("webhook_url", webhook_url)
        self._webhook_secret = webhook_secret or None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._secrets = tuple(
            part
            for url in (self._bitrix24_url, self._webhook_url)
            if url
            for part in _secret_parts(url)
        )

    @property
    def targets(self) -> tuple[str, ...]:
        """The configured targets, Bitrix24 first."""
        return tuple(
            target
            for target, url in ((BITRIX24, self._bitrix24_url), (WEBHOOK, self._webhook_url))
            if url
        )

    async def export(self, target: str, lead: CrmLead, *, idempotency_key: str) -> str | None:
        """Create the lead in `target`; the CRM's id of the new record when it tells one
        (Bitrix24), else None. Raises `RetryLater`, `TemporaryFailure` or `CrmRejected`;
        `ValueError` for a target that is not configured."""
        if target == BITRIX24 and self._bitrix24_url:
            return await self._export_bitrix24(self._bitrix24_url, lead)
        if target == WEBHOOK and self._webhook_url:
            await self._export_webhook(self._webhook_url, lead, idempotency_key)
            return None
        raise ValueError(f"CRM target {target!r} is not configured")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop that will use it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        return self._session

    async def _post(
        self, label: str, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST without following redirects: aiohttp would turn a redirected POST into a body-
        less GET. `label` names the target (and method) in texts. Network failures become
        `TemporaryFailure` with the URL scrubbed out and no chained cause, since a logged
        traceback of the cause would print the URL."""
        try:
            async with self._http().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                return response.status, response.headers, await response.read()
        except aiohttp.InvalidURL:
            raise CrmRejected(f"{label}: the configured URL is invalid") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = _scrub(str(exc), self._secrets)
            reason = f"{label}: {type(exc).__name__}" + (f": {detail}" if detail else "")
            log.warning("crm: request failed: %s", reason)
            raise TemporaryFailure(reason) from None

    async def _export_bitrix24(self, base_url: str, lead: CrmLead) -> str | None:
        # crm.lead.add has no idempotency key: a lead created whose answer was lost (a timeout,
        # a dropped connection, a crash before the row was recorded) would be added again by
        # the retry. So the lead is looked up by its origin first, on every attempt: a retry
        # after a crash looks like a first attempt from here, and it is one more call per
        # handed-off lead, well within the portal's two requests a second.
        listed = await self._call_bitrix24(base_url, BITRIX24_LIST, bitrix24_lookup(lead), lead)
        found = _exported_id(listed, lead)
        if found is not None:
            log.info("crm bitrix24: lead %s is already there as %s", lead.lead_id, found)
            return found
        created = _created_id(
            await self._call_bitrix24(base_url, BITRIX24_ADD, bitrix24_request(lead), lead)
        )
        if created is None:
            # The call succeeded, so a retry would create a second lead; go on without an id.
            log.warning("crm bitrix24: lead %s created, the answer has no id", lead.lead_id)
        else:
            log.info("crm bitrix24: lead %s created as %s", lead.lead_id, created)
        return created

    async def _call_bitrix24(
        self, base_url: str, method: str, params: dict[str, Any], lead: CrmLead
    ) -> Any:
        """Call one REST method; the `result` of its answer. Errors are raised in the worker's
        terms, each text naming the method, never the URL."""
        url = f"{base_url.rstrip('/')}/{method}.json"
        body = json.dumps(params, ensure_ascii=False).encode("utf-8")
        label = f"{BITRIX24} {method}"
        status, headers, raw = await self._post(
            label, url, body, {"Content-Type": "application/json"}
        )
        answer = _json_object(raw)
        if 200 <= status < 300 and "error" not in answer:
            if "result" not in answer:
                # An HTML page or foreign JSON: the URL points somewhere other than REST.
                raise CrmRejected(
                    f"{label}: HTTP {status} is not a REST answer: check the webhook URL"
                )
            return answer["result"]
        raise self._bitrix24_error(label, status, headers, answer, lead)

    def _bitrix24_error(
        self,
        label: str,
        status: int,
        headers: Mapping[str, str],
        answer: dict[str, Any],
        lead: CrmLead,
    ) -> Exception:
        """What a Bitrix24 error answer means for the worker: wait, retry, or give up."""
        code = str(answer.get("error") or "")
        description = _scrub(str(answer.get("error_description") or ""), self._secrets)
        described = ": ".join(part for part in (code, description) if part) or "no details"
        reason = f"{label}: HTTP {status}: {described}"
        log.warning("crm bitrix24: lead %s not exported: %s", lead.lead_id, reason)
        if code in BITRIX24_RATE_CODES or status == 429:
            seconds = (
                _retry_after(headers["Retry-After"])
                if "Retry-After" in headers
                else BITRIX24_QUERY_LIMIT_WAIT
            )
            return RetryLater(seconds, reason)
        if code in BITRIX24_BUDGET_CODES:
            return RetryLater(BITRIX24_OPERATION_LIMIT_WAIT, reason)
        if code in BITRIX24_PERMANENT_CODES:
            return CrmRejected(reason)
        if status >= 500:
            return TemporaryFailure(reason)
        if 300 <= status < 400:
            return CrmRejected(f"{reason} (redirected: check the URL and use https)")
        return CrmRejected(reason)

    async def _export_webhook(self, url: str, lead: CrmLead, idempotency_key: str) -> None:
        body = webhook_body(lead)
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: idempotency_key}
        if self._webhook_secret:
            headers[SIGNATURE_HEADER] = sign(self._webhook_secret, body)
        status, response_headers, raw = await self._post(WEBHOOK, url, body, headers)
        if 200 <= status < 300:
            log.info("crm webhook: lead %s delivered (HTTP %s)", lead.lead_id, status)
            return
        snippet = _scrub(raw[:ERROR_SNIPPET].decode("utf-8", "replace"), self._secrets).strip()
        reason = f"webhook: HTTP {status}" + (f": {snippet}" if snippet else "")
        log.warning("crm webhook: lead %s not delivered: %s", lead.lead_id, reason)
        if status == 429:
            raise RetryLater(_retry_after(response_headers.get("Retry-After")), reason)
        if status >= 500 or status == 408:
            raise TemporaryFailure(reason)
        if 300 <= status < 400:
            raise CrmRejected(f"{reason} (redirected: point the setting at the final URL)")
        raise CrmRejected(reason)
