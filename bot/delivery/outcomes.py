"""What the delivery worker carries between its stages: a claimed row made ready to send
(`Prepared`), and what becomes of a row that is not sent now (`Skip`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot import broadcasts, referrals, sequences
from bot.handoff import RELAY
from bot.lead_card import Rows
from bot.messages import Outgoing, Purpose
from storage.models import OutboxRow

MAX_ATTEMPTS = 8
# A claimed row is its worker's until its lease ends; a live worker renews the leases of the
# rows it holds every third of a lease, so a dead worker's rows are taken over within one.
LEASE = timedelta(seconds=30)
# A claimed row waits this long for its slot at most; a later slot gives it back, due then.
LONGEST_HOLD = timedelta(seconds=60)
# Kinds that are advertising: they need consent, keep quiet hours and stop at `/stop`.
ADVERTISING = frozenset({sequences.STEP, broadcasts.BROADCAST})

# What each kind of row is for, as the messenger may need to say (VK's `intent`).
PURPOSES: dict[str, Purpose] = {
    sequences.STEP: "advertising",
    broadcasts.BROADCAST: "advertising",
    RELAY: "support",
    referrals.REWARD: "notice",
}


def advertises(item: Prepared) -> bool:
    """An advertising row, unless its step is a `service:` one (known once prepared)."""
    return item.kind in ADVERTISING and not item.details.get("service")


def purpose_of(item: Prepared) -> Purpose:
    return "notice" if item.details.get("service") else PURPOSES.get(item.kind, "reply")


def backoff(attempts: int) -> float:
    """Seconds before retry number `attempts` after a network or server error: 5 s doubling,
    at most an hour."""
    return float(min(5 * 2 ** max(attempts - 1, 0), 3600))


@dataclass
class Prepared:
    """A claimed row made ready to send: where to, what, and what to record once it is out."""

    row_id: int
    lead_id: int
    key: str  # the row's idempotency key: a platform that dedups by it (VK) sends once
    kind: str
    channel: str
    payload: dict[str, Any]
    attempts: int  # counting this claim
    parts_sent: int = 0  # messages of the row already out (before a crash, or now)
    external_id: str = ""
    messages: list[Outgoing] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    post: tuple[str, Rows] | None = None  # a post in the managers' chat of `channel`
    reference: str | None = None  # the posted message, once it is out
    last_message_at: datetime | None = None  # when the lead last wrote in `channel`

    @classmethod
    def of(cls, row: OutboxRow) -> Prepared:
        return cls(
            row_id=row.id,
            lead_id=row.lead_id or 0,
            key=row.idempotency_key,
            kind=row.kind,
            channel=row.channel,
            payload=dict(row.payload),
            attempts=row.attempts,
            parts_sent=row.parts_sent or 0,
        )

    @property
    def parts(self) -> int:
        """How many sends the row takes: a post is one, a message row one per message."""
        return 1 if self.post is not None else len(self.messages)

    def part_key(self, number: int) -> str:
        # A key per message: a platform that drops a repeated key (VK's random_id) would
        # otherwise drop a step's question after its text.
        return self.key if number == 0 else f"{self.key}:{number}"


class Skip(Exception):
    """The row will not be sent now; `status` says what becomes of it."""

    def __init__(
        self, status: str, reason: str, *, due: datetime | None = None, queue_next: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.due = due
        self.queue_next = queue_next


Outcome = tuple[Prepared, Skip | None]  # None: every message of the row is out
