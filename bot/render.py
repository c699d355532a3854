"""Filling `{placeholders}` in scenario texts."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace each `{name}`; `{{`/`}}` are literal braces. `leadbot check` has vetted the names,
    so a missing value is a bug and raises `KeyError` instead of sending a blank."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return values[match.group(1)]

    return _PLACEHOLDER.sub(replace, text)
