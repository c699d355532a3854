"""Deep-link payloads: `src_<tag>`, `ref_<code>`, `o_<offer>` joined with `-`."""

from __future__ import annotations

import re
from dataclasses import dataclass

PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class DeepLink:
    source: str | None = None
    referral: str | None = None
    offer: str | None = None
    unknown: tuple[str, ...] = ()
    valid: bool = True


def parse_deep_link(payload: str | None) -> DeepLink:
    """Parse a start payload; anything off-grammar is kept aside, never trusted."""
    if not payload:
        return DeepLink()
    if not PAYLOAD.match(payload):
        return DeepLink(valid=False)
    found: dict[str, str] = {}
    unknown: list[str] = []
    for part in payload.split("-"):
        prefix, _, value = part.partition("_")
        key = {"src": "source", "ref": "referral", "o": "offer"}.get(prefix)
        if key and value and key not in found:
            found[key] = value
        elif part:
            unknown.append(part)
    return DeepLink(**found, unknown=tuple(unknown))
