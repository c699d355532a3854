"""Tracked links: a button's URL becomes `<base>/r/<token>`, one token per lead, URL and event,
so a click records who opened what (and the button's event) before the redirect. The token
also names the lead to the events API: the redirect hands it to the website as `lb`."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select

from bot.engine.messages import Button, Outgoing
from storage.models import TrackedLink
from storage.unit_of_work import UnitOfWork

PATH = "/r/"
TOKEN_BYTES = 12  # 16 URL-safe characters, 96 bits: not guessable
LEAD_PARAMETER = "lb"


async def link_token(
    uow: UnitOfWork, lead_id: int, url: str, event: str | None, now: datetime
) -> str:
    event = event or ""
    query = select(TrackedLink.token).where(
        TrackedLink.lead_id == lead_id, TrackedLink.url == url, TrackedLink.event == event
    )
    token = (await uow.session.execute(query)).scalar_one_or_none()
    if token is None:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        uow.session.add(
            TrackedLink(token=token, lead_id=lead_id, url=url, event=event, created_at=now)
        )
    return token


async def track_buttons(
    uow: UnitOfWork, lead_id: int, messages: list[Outgoing], base_url: str | None, now: datetime
) -> list[Outgoing]:
    """The messages with their URL buttons going through `/r/<token>`; unchanged without a
    public base URL (then a button's event is not recorded: nobody sees the click)."""
    if not base_url:
        return messages
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
                    token = await link_token(uow, lead_id, button.url, button.event, now)
                    button = Button(button.text, url=f"{base}{PATH}{token}")
                buttons.append(button)
            rows.append(tuple(buttons))
        tracked.append(dataclasses.replace(message, buttons=tuple(rows)))
    return tracked


def with_lead_token(url: str, token: str) -> str:
    """The target URL with `lb=<token>` added, so the website can report events for the lead."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k != LEAD_PARAMETER] + [(LEAD_PARAMETER, token)]
    return urlunsplit(parts._replace(query=urlencode(query)))
