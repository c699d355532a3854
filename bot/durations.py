"""Durations as marketers write them: 30m, 1h, 2d, 1w."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
DURATION_HINT = "use a whole number and a unit m, h, d or w (30m, 1h, 2d, 1w)"


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"bad duration {text!r}: {DURATION_HINT}")
    amount, unit = match.groups()
    return timedelta(**{_UNITS[unit]: int(amount)})
