"""Tracked links: a button's URL becomes `<base>/r/<token>`, one token per lead, URL and event,
so a click records who opened what (and the button's event) before the redirect. The token
also names the lead to the events API: the redirect hands it to the website as `lb`."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select

from bot.messages import Button, Outgoing
from storage.models import TrackedLink
from storage.unit_of_work import UnitOfWork

PATH = "/r/"
TOKEN_BYTES = 12  # 16 URL-safe characters, 96 bits: not guessable
LEAD_PARAMETER = "lb"


async def link_tokens(
    uow: UnitOfWork, wanted: set[tuple[int, str, str]], now: datetime
) -> dict[tuple[int, str, str], str]:
    """The token of each (lead, url, event), made for those that have none: one read for
    any number of buttons (a delivery batch's)."""
    lead_ids = sorted({lead_id for lead_id, _, _ in wanted})
    query = select(TrackedLink.lead_id, TrackedLink.url, TrackedLink.event, TrackedLink.token)
    tokens: dict[tuple[int, str, str], str] = {}
    for lead_id, url, event, token in await uow.session.execute(
        query.where(TrackedLink.lead_id.in_(lead_ids))
    ):
        if (lead_id, url, event) in wanted:
            tokens[(lead_id, url, event)] = token
    for lead_id, url, event in sorted(wanted - tokens.keys()):
        token = tokens[(lead_id, url, event)] = secrets.token_urlsafe(TOKEN_BYTES)
        uow.session.add(
            TrackedLink(token=token, lead_id=lead_id, url=url, event=event, created_at=now)
        )
    return tokens


async def link_token(
    uow: UnitOfWork, lead_id: int, url: str, event: str | None, now: datetime
) -> str:
    key = (lead_id, url, event or "")
    return (await link_tokens(uow, {key}, now))[key]


def with_link_tokens(
    messages: list[Outgoing],
    lead_id: int,
    tokens: dict[tuple[int, str, str], str],
    base_url: str,
) -> list[Outgoing]:
    """The messages with their URL buttons going through `/r/<token>`."""
    base = base_url.rstrip("/")
    tracked = []
    for message in messages:
        if not any(button.url for row in message.buttons for button in row):
            tracked.append(message)
            continue
        rows = []
        for row in message.buttons:
            buttons = []
            for button in row:
                if button.url:
                    token = tokens[(lead_id, button.url, button.event or "")]
                    button = Button(button.text, url=f"{base}{PATH}{token}")
                buttons.append(button)
            rows.append(tuple(buttons))
        tracked.append(dataclasses.replace(message, buttons=tuple(rows)))
    return tracked


async def track_buttons(
    uow: UnitOfWork, lead_id: int, messages: list[Outgoing], base_url: str | None, now: datetime
) -> list[Outgoing]:
    """The messages with their URL buttons going through `/r/<token>`; unchanged without a
    public base URL (then a button's event is not recorded: nobody sees the click)."""
    wanted = {
        (lead_id, button.url, button.event or "")
        for message in messages
        for row in message.buttons
        for button in row
        if button.url
    }
    if not base_url or not wanted:
        return messages
    return with_link_tokens(messages, lead_id, await link_tokens(uow, wanted, now), base_url)


def with_lead_token(url: str, token: str) -> str:
    """The target URL with `lb=<token>` added, so the website can report events for the lead."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k != LEAD_PARAMETER] + [(LEAD_PARAMETER, token)]
    return urlunsplit(parts._replace(query=urlencode(query)))
