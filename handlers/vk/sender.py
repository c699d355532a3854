"""Rendering the engine's `Outgoing` as VK messages (keyboards, documents) and sending them
through vkbottle's API, with VK's rules: `random_id` against duplicates, `intent` after the
24-hour window, 901/902 as a person who closed their messages, 6/9 as rate limits."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from vkbottle import API, DocMessagesUploader, PhotoMessageUploader
from vkbottle.exception_factory import VKAPIError

from bot.messages import Button, FileRef, Outgoing
from bot.pacing import Pacer
from bot.transport import Blocked, Refused, RetryLater, TemporaryFailure
from handlers.vk.payloads import pack_action

log = logging.getLogger(__name__)

CHANNEL = "vk"
Rows = tuple[tuple[Button, ...], ...]
# An inline keyboard holds at most 6 rows and 10 buttons; a larger one (the 0-10 scale)
# goes as a one-time keyboard under the input field, which holds 10 rows of 5.
INLINE_ROWS, INLINE_BUTTONS = 6, 10
KEYBOARD_ROWS, ROW_BUTTONS = 10, 5
LABEL_LIMIT = 40
WINDOW = timedelta(hours=24)  # VK lets a community answer freely this long after a message
# What a message outside the window says it is (VK's `intent`): advertising needs the
# person's subscription to the newsletter, which they gave as advertising consent.
INTENTS = {
    "advertising": "promo_newsletter",
    "support": "customer_support",
    "notice": "non_promo_newsletter",
    "reply": "default",
}
BLOCKED_CODES = {901, 902}  # no permission to write, or the person's privacy settings
RATE_LIMIT_SECONDS = {6: 1.0, 9: 60.0}  # too many requests per second; flood control
TEMPORARY_CODES = {1, 10}  # unknown error; internal server error
# The same message would be refused again: too long; an intent VK does not allow (or none
# past the 24 hours after the person's last message).
REFUSED_CODES = {914, 943}
PICTURES_KEPT = 64  # attachments of pictures uploaded to the managers' chat, per process


def random_id(key: str | None) -> int:
    """VK drops a repeated random_id of one community to one peer: derived from the outbox
    row's key or from the update being answered (`reply_key`), a send repeated after a lost
    answer or a crash cannot deliver twice. 0 (no key) means no check."""
    if not key:
        return 0
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


def reply_key(update_id: str, number: int) -> str:
    """The key of message `number` of the answer sent at once to the VK update `update_id`:
    one per message, or VK would drop the second message of an answer as a repeat."""
    return f"vk-event:{update_id}:{number}"


def keyboard(message: Outgoing) -> str | None:
    """The message's buttons as VK's keyboard JSON: inline under the message when they fit,
    else a one-time keyboard whose buttons send their payload with a message."""
    # A row holds 5 buttons at most: a longer one continues on the next row.
    rows = [
        row[i : i + ROW_BUTTONS]
        for row in message.buttons
        for i in range(0, len(row), ROW_BUTTONS)
    ]
    if not rows:
        return None
    count = sum(len(row) for row in rows)
    inline = len(rows) <= INLINE_ROWS and count <= INLINE_BUTTONS
    if len(rows) > KEYBOARD_ROWS:
        log.warning("a message has %d rows of buttons; VK shows %d", len(rows), KEYBOARD_ROWS)
    buttons = [[_button(b, inline=inline) for b in row] for row in rows[:KEYBOARD_ROWS]]
    board: dict[str, Any] = {"inline": inline, "buttons": buttons}
    if not inline:
        board["one_time"] = True
    return json.dumps(board, ensure_ascii=False, separators=(",", ":"))


def _button(button: Button, *, inline: bool) -> dict[str, Any]:
    label = button.text[:LABEL_LIMIT]
    if button.url:
        return {"action": {"type": "open_link", "link": button.url, "label": label}}
    payload = pack_action(button.action or "menu")
    kind = "callback" if inline else "text"
    return {"action": {"type": kind, "label": label, "payload": payload}}


def reference(peer: int, conversation_message_id: int) -> str:
    """How a post in a conversation is named in the database: the peer and its number."""
    return f"{peer}:{conversation_message_id}"


def intent_for(message: Outgoing, last_message_at: datetime | None, now: datetime) -> str | None:
    """None inside the 24-hour window after the person's last message; VK's intent for the
    message's purpose after it."""
    if last_message_at is not None and now - last_message_at < WINDOW:
        return None
    return INTENTS[message.purpose]


class VkSender:
    """The VK transport and the VK managers' chat (a conversation, `MANAGERS_VK_PEER_ID`)."""

    channel = CHANNEL

    def __init__(
        self,
        api: API,
        *,
        group_id: int | None = None,
        managers_peer_id: int | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.api = api
        self.pacer = pacer  # for replies sent right away (see TelegramSender)
        self.group_id = group_id
        self.managers_peer_id = managers_peer_id
        self._uploader = DocMessagesUploader(api)
        self._photos = PhotoMessageUploader(api, attachment_name="picture.png")
        self._pictures: dict[tuple[str, int], str] = {}  # uploaded pictures, by content and peer
        self._docs: dict[tuple[str, float, int], str] = {}  # uploaded files, by path and peer

    # ---- prospects ----

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        """Send one message; `Blocked` when the person does not let the community write,
        `RetryLater` on VK's limits, `TemporaryFailure` when VK or the network fails."""
        peer = int(external_id)
        params = await self._params(peer, message)
        intent = intent_for(message, last_message_at, datetime.now(UTC))
        if intent is not None:
            params["intent"] = intent
        await self._call(
            "messages.send", peer_id=peer, random_id=random_id(idempotency_key), **params
        )

    async def answer_event(
        self, event_id: str, user_id: int, peer_id: int, *, snackbar: str | None = None
    ) -> None:
        """Answer a callback button's press: the spinner stops; `snackbar` shows a toast."""
        params: dict[str, Any] = {"event_id": event_id, "user_id": user_id, "peer_id": peer_id}
        if snackbar:
            data = {"type": "show_snackbar", "text": snackbar[:90]}
            params["event_data"] = json.dumps(data, ensure_ascii=False)
        await self._call("messages.sendMessageEventAnswer", **params)

    async def first_name(self, user_id: int) -> str | None:
        """The person's first name from their profile (VK sends none with a message)."""
        try:
            users = await self._call("users.get", user_ids=user_id)
        except (TemporaryFailure, RetryLater, Blocked):
            return None
        return users[0].get("first_name") if users else None

    # ---- the managers' chat ----

    async def post_to_managers(
        self,
        text: str,
        buttons: Rows = (),
        *,
        expect_reply: bool = False,
        idempotency_key: str | None = None,
        attachment: str | None = None,
    ) -> str | None:
        """Post in the managers' conversation; the reference is `<peer>:<number>`: VK
        numbers messages per conversation, so the number alone would clash with an earlier
        conversation's posts once `MANAGERS_VK_PEER_ID` changes. With `idempotency_key`, VK
        drops a repeat of the post. `attachment` is one uploaded already (a picture from
        `managers_photo`)."""
        if self.managers_peer_id is None:
            return None
        params = await self._params(self.managers_peer_id, Outgoing(text, buttons))
        if attachment:
            params["attachment"] = ",".join(filter(None, (params.get("attachment"), attachment)))
        sent = await self._call(
            "messages.send",
            peer_ids=str(self.managers_peer_id),
            random_id=random_id(idempotency_key),
            **params,
        )
        first = sent[0] if isinstance(sent, list) and sent else {}
        if "error" in first:
            raise TemporaryFailure(f"managers' chat refused the post: {first['error']}")
        number = first.get("conversation_message_id")
        return reference(self.managers_peer_id, number) if number is not None else None

    async def managers_photo(self, data: bytes, name: str = "picture.png") -> str | None:
        """Upload a picture (PNG or JPEG bytes) for the managers' conversation; its
        attachment string (`photo<owner>_<id>`), None without that conversation. Raises as
        `send` does when VK refuses or cannot be reached."""
        if self.managers_peer_id is None:
            return None
        # The same picture again (/stats asked twice, nothing changed; an update VK sent
        # again) goes as the same attachment: one upload, and an identical repeat of the send.
        key = (hashlib.sha256(data).hexdigest(), self.managers_peer_id)
        if key in self._pictures:
            return self._pictures[key]
        try:
            attachment = await self._photos.upload(
                self._photos.get_bytes_io(data, name=name), peer_id=self.managers_peer_id
            )
        except VKAPIError as exc:
            raise _mapped(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TemporaryFailure(f"photo upload failed: {exc!r}") from exc
        if len(self._pictures) >= PICTURES_KEPT:
            self._pictures.clear()
        self._pictures[key] = attachment
        return attachment

    async def edit_in_managers(self, reference: str, text: str, buttons: Rows = ()) -> None:
        peer, _, number = reference.rpartition(":")
        if self.managers_peer_id is None or peer != str(self.managers_peer_id):
            return  # a post in a conversation the managers have left
        params = await self._params(self.managers_peer_id, Outgoing(text, buttons))
        params.setdefault("keyboard", json.dumps({"inline": True, "buttons": []}))
        await self._call(
            "messages.edit",
            peer_id=self.managers_peer_id,
            conversation_message_id=int(number),
            **params,
        )

    # ---- rendering and calling ----

    async def _params(self, peer: int, message: Outgoing) -> dict[str, Any]:
        text = message.text
        params: dict[str, Any] = {"dont_parse_links": 0}
        if message.file is not None:
            attachment = await self._attachment(peer, message.file)
            if attachment is None:
                text = f"{text}\n{message.file.url}".strip() if message.file.url else text
            else:
                params["attachment"] = attachment
        # Never cut here: a text too long for one message is split before (`fitted_all`),
        # and VK refuses one that is still too long (914) rather than losing its end.
        params["message"] = text or " "
        board = keyboard(message)
        if board is not None:
            params["keyboard"] = board
        return params

    async def _attachment(self, peer: int, file: FileRef) -> str | None:
        """A document uploaded for this person (an upload is tied to the peer); None for a
        link, which goes in the text."""
        if file.url:
            return None
        if file.path:
            path = Path(file.path)
            # Scenario files are small and local: reading them blocks for no noticeable time.
            key = (str(path), path.stat().st_mtime, peer)  # noqa: ASYNC240
            if key not in self._docs:
                data = path.read_bytes()  # noqa: ASYNC240
                self._docs[key] = await self._upload(data, path.name, peer)
            return self._docs[key]
        assert file.data is not None
        return await self._upload(file.data, file.filename or "file", peer)

    async def _upload(self, data: bytes, title: str, peer: int) -> str:
        try:
            return await self._uploader.upload(data, peer_id=peer, title=title)
        except VKAPIError as exc:
            raise _mapped(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TemporaryFailure(f"document upload failed: {exc!r}") from exc

    async def _call(self, method: str, **params: Any) -> Any:
        started = time.monotonic()
        try:
            answer = await self.api.request(method, params)
        except VKAPIError as exc:
            raise _mapped(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TemporaryFailure(f"VK {method} failed: {exc!r}") from exc
        log.debug("VK %s took %.3fs", method, time.monotonic() - started)
        return answer["response"]


def _mapped(exc: VKAPIError) -> Exception:
    code = getattr(exc, "code", None)
    if code in BLOCKED_CODES:
        return Blocked(f"VK error {code}")
    if code in RATE_LIMIT_SECONDS:
        return RetryLater(RATE_LIMIT_SECONDS[code], f"VK error {code}")
    if code in TEMPORARY_CODES:
        return TemporaryFailure(f"VK error {code}")
    if code in REFUSED_CODES:
        return Refused(f"VK error {code}: {exc}")
    return exc
