"""Button payloads: the engine's action inside VK's JSON payload (255 characters at most).

A payload comes back from the person's client, so it is checked like any input: only an
object with a short action string is an action; anything else is a forged or stale press.
"""

from __future__ import annotations

import json
from typing import Any

PAYLOAD_LIMIT = 255  # VK's limit for a button's payload
ACTION_LIMIT = 64  # the engine's actions are short: offer, answer and card ids
START_COMMAND = {"command": "start"}  # what VK's own "Начать" button sends


def pack_action(action: str) -> str:
    packed = json.dumps({"a": action}, ensure_ascii=False, separators=(",", ":"))
    if len(packed) > PAYLOAD_LIMIT:
        raise ValueError(f"button action {action!r} does not fit VK's payload")
    return packed


def parse_payload(raw: Any) -> dict[str, Any] | None:
    """A payload as VK delivers it (a JSON string in messages, an object in events)."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw or len(raw) > PAYLOAD_LIMIT * 4:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def action_of(payload: dict[str, Any] | None) -> str | None:
    """The engine's action in a payload; None when it is not one of ours."""
    if payload is None:
        return None
    action = payload.get("a")
    if isinstance(action, str) and 0 < len(action) <= ACTION_LIMIT:
        return action
    return None
