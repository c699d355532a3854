"""Channel-neutral messages: transports turn updates into `Incoming` and render `Outgoing`."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    BOOKING = "booking"  # /booking: the lead's bookings, to move or cancel


# The prospect's commands besides /start, by name, as every channel reads them from a typed
# "/name" (Telegram also lists them in its menu).
COMMANDS: dict[str, Kind] = {
    "menu": Kind.MENU,
    "stop": Kind.STOP,
    "mydata": Kind.MY_DATA,
    "delete": Kind.DELETE,
    "promo": Kind.PROMO,
    "invite": Kind.INVITE,
    "booking": Kind.BOOKING,
}


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


# ---- messages too long for one ----


@dataclass(frozen=True)
class SizeLimits:
    """How long one message may be in a messenger, in UTF-16 code units: Telegram counts
    so, and counting so for VK too only ever splits a little early."""

    text: int
    caption: int  # a text sent with a file
    link_in_text: bool = False  # a file given by URL is shown as its link under the text


# The platforms' limits: Telegram takes 4096 for a text, 1024 for a caption; VK takes 4096
# for a message, with a file or without.
SIZES: dict[str, SizeLimits] = {
    "telegram": SizeLimits(text=4096, caption=1024),
    "vk": SizeLimits(text=4096, caption=4096, link_in_text=True),
}

# Where a long text is cut, best first: between paragraphs, lines, sentences, words.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?…])\s"),
    re.compile(r"\s"),
)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fitting(text: str, limit: int) -> int:
    """How many characters from the start of `text` fit in `limit` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _cut(window: str, shortest: int) -> int | None:
    """Where to cut `window`: the last of its best kind of boundary past `shortest`."""
    for boundary in _BOUNDARIES:
        starts = [m.start() for m in boundary.finditer(window) if m.start() >= shortest]
        if starts:
            return starts[-1]
    return None


def split_text(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` UTF-16 code units, cut between paragraphs, else
    lines, else sentences, else words; a word is cut only when it alone is over the limit.
    A better boundary counts only past half the limit, so that no part is needlessly short."""
    if utf16_length(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text.strip()
    while utf16_length(rest) > limit:
        fit = max(_fitting(rest, limit), 1)
        window = rest[: fit + 1]  # a boundary just after the last character that fits counts
        cut = _cut(window, fit // 2) or _cut(window, 1) or fit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    parts.append(rest)
    return [part for part in parts if part]


def fitted(message: Outgoing, limits: SizeLimits | None) -> list[Outgoing]:
    """`message` as the messages it takes within `limits` (None: no limit), in order. A long
    text is split (`split_text`); the buttons and a contact request go on the last part,
    under the whole text, and so does a file: with the last part as its caption when that
    fits, else alone after the text."""
    if limits is None:
        return [message]
    file, caption = message.file, limits.caption
    if file is not None and file.url and limits.link_in_text and not (file.path or file.data):
        caption = min(caption, limits.text - utf16_length(file.url) - 1)
    if utf16_length(message.text) <= (limits.text if file is None else caption):
        return [message]
    texts = split_text(message.text, limits.text) or [""]  # nothing but blanks: no part
    if file is None or utf16_length(texts[-1]) <= caption:
        last = replace(message, text=texts.pop())
    else:
        last = replace(message, text="")
    bare = replace(message, buttons=(), contact_request=None, file=None)
    return [replace(bare, text=text) for text in texts] + [last]


def fitted_all(messages: Iterable[Outgoing], limits: SizeLimits | None) -> list[Outgoing]:
    return [part for message in messages for part in fitted(message, limits)]
