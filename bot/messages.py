"""Channel-neutral messages: transports turn updates into `Incoming` and render `Outgoing`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Literal


class Kind(StrEnum):
    START = "start"  # /start or the first message, maybe with a deep-link payload
    MENU = "menu"  # /menu
    STOP = "stop"  # /stop: no more advertising
    BUTTON = "button"  # a press of one of our buttons; `payload` is its action
    TEXT = "text"
    CONTACT = "contact"  # a shared phone number
    UNSUPPORTED = "unsupported"  # sticker, photo, voice... where we expect text or a button
    MY_DATA = "my_data"  # /mydata: everything stored about the person
    DELETE = "delete"  # /delete: erase personal data (after a confirmation button)
    PROMO = "promo"  # /promo: the lead's live promo codes
    INVITE = "invite"  # /invite: the referral link and how many friends came


Purpose = Literal["reply", "advertising", "support", "notice"]


@dataclass(frozen=True)
class Incoming:
    channel: str
    external_id: str
    kind: Kind
    text: str | None = None
    payload: str | None = None
    phone: str | None = None
    contact_is_own: bool = True  # Telegram: contact.user_id == sender
    first_name: str | None = None
    username: str | None = None
    # The messenger's id of this update (Telegram update_id, VK event_id): a redelivered
    # update with the same key is recognised and not handled twice.
    event_key: str | None = None

    def cleaned(self) -> Incoming:
        """The same, with texts every database stores: NUL (PostgreSQL refuses it) and other
        control characters dropped, a lone surrogate (not UTF-8: SQLite refuses it) replaced."""
        changed = {
            f.name: clean_text(value)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), str) and _UNSTORABLE.search(value)
        }
        return replace(self, **changed) if changed else self


# C0 controls but tab, newline and carriage return; DEL; the surrogate halves (a str holds
# one only when it came alone: a pair is decoded into its character).
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    controls_dropped = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    return _SURROGATE.sub("\ufffd", controls_dropped)


@dataclass(frozen=True)
class Button:
    text: str
    action: str | None = None  # sent back in `Incoming.payload` when pressed
    url: str | None = None
    event: str | None = None  # a URL button's event, recorded when a tracked link is opened


@dataclass(frozen=True)
class FileRef:
    path: str | None = None  # absolute path on disk
    url: str | None = None
    data: bytes | None = None  # made on the fly (say, /mydata); `filename` names it
    filename: str | None = None

    @property
    def name(self) -> str:
        return self.filename or (self.path or self.url or "file").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Outgoing:
    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()  # rows of inline buttons
    contact_request: str | None = None  # label of a "share my phone" reply button
    file: FileRef | None = None
    # What it is for: an answer to the person's message, advertising (warm-up, broadcast),
    # support (a manager's answer) or a notice (a referral gift). VK needs it to write later.
    purpose: Purpose = "reply"

    @property
    def actions(self) -> list[str]:
        return [b.action for row in self.buttons for b in row if b.action]


@dataclass
class Reply:
    """What the engine answers to one incoming event."""

    messages: list[Outgoing] = field(default_factory=list)
    duplicate: bool = False  # the update was handled before: nothing to send

    def say(self, message: Outgoing) -> None:
        self.messages.append(message)
