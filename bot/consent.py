"""The kinds of consent a lead gives, and which text each was given to."""

from __future__ import annotations

import hashlib

from bot.scenario.model import ConsentTexts

PERSONAL_DATA = "personal_data"
MARKETING = "marketing"  # advertising: warm-up chains and broadcasts


def personal_data_version(texts: ConsentTexts) -> str:
    """Which consent text (and policy) the lead agreed to: an edit is a new version."""
    return _version(f"{texts.text}\n{texts.policy_url}")


def marketing_version(texts: ConsentTexts) -> str:
    return _version(texts.marketing or "")


def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
