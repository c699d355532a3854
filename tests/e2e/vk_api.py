"""E2e harness: an in-process fake of the VK API (version 5.199) over real HTTP.

The bot under test runs as its own `leadbot run` process with `VK_API_URL=fake.api_url`,
`VK_GROUP_TOKEN=fake.token` and `VK_GROUP_ID=fake.group_id` (`fake.env()` has all three); the
test drives the fake from the pytest process, as a VK user would::

    async def test_start(vk_api: VkApiFake, tmp_path: Path) -> None:
        bot = start_vk_bot(vk_api, tmp_path)
        user = vk_api.new_user_id()
        vk_api.push_message(user, "Начать", payload={"command": "start"})
        [greeting] = await vk_api.wait_for(user, 1)
        await vk_api.press(user, "Аудит")

What it speaks, as vkbottle 4.11 sends it (POST form data to `<api_url><method>` with
`access_token` and `v`): groups.getById, groups.getLongPollServer and the Bots Long Poll server
(`act=a_check`, `key`, `ts`, `wait`; `failed` 1/2/3 for a stale ts, an expired key, lost
information), messages.send (`peer_id`, `user_id`, `peer_ids`, `random_id` de-duplication,
`keyboard` checked as VK checks it, `attachment`, `intent`, `dont_parse_links`), messages.edit,
messages.sendMessageEventAnswer, users.get, docs.getMessagesUploadServer, the upload server and
docs.save, photos.getMessagesUploadServer, its upload server and photos.saveMessagesPhoto.
Answers are `{"response": ...}` or `{"error": {"error_code", "error_msg", "request_params"}}`
with VK's documented codes and texts.

VK's habits that bots trip over are kept: in a conversation (peer id 2000000000 + n) a bot gets
message id 0 (in `message_new` and from messages.send with `peer_id`) and must edit by
`conversation_message_id`; `messages.send` with `peer_ids` answers a list whose failed items carry
`error` and no `message_id`; a repeated non-zero `random_id` to the same peer returns the first
message's id and delivers nothing.

Deliberately stricter than VK, so a bug shows: a `doc` or `photo` attachment must name one saved
through this fake, a photo upload must be a PNG, JPEG or GIF (VK's upload server answers an empty
`photo` for anything else, which photos.saveMessagesPhoto then refuses), and a message is at
most 4096 characters (VK's documented practical limit).

VK's limits hold by default, as they do for a real community: more than 20 calls in a second
from one token get error 6, and a message to a person whose last message to the community is
over 24 hours old (or who never wrote) is refused with error 943 unless it names an `intent`
(`age_messages` moves a person's messages back in time). `fail` makes any method answer any
error (9 flood control, 1 and 10 server errors, ...).
Nothing here sleeps for a fixed time: `wait_for` and friends wake when the bot does something.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pytest
from aiohttp import web

API_VERSION = "5.199"  # vkbottle_types.API_VERSION: the version the bot speaks
CONVERSATIONS = 2_000_000_000  # peer ids from here on are group conversations (chats)
REQUESTS_PER_SECOND = 20  # VK's limit for a community token
WINDOW_SECONDS = 24 * 3600  # a community writes freely this long after a person's message
LONG_POLL_MAX_WAIT = 90
LONG_POLL_BATCH = 100  # at most this many updates in one long-poll answer
TEXT_LIMIT = 4096
LABEL_LIMIT = 40
PAYLOAD_LIMIT = 255
SNACKBAR_LIMIT = 90
EVENT_DATA_LIMIT = 1000
PEER_IDS_LIMIT = 100
INLINE_LIMITS = (6, 5, 10)  # rows, buttons in a row, buttons in all
KEYBOARD_LIMITS = (10, 5, 40)

# VK's texts for the codes the bot meets (VKCOM/vk-api-schema errors.json).
ERROR_MESSAGES = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    7: "Permission to perform this action is denied",
    8: "Invalid request",
    9: "Flood control",
    10: "Internal server error",
    15: "Access denied",
    100: "One of the parameters specified was missing or invalid",
    113: "Invalid user id",
    900: "Can't send messages for users from blacklist",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    105: "Couldn't save file",
    909: "Can't edit this message, because it's too old",
    911: "Keyboard format is invalid",
    914: "Message is too long",
    917: "You don't have access to this chat",
    920: "Can't edit this kind of message",
    943: "Cannot use this intent",
}
INTENTS = frozenset(
    {
        "account_update",
        "bot_ad_invite",
        "bot_ad_promo",
        "confirmed_notification",
        "customer_support",
        "default",
        "finance_notification",
        "game_notification",
        "moderated_newsletter",
        "non_promo_newsletter",
        "promo_newsletter",
        "purchase_update",
    }
)
BUTTON_TYPES = frozenset({"text", "callback", "open_link", "location", "vkpay", "open_app"})
BUTTON_COLORS = frozenset({"primary", "secondary", "negative", "positive", "default"})
LABELLED_BUTTONS = frozenset({"text", "callback", "open_link", "open_app"})
ATTACHMENT = re.compile(
    r"^(photo|video|audio|doc|wall|market|poll|story|audio_playlist)(-?\d+)_(\d+)(?:_(\w+))?$"
)
# What a client that supports everything declares in `client_info` (VK's button action names).
BUTTON_ACTIONS = (
    "text",
    "vkpay",
    "open_app",
    "location",
    "open_link",
    "callback",
    "intent_subscribe",
    "intent_unsubscribe",
)
# What a photo upload must start with: PNG, JPEG, GIF.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
DOC_TYPES = {  # docs.save's `type`: 1 text, 2 archive, 3 gif, 4 image, 5 audio, 6 video, 7 book
    **dict.fromkeys(("txt", "pdf", "doc", "docx", "rtf", "odt", "xls", "xlsx", "csv"), 1),
    **dict.fromkeys(("zip", "rar", "7z", "tar", "gz"), 2),
    "gif": 3,
    **dict.fromkeys(("jpg", "jpeg", "png", "webp", "bmp"), 4),
    **dict.fromkeys(("mp3", "ogg", "wav"), 5),
    **dict.fromkeys(("mp4", "avi", "mov"), 6),
    **dict.fromkeys(("epub", "fb2", "djvu"), 7),
}

_pid = os.getpid() % 1000
# Below 2000000000, so that they are people and never conversations.
_user_ids = itertools.count(300_000_000 + _pid * 100_000 + 1)
_group_ids = itertools.count(220_000_000 + _pid * 1_000 + 1)
_chat_numbers = itertools.count(1)

Expectation = int | str | Callable[[list["SentMessage"]], bool]


class VkApiError(Exception):
    """An answer `{"error": ...}`: VK's code and message."""

    def __init__(self, code: int, detail: str | None = None, *, message: str | None = None):
        text = message or ERROR_MESSAGES.get(code, f"Error {code}")
        if detail:
            text = f"{text}: {detail}"
        super().__init__(text)
        self.code = code
        self.error_msg = text


def _invalid(detail: str) -> VkApiError:
    return VkApiError(100, detail)


# ------------------------------------------------------------------------------ records


@dataclass
class SentMessage:
    """One message the bot delivered to a peer, in its current state (edits applied)."""

    peer_id: int
    message_id: int  # 0 in conversations: VK gives bots no message ids there
    conversation_message_id: int
    text: str
    keyboard: dict[str, Any] | None  # the keyboard JSON, parsed
    attachment: str | None  # as the bot gave it: "doc-1_2,photo3_4"
    intent: str | None
    random_id: int
    dont_parse_links: bool
    date: int
    params: dict[str, str]  # the messages.send parameters, as sent
    edits: list[dict[str, str]] = field(default_factory=list)  # messages.edit parameters

    @property
    def attachments(self) -> list[str]:
        return [item for item in (self.attachment or "").split(",") if item]

    @property
    def inline(self) -> bool:
        return bool(self.keyboard and self.keyboard.get("inline"))

    @property
    def buttons(self) -> list[list[dict[str, Any]]]:
        """The keyboard's rows of buttons ({"action": {...}, "color": ...}); empty without one."""
        return [list(row) for row in (self.keyboard or {}).get("buttons", [])]

    def labels(self) -> list[str]:
        return [str(b["action"].get("label")) for row in self.buttons for b in row]

    def button(self, label: str) -> dict[str, Any]:
        """The action of the button labelled `label`."""
        for row in self.buttons:
            for button in row:
                if button["action"].get("label") == label:
                    return dict(button["action"])
        raise AssertionError(f"no button {label!r} on message {self.describe()}: {self.labels()}")

    def payload(self, label: str) -> dict[str, Any] | None:
        """The button's payload as the person's client sends it back (parsed)."""
        return _payload_object(self.button(label).get("payload"))

    def describe(self) -> str:
        return f"{self.peer_id}/{self.conversation_message_id}"


@dataclass(frozen=True)
class Edit:
    """One successful messages.edit."""

    peer_id: int
    conversation_message_id: int
    text: str | None
    keyboard: dict[str, Any] | None
    params: dict[str, str]


@dataclass(frozen=True)
class EventAnswer:
    """One successful messages.sendMessageEventAnswer: what the person saw after a press."""

    event_id: str
    user_id: int
    peer_id: int
    event_data: dict[str, Any] | None

    @property
    def snackbar(self) -> str | None:
        data = self.event_data or {}
        return data.get("text") if data.get("type") == "show_snackbar" else None


@dataclass(frozen=True)
class Call:
    """One call of an API method (failed ones too); `params` without the access token."""

    method: str
    params: dict[str, str]
    ok: bool
    response: Any = None
    error_code: int | None = None
    error_msg: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class SavedDoc:
    """A document: saved by the bot with docs.save, or sent by a person (`user_doc`)."""

    owner_id: int
    doc_id: int
    title: str
    ext: str
    content: bytes
    url: str
    peer_id: int | None  # the peer of the upload server it came through
    date: int

    @property
    def attachment(self) -> str:
        return f"doc{self.owner_id}_{self.doc_id}"

    def as_object(self) -> dict[str, Any]:
        """VK's doc object (docs.save's `doc`, an attachment's `doc`)."""
        return {
            "id": self.doc_id,
            "owner_id": self.owner_id,
            "title": self.title,
            "size": len(self.content),
            "ext": self.ext,
            "date": self.date,
            "type": DOC_TYPES.get(self.ext, 8),
            "url": self.url,
        }


@dataclass(frozen=True)
class SavedPhoto:
    """A picture the bot saved with photos.saveMessagesPhoto."""

    owner_id: int
    photo_id: int
    access_key: str
    content: bytes
    peer_id: int | None  # the peer of the upload server it came through

    @property
    def attachment(self) -> str:
        return f"photo{self.owner_id}_{self.photo_id}_{self.access_key}"


@dataclass(frozen=True)
class Pressed:
    """A button press: `event_id` for a callback button, `message` for a text button."""

    kind: str  # "callback" or "text"
    on: SentMessage
    event_id: str | None = None
    message: dict[str, Any] | None = None


@dataclass
class _Failure:
    method: str
    code: int
    peer_id: int | None
    times: int | None  # None: until clear_failures()
    message: str | None


@dataclass
class _Upload:
    peer_id: int | None
    kind: str
    file: tuple[str, bytes] | None = None  # (file name, content) once uploaded
    token: str | None = None


@dataclass
class _LongPoll:
    next_ts: int = 1  # the number the next update gets
    floor: int = 1  # updates below it are lost (failed 1)
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    lost_keys: set[str] = field(default_factory=set)


# ------------------------------------------------------------------------------ the fake


class VkApiFake:
    """The VK API of one community (`group_id`, `token`) on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        token: str | None = None,
        group_id: int | None = None,
        group_name: str = "Leadbot test",
        screen_name: str = "leadbot_test",
        requests_per_second: float | None = REQUESTS_PER_SECOND,
    ) -> None:
        self.token = token or f"vk1.a.test{secrets.token_hex(24)}"
        self.group_id = group_id or next(_group_ids)
        self.group_name = group_name
        self.screen_name = screen_name
        self.requests_per_second = requests_per_second  # None: no error 6 of its own
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._changed = asyncio.Event()
        self._calls: list[Call] = []
        self._recent: deque[float] = deque()
        self._failures: list[_Failure] = []
        self._longpoll = _LongPoll()
        self._message_ids = itertools.count(1001)
        self._versions = itertools.count(1)
        self._cmids: dict[int, int] = {}
        self._sent: dict[int, list[SentMessage]] = {}
        self._incoming: dict[int, list[dict[str, Any]]] = {}
        self._by_random_id: dict[tuple[int, int], SentMessage] = {}
        self._edits: list[Edit] = []
        self._events: dict[str, dict[str, Any]] = {}
        self._answers: list[EventAnswer] = []
        self._users: dict[int, dict[str, Any]] = {}
        self._denied: set[int] = set()
        self._uploads: dict[str, _Upload] = {}
        self._pending_files: dict[str, _Upload] = {}
        self._docs: dict[tuple[int, int], SavedDoc] = {}
        self._doc_ids = itertools.count(600_000_001)
        self._photos: dict[tuple[int, int], SavedPhoto] = {}
        self._photo_ids = itertools.count(457_239_001)
        self._methods: dict[str, Callable[[dict[str, str]], Any]] = {
            "groups.getById": self._groups_get_by_id,
            "groups.getLongPollServer": self._groups_get_long_poll_server,
            "messages.send": self._messages_send,
            "messages.edit": self._messages_edit,
            "messages.sendMessageEventAnswer": self._messages_send_event_answer,
            "users.get": self._users_get,
            "docs.getMessagesUploadServer": self._docs_get_messages_upload_server,
            "docs.save": self._docs_save,
            "photos.getMessagesUploadServer": self._photos_get_messages_upload_server,
            "photos.saveMessagesPhoto": self._photos_save_messages_photo,
        }

    # -------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", r"/method/{name:.*}", self._api)
        app.router.add_route("*", r"/whp/{group_id:\d+}", self._long_poll)
        app.router.add_post(r"/upload/doc/{upload_id:\w+}", self._upload)
        app.router.add_post(r"/upload/photo/{upload_id:\w+}", self._upload_photo)
        app.router.add_get(r"/doc/{owner_id:-?\d+}/{doc_id:\d+}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}"

    async def close(self) -> None:
        """Stop serving; long polls still waiting are answered at once."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> VkApiFake:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        """What the bot's VK_API_URL should be (vkbottle appends the method's name)."""
        return f"{self.base_url}/method/"

    def env(self) -> dict[str, str]:
        """The bot's settings for this community."""
        return {
            "VK_API_URL": self.api_url,
            "VK_GROUP_TOKEN": self.token,
            "VK_GROUP_ID": str(self.group_id),
        }

    @staticmethod
    def new_user_id() -> int:
        """A person's id never used before in this test run."""
        return next(_user_ids)

    def new_writer(self) -> int:
        """A new person who has just written to the community (recorded, not queued for the
        bot): the community may write back without an `intent` for 24 hours."""
        user_id = self.new_user_id()
        self.message_new_object(user_id, "Здравствуйте")
        return user_id

    @staticmethod
    def new_chat_peer_id() -> int:
        """A conversation's peer id (2000000000 + chat number) never used before in this run."""
        return CONVERSATIONS + next(_chat_numbers)

    def add_user(
        self,
        user_id: int,
        first_name: str,
        last_name: str = "",
        *,
        screen_name: str | None = None,
        **fields: Any,
    ) -> None:
        """A profile for users.get (without one a person is "Test User<id>")."""
        self._users[user_id] = {
            "id": user_id,
            "first_name": first_name,
            "last_name": last_name,
            "screen_name": screen_name or f"id{user_id}",
            **fields,
        }

    # -------------------------------------------------------------- what people do

    def push_message(
        self,
        user_id: int,
        text: str = "",
        *,
        payload: Mapping[str, Any] | None = None,
        ref: str | None = None,
        ref_source: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        peer_id: int | None = None,
        reply_to: int | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The person writes to the community (or, with `peer_id`, in a conversation): a
        `message_new` for the bot's long poll. `reply_to` is the conversation_message_id of a
        message in the same peer that this one answers. Returns the message object."""
        obj = self.message_new_object(
            user_id,
            text,
            payload=payload,
            ref=ref,
            ref_source=ref_source,
            attachments=attachments,
            peer_id=peer_id,
            reply_to=reply_to,
            client_info=client_info,
        )
        self.push_update("message_new", obj)
        message: dict[str, Any] = obj["message"]
        return message

    def push_event(
        self,
        user_id: int,
        payload: Mapping[str, Any],
        *,
        conversation_message_id: int | None = None,
        peer_id: int | None = None,
    ) -> str:
        """The person presses a callback button: a `message_event`; its event_id. Without
        `conversation_message_id`, the last message the bot sent to the peer."""
        obj = self.message_event_object(
            user_id, payload, conversation_message_id=conversation_message_id, peer_id=peer_id
        )
        self.push_update("message_event", obj)
        return str(obj["event_id"])

    def press(self, peer_id: int, label: str, *, user_id: int | None = None) -> Pressed:
        """Press the button labelled `label` on the last bot message in the peer that has it:
        a callback button becomes a `message_event`, a text button a `message_new` with its
        payload. In a conversation, `user_id` says who presses."""
        presser = user_id if user_id is not None else peer_id
        if presser >= CONVERSATIONS:
            raise ValueError("in a conversation, say who presses: user_id=...")
        for message in reversed(self._sent.get(peer_id, [])):
            if label not in message.labels():
                continue
            action = message.button(label)
            payload = _payload_object(action.get("payload")) or {}
            snapshot = replace(message)
            if action["type"] == "callback":
                event_id = self.push_event(
                    presser,
                    payload,
                    conversation_message_id=message.conversation_message_id,
                    peer_id=peer_id,
                )
                return Pressed("callback", snapshot, event_id=event_id)
            if action["type"] == "text":
                pushed = self.push_message(presser, label, payload=payload, peer_id=peer_id)
                return Pressed("text", snapshot, message=pushed)
            raise AssertionError(f"button {label!r} is {action['type']}: nothing to send")
        labels = [m.labels() for m in self._sent.get(peer_id, [])]
        raise AssertionError(f"no bot message in {peer_id} has a button {label!r}: {labels}")

    def age_messages(self, user_id: int, hours: float) -> None:
        """Move what the person wrote to the community `hours` back in time: past 24 hours a
        message to them needs an `intent`."""
        for message in self._incoming.get(user_id, []):
            message["date"] -= int(hours * 3600)

    def deny_messages(self, user_id: int) -> None:
        """The person forbids the community to write (`message_deny`): messages.send to them
        fails with 901 until `allow_messages`."""
        self._denied.add(user_id)
        self.push_update("message_deny", {"user_id": user_id})

    def allow_messages(self, user_id: int, key: str = "") -> None:
        self._denied.discard(user_id)
        self.push_update("message_allow", {"user_id": user_id, "key": key})

    def user_doc(self, user_id: int, title: str, content: bytes) -> dict[str, Any]:
        """A document a person attaches (for `push_message(attachments=[...])`); its `url`
        serves `content`."""
        doc = self._store_doc(user_id, title, content, peer_id=None)
        return {"type": "doc", "doc": doc.as_object()}

    # -------------------------------------------------------------- updates

    def message_new_object(
        self,
        user_id: int,
        text: str = "",
        *,
        payload: Mapping[str, Any] | None = None,
        ref: str | None = None,
        ref_source: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
        peer_id: int | None = None,
        reply_to: int | None = None,
        client_info: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A `message_new` object (recorded in the conversation, not queued): for
        `push_update`, or for `callback_event` when the bot runs on the Callback API."""
        peer = peer_id if peer_id is not None else user_id
        message: dict[str, Any] = {
            "date": int(time.time()),
            "from_id": user_id,
            # Bots get no message ids in conversations, only conversation_message_id.
            "id": 0 if peer >= CONVERSATIONS else next(self._message_ids),
            "version": next(self._versions),
            "out": 0,
            "attachments": [dict(a) for a in attachments],
            "conversation_message_id": self._next_cmid(peer),
            "fwd_messages": [],
            "important": False,
            "is_hidden": False,
            "peer_id": peer,
            "random_id": 0,
            "text": text,
        }
        if payload is not None:
            message["payload"] = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        if ref is not None:
            message["ref"] = ref
        if ref_source is not None:
            message["ref_source"] = ref_source
        if reply_to is not None:
            message["reply_message"] = self._foreign_message(peer, reply_to)
        self._incoming.setdefault(peer, []).append(message)
        info = {
            "button_actions": list(BUTTON_ACTIONS),
            "keyboard": True,
            "inline_keyboard": True,
            "carousel": True,
            "lang_id": 0,
        }
        info.update(client_info or {})
        return {"message": message, "client_info": info}

    def message_event_object(
        self,
        user_id: int,
        payload: Mapping[str, Any],
        *,
        conversation_message_id: int | None = None,
        peer_id: int | None = None,
    ) -> dict[str, Any]:
        """A `message_event` object (a callback button's press), registered for
        messages.sendMessageEventAnswer but not queued."""
        peer = peer_id if peer_id is not None else user_id
        if conversation_message_id is None:
            sent = self._sent.get(peer)
            if not sent:
                raise AssertionError(f"the bot has sent nothing to {peer} to press a button on")
            conversation_message_id = sent[-1].conversation_message_id
        obj = {
            "user_id": user_id,
            "peer_id": peer,
            "event_id": secrets.token_hex(6),
            "payload": dict(payload),
            "conversation_message_id": conversation_message_id,
        }
        self._events[obj["event_id"]] = obj
        return obj

    def push_update(self, type_: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Queue any update for the long poll; the update as the bot will get it."""
        update = self._update(type_, obj)
        poll = self._longpoll
        poll.updates.append((poll.next_ts, update))
        poll.next_ts += 1
        self._notify()
        return update

    def updates(self) -> list[dict[str, Any]]:
        """Every update still held for the long poll, in order."""
        return [update for _, update in self._longpoll.updates]

    def callback_event(
        self,
        type_: str,
        obj: Mapping[str, Any] | None = None,
        *,
        secret: str | None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """The body VK's Callback API would POST to the bot for this event (`secret` None:
        left out, as in a forged call)."""
        body = self._update(type_, obj or {}, event_id=event_id)
        if obj is None:
            body.pop("object")
        if secret is not None:
            body["secret"] = secret
        return body

    def _update(
        self, type_: str, obj: Mapping[str, Any], *, event_id: str | None = None
    ) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "type": type_,
            "event_id": event_id or secrets.token_hex(20),
            "v": API_VERSION,
            "object": dict(obj),
        }

    # -------------------------------------------------------------- long-poll controls

    def drop_history(self) -> None:
        """The server forgets the updates not fetched yet: a poll with an older ts gets
        `failed: 1` and the ts to go on from."""
        poll = self._longpoll
        poll.floor = poll.next_ts
        poll.updates.clear()
        self._notify()

    def expire_key(self) -> None:
        """Every issued key expires: `failed: 2` (get a new key, keep the ts)."""
        self._longpoll.keys.clear()
        self._notify()

    def lose_information(self) -> None:
        """Key and ts are lost: `failed: 3` (get a new key and ts)."""
        poll = self._longpoll
        poll.lost_keys |= poll.keys
        poll.keys.clear()
        self._notify()

    # -------------------------------------------------------------- failures

    def fail(
        self,
        method: str,
        code: int,
        *,
        peer_id: int | None = None,
        times: int | None = 1,
        message: str | None = None,
    ) -> None:
        """The next `times` calls of `method` (to `peer_id`, when given) fail with VK's
        error `code` and its documented text (or `message`); `times=None`: until
        `clear_failures()`. In a `peer_ids` batch a failure for one peer fails its item only."""
        self._failures.append(_Failure(method, code, peer_id, times, message))

    def clear_failures(self) -> None:
        self._failures.clear()

    def _take_failure(self, method: str, peer_id: int | None) -> VkApiError | None:
        for failure in self._failures:
            if failure.method != method or failure.peer_id != peer_id:
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
            return VkApiError(failure.code, message=failure.message)
        return None

    # -------------------------------------------------------------- what the bot did

    def sent(self, peer_id: int) -> list[SentMessage]:
        """What the bot delivered to the peer, in order (snapshots, edits applied)."""
        return [replace(m, edits=list(m.edits)) for m in self._sent.get(peer_id, [])]

    def last_sent(self, peer_id: int) -> SentMessage:
        sent = self.sent(peer_id)
        if not sent:
            raise AssertionError(f"the bot has sent nothing to {peer_id}")
        return sent[-1]

    def edits(self, peer_id: int | None = None) -> list[Edit]:
        return [e for e in self._edits if peer_id is None or e.peer_id == peer_id]

    def event_answers(self) -> list[EventAnswer]:
        return list(self._answers)

    def calls(self, method: str | None = None) -> list[Call]:
        """Every API call (failed ones too), in order."""
        return [c for c in self._calls if method is None or c.method == method]

    def recorded(self, method: str) -> list[dict[str, str]]:
        """The parameters of the successful calls of `method`, in order."""
        return [c.params for c in self._calls if c.method == method and c.ok]

    def docs(self) -> list[SavedDoc]:
        return list(self._docs.values())

    def photos(self) -> list[SavedPhoto]:
        return list(self._photos.values())

    def photo(self, attachment: str) -> SavedPhoto:
        """The picture an attachment string (photo<owner>_<id>[_key]) names."""
        match = ATTACHMENT.match(attachment)
        if match is None or match.group(1) != "photo":
            raise AssertionError(f"{attachment!r} is not a photo attachment")
        found = self._photos.get((int(match.group(2)), int(match.group(3))))
        if found is None:
            raise AssertionError(f"no photo {attachment!r} was saved")
        return found

    def doc(self, attachment: str) -> SavedDoc:
        """The document an attachment string (doc<owner>_<id>[_key]) names."""
        match = ATTACHMENT.match(attachment)
        if match is None or match.group(1) != "doc":
            raise AssertionError(f"{attachment!r} is not a document attachment")
        key = (int(match.group(2)), int(match.group(3)))
        if key not in self._docs:
            raise AssertionError(f"no document {attachment!r} was saved")
        return self._docs[key]

    async def wait_for(
        self,
        peer_id: int,
        expected: Expectation,
        timeout: float = 10.0,  # noqa: ASYNC109 (a deadline for waiting, with a report)
    ) -> list[SentMessage]:
        """Wait until the bot has delivered to the peer: at least `expected` messages (int),
        a message containing `expected` (str), or until `expected(messages)` is true."""
        if isinstance(expected, int):
            count = expected

            def check(messages: list[SentMessage]) -> bool:
                return len(messages) >= count
        elif isinstance(expected, str):
            needle = expected

            def check(messages: list[SentMessage]) -> bool:
                return any(needle in m.text for m in messages)
        else:
            check = expected
        if await self._until(lambda: check(self.sent(peer_id)), timeout):
            return self.sent(peer_id)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {expected!r} in {peer_id}; the bot "
            f"delivered: {[m.text for m in self.sent(peer_id)]}{self._failures_note()}"
        )

    async def wait_for_event_answer(
        self,
        event_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109 (a deadline for waiting, with a report)
    ) -> EventAnswer:
        def answer() -> EventAnswer | None:
            return next((a for a in self._answers if a.event_id == event_id), None)

        if await self._until(lambda: answer() is not None, timeout):
            found = answer()
            assert found is not None
            return found
        raise AssertionError(
            f"timed out after {timeout} s waiting for the answer to event {event_id}"
            f"{self._failures_note()}"
        )

    async def wait_for_calls(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 (a deadline for waiting, with a report)
    ) -> list[dict[str, str]]:
        """Wait until the bot has made `count` successful calls of `method`; their params."""
        if await self._until(lambda: len(self.recorded(method)) >= count, timeout):
            return self.recorded(method)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {count} {method} call(s), got "
            f"{len(self.recorded(method))}{self._failures_note()}"
        )

    async def _until(self, condition: Callable[[], bool], seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    def _failures_note(self) -> str:
        failed = [c for c in self._calls if not c.ok][-5:]
        if not failed:
            return ""
        lines = [f"{c.method}: {c.error_code} {c.error_msg}" for c in failed]
        return "; failed calls: " + " | ".join(lines)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -------------------------------------------------------------- HTTP: API methods

    async def _api(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].strip("/")
        params = await _params(request)
        token = params.pop("access_token", None)
        try:
            self._check_request(name, token, params)
            handler = self._methods.get(name)
            if handler is None:
                raise VkApiError(3)
            failure = self._take_failure(name, None)
            if failure is not None:
                raise failure
            try:
                response = handler(params)
            except VkApiError:
                raise
            except Exception as exc:  # a bug of the fake: a clear error 1, not a hung client
                raise VkApiError(1, f"the fake failed: {exc!r}") from exc
        except VkApiError as exc:
            self._calls.append(Call(name, params, False, None, exc.code, exc.error_msg))
            self._notify()
            request_params = [
                {"key": "method", "value": name},
                {"key": "oauth", "value": "1"},
                *({"key": k, "value": v} for k, v in params.items()),
            ]
            error = {"error_code": exc.code, "error_msg": exc.error_msg}
            return _json({"error": {**error, "request_params": request_params}})
        self._calls.append(Call(name, params, True, response))
        self._notify()
        return _json({"response": response})

    def _check_request(self, name: str, token: str | None, params: dict[str, str]) -> None:
        if not token:
            raise VkApiError(5, message="User authorization failed: no access_token passed.")
        if not secrets.compare_digest(token, self.token):
            raise VkApiError(5)
        if not params.get("v"):
            raise VkApiError(8, "v (version) is required")
        if self.requests_per_second is not None:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.requests_per_second:
                raise VkApiError(6)
            self._recent.append(now)

    # groups.getById: the community (5.199: {"groups": [...], "profiles": []})
    def _groups_get_by_id(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = _ids(params.get("group_ids") or params.get("group_id") or str(self.group_id))
        return {"groups": [self._group(abs(group_id)) for group_id in wanted], "profiles": []}

    def _group(self, group_id: int) -> dict[str, Any]:
        ours = group_id == self.group_id
        return {
            "id": group_id,
            "name": self.group_name if ours else f"Community {group_id}",
            "screen_name": self.screen_name if ours else f"club{group_id}",
            "is_closed": 0,
            "type": "group",
            "photo_50": f"{self.base_url}/static/club{group_id}_50.png",
            "photo_100": f"{self.base_url}/static/club{group_id}_100.png",
            "photo_200": f"{self.base_url}/static/club{group_id}_200.png",
        }

    def _groups_get_long_poll_server(self, params: dict[str, str]) -> dict[str, Any]:
        group_id = _int(params, "group_id", required=True)
        if group_id != self.group_id:
            raise VkApiError(15, "no access to this community")
        key = secrets.token_hex(20)
        self._longpoll.keys.add(key)
        return {
            "key": key,
            "server": f"{self.base_url}/whp/{self.group_id}",
            "ts": str(self._longpoll.next_ts),
        }

    # messages.send
    def _messages_send(self, params: dict[str, str]) -> Any:
        random_id = _int(params, "random_id", required=True)
        text = params.get("message", "")
        attachment = params.get("attachment") or None
        if not text.strip() and not attachment and not params.get("sticker_id"):
            raise _invalid("message is empty or invalid")
        if len(text) > TEXT_LIMIT:
            raise VkApiError(914)
        keyboard = _keyboard(params["keyboard"]) if params.get("keyboard") else None
        intent = params.get("intent") or None
        if intent is not None and intent not in INTENTS:
            raise _invalid(f"intent is invalid: {intent}")
        if attachment:
            self._check_attachments(attachment)
        batch = params.get("peer_ids") or params.get("user_ids")
        if batch:
            peers = _ids(batch)
            if len(peers) > PEER_IDS_LIMIT:
                raise _invalid(f"peer_ids: at most {PEER_IDS_LIMIT} peers")
            results: list[dict[str, Any]] = []
            for peer in peers:
                try:
                    message = self._deliver(peer, random_id, text, keyboard, attachment, params)
                except VkApiError as exc:
                    error = {"code": exc.code, "description": exc.error_msg}
                    results.append({"peer_id": peer, "error": error})
                    continue
                results.append(
                    {
                        "peer_id": peer,
                        "message_id": message.message_id,
                        "conversation_message_id": message.conversation_message_id,
                    }
                )
            return results
        peer = self._single_peer(params)
        return self._deliver(peer, random_id, text, keyboard, attachment, params).message_id

    def _single_peer(self, params: dict[str, str]) -> int:
        if params.get("peer_id"):
            return _int(params, "peer_id")
        if params.get("user_id"):
            return _int(params, "user_id")
        if params.get("chat_id"):
            return CONVERSATIONS + _int(params, "chat_id")
        if params.get("domain"):
            domain = params["domain"]
            for user in self._users.values():
                if user.get("screen_name") == domain:
                    return int(user["id"])
            raise _invalid(f"domain {domain!r} is unknown")
        raise _invalid("peer_id is undefined")

    def _deliver(
        self,
        peer: int,
        random_id: int,
        text: str,
        keyboard: dict[str, Any] | None,
        attachment: str | None,
        params: dict[str, str],
    ) -> SentMessage:
        if peer == 0 or peer == -self.group_id:
            raise _invalid("peer_id is invalid")
        failure = self._take_failure("messages.send", peer)
        if failure is not None:
            raise failure
        if peer in self._denied:
            raise VkApiError(901)
        if peer < CONVERSATIONS and not params.get("intent") and not self._in_window(peer):
            raise VkApiError(943)
        if random_id and (peer, random_id) in self._by_random_id:
            return self._by_random_id[(peer, random_id)]  # VK: the first one's id, no delivery
        message = SentMessage(
            peer_id=peer,
            message_id=0 if peer >= CONVERSATIONS else next(self._message_ids),
            conversation_message_id=self._next_cmid(peer),
            text=text,
            keyboard=keyboard,
            attachment=attachment,
            intent=params.get("intent") or None,
            random_id=random_id,
            dont_parse_links=params.get("dont_parse_links") == "1",
            date=int(time.time()),
            params=dict(params),
        )
        self._sent.setdefault(peer, []).append(message)
        if random_id:
            self._by_random_id[(peer, random_id)] = message
        return message

    def _in_window(self, user_id: int) -> bool:
        """Whether the person wrote to the community in the last 24 hours."""
        dates = [m["date"] for m in self._incoming.get(user_id, []) if m["from_id"] == user_id]
        return bool(dates) and time.time() - max(dates) < WINDOW_SECONDS

    def _check_attachments(self, attachment: str) -> None:
        for item in attachment.split(","):
            match = ATTACHMENT.match(item.strip())
            if match is None:
                raise _invalid(f"attachment is invalid: {item!r}")
            if match.group(1) == "doc" and (int(match.group(2)), int(match.group(3))) not in (
                self._docs
            ):
                raise _invalid(f"attachment {item!r}: no such document")
            if match.group(1) == "photo":
                photo = self._photos.get((int(match.group(2)), int(match.group(3))))
                if photo is None or photo.access_key != match.group(4):
                    raise _invalid(f"attachment {item!r}: no such photo or a wrong access key")

    # messages.edit
    def _messages_edit(self, params: dict[str, str]) -> int:
        peer = _int(params, "peer_id", required=True)
        cmid = params.get("conversation_message_id") or params.get("cmid")
        failure = self._take_failure("messages.edit", peer)
        if failure is not None:
            raise failure
        target: SentMessage | None = None
        if cmid:
            number = _int({"conversation_message_id": cmid}, "conversation_message_id")
            found = [m for m in self._sent.get(peer, []) if m.conversation_message_id == number]
            if not found and any(
                m["conversation_message_id"] == number for m in self._incoming.get(peer, [])
            ):
                raise VkApiError(920)  # somebody else's message
            target = found[0] if found else None
        elif params.get("message_id"):
            number = _int(params, "message_id")
            found = [m for m in self._sent.get(peer, []) if number and m.message_id == number]
            target = found[0] if found else None
        else:
            raise _invalid("message_id or conversation_message_id is required")
        if target is None:
            raise _invalid("message not found")
        text = params.get("message")
        if text is not None and len(text) > TEXT_LIMIT:
            raise VkApiError(914)
        keyboard = _keyboard(params["keyboard"]) if "keyboard" in params else None
        if params.get("attachment"):
            self._check_attachments(params["attachment"])
        if text is not None:
            target.text = text
        if "keyboard" in params:
            target.keyboard = keyboard
        if "attachment" in params:
            target.attachment = params["attachment"] or None
        target.edits.append(dict(params))
        self._edits.append(
            Edit(peer, target.conversation_message_id, text, keyboard, dict(params))
        )
        return 1

    # messages.sendMessageEventAnswer
    def _messages_send_event_answer(self, params: dict[str, str]) -> int:
        event_id = params.get("event_id")
        if not event_id:
            raise _invalid("event_id is undefined")
        user_id = _int(params, "user_id", required=True)
        peer_id = _int(params, "peer_id", required=True)
        failure = self._take_failure("messages.sendMessageEventAnswer", peer_id)
        if failure is not None:
            raise failure
        event = self._events.get(event_id)
        if event is None:
            raise _invalid("event_id is invalid")
        if event["user_id"] != user_id or event["peer_id"] != peer_id:
            raise _invalid("user_id and peer_id must be the event's")
        data = _event_data(params["event_data"]) if params.get("event_data") else None
        self._answers.append(EventAnswer(event_id, user_id, peer_id, data))
        return 1

    # users.get
    def _users_get(self, params: dict[str, str]) -> list[dict[str, Any]]:
        wanted = [item.strip() for item in params.get("user_ids", "").split(",") if item.strip()]
        fields = {f.strip() for f in params.get("fields", "").split(",") if f.strip()}
        found = []
        for item in wanted:
            user = self._user(item)
            answer = {
                "id": user["id"],
                "first_name": user["first_name"],
                "last_name": user["last_name"],
                "can_access_closed": True,
                "is_closed": False,
            }
            answer.update({k: v for k, v in user.items() if k in fields})
            found.append(answer)
        return found

    def _user(self, item: str) -> dict[str, Any]:
        if item.lstrip("-").isdigit():
            user_id = int(item)
            if user_id <= 0 or user_id >= CONVERSATIONS:
                raise VkApiError(113)
            return self._users.get(user_id) or {
                "id": user_id,
                "first_name": "Test",
                "last_name": f"User{user_id}",
                "screen_name": f"id{user_id}",
            }
        for user in self._users.values():
            if user.get("screen_name") == item:
                return user
        raise VkApiError(113)

    # docs.getMessagesUploadServer, the upload server, docs.save
    def _docs_get_messages_upload_server(self, params: dict[str, str]) -> dict[str, str]:
        kind = params.get("type") or "doc"
        if kind not in {"doc", "audio_message", "graffiti"}:
            raise _invalid(f"type is invalid: {kind}")
        if kind != "doc":
            raise _invalid(f"type {kind} is not supported by this fake")
        peer = _int(params, "peer_id") if params.get("peer_id") else None
        if peer is not None:
            failure = self._take_failure("docs.getMessagesUploadServer", peer)
            if failure is not None:
                raise failure
            if peer in self._denied:
                raise VkApiError(901)
        upload_id = secrets.token_hex(8)
        self._uploads[upload_id] = _Upload(peer, kind)
        return {"upload_url": f"{self.base_url}/upload/doc/{upload_id}"}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self._uploads.get(request.match_info["upload_id"])
        if upload is None:
            return _json({"error": "upload_url is invalid or used"})
        form = await request.post()
        file = form.get("file")
        if not isinstance(file, web.FileField):
            self._calls.append(Call("upload", {}, False, None, None, "no file"))
            return _json({"error": "no file"})
        content = file.file.read()
        self._uploads.pop(request.match_info["upload_id"])
        upload.file = (file.filename or "file", content)
        upload.token = f"{secrets.token_hex(4)}|0|{len(content)}|{secrets.token_hex(16)}"
        self._pending_files[upload.token] = upload
        self._calls.append(Call("upload", {"filename": upload.file[0]}, True))
        self._notify()
        return _json({"file": upload.token})

    def _docs_save(self, params: dict[str, str]) -> dict[str, Any]:
        token = params.get("file")
        if not token:
            raise _invalid("file is undefined")
        upload = self._pending_files.pop(token, None)
        if upload is None or upload.file is None:
            raise VkApiError(105)
        filename, content = upload.file
        title = params.get("title") or filename
        doc = self._store_doc(-self.group_id, title, content, peer_id=upload.peer_id)
        return {"type": "doc", "doc": doc.as_object()}

    # photos.getMessagesUploadServer, the upload server, photos.saveMessagesPhoto
    def _photos_get_messages_upload_server(self, params: dict[str, str]) -> dict[str, Any]:
        peer = _int(params, "peer_id") if params.get("peer_id") else None
        if peer is not None:
            failure = self._take_failure("photos.getMessagesUploadServer", peer)
            if failure is not None:
                raise failure
        upload_id = secrets.token_hex(8)
        self._uploads[upload_id] = _Upload(peer, "photo")
        return {
            "upload_url": f"{self.base_url}/upload/photo/{upload_id}",
            "album_id": -3,
            "group_id": self.group_id,
        }

    async def _upload_photo(self, request: web.Request) -> web.Response:
        upload = self._uploads.get(request.match_info["upload_id"])
        if upload is None or upload.kind != "photo":
            return _json({"error": "upload_url is invalid or used"})
        form = await request.post()
        file = form.get("photo")
        if not isinstance(file, web.FileField):
            self._calls.append(Call("upload_photo", {}, False, None, None, "no photo"))
            return _json({"error": "no photo"})
        content = file.file.read()
        self._uploads.pop(request.match_info["upload_id"])
        server = 850_000 + len(self._photos)
        if not content.startswith(IMAGE_SIGNATURES):
            # VK's answer to a file that is not a picture: an empty list, refused on save.
            self._calls.append(Call("upload_photo", {"filename": file.filename}, False))
            self._notify()
            return _json({"server": server, "photo": "[]", "hash": secrets.token_hex(16)})
        upload.file = (file.filename or "photo", content)
        upload.token = json.dumps([{"photo": secrets.token_hex(8), "size": len(content)}])
        self._pending_files[upload.token] = upload
        self._calls.append(Call("upload_photo", {"filename": upload.file[0]}, True))
        self._notify()
        return _json({"server": server, "photo": upload.token, "hash": secrets.token_hex(16)})

    def _photos_save_messages_photo(self, params: dict[str, str]) -> list[dict[str, Any]]:
        token = params.get("photo")
        if not token or token == "[]":
            raise _invalid("photo is undefined")
        if not params.get("server") or not params.get("hash"):
            raise _invalid("server and hash are required")
        upload = self._pending_files.pop(token, None)
        if upload is None or upload.file is None or upload.kind != "photo":
            raise _invalid("photos_list is invalid")
        photo = SavedPhoto(
            owner_id=-self.group_id,
            photo_id=next(self._photo_ids),
            access_key=secrets.token_hex(9),
            content=upload.file[1],
            peer_id=upload.peer_id,
        )
        self._photos[(photo.owner_id, photo.photo_id)] = photo
        return [
            {
                "id": photo.photo_id,
                "owner_id": photo.owner_id,
                "album_id": -3,
                "access_key": photo.access_key,
                "date": int(time.time()),
                "sizes": [{"type": "x", "width": 604, "height": 453, "url": ""}],
            }
        ]

    def _store_doc(
        self, owner: int, title: str, content: bytes, *, peer_id: int | None
    ) -> SavedDoc:
        doc_id = next(self._doc_ids)
        ext = title.rsplit(".", 1)[1].lower() if "." in title else ""
        doc = SavedDoc(
            owner_id=owner,
            doc_id=doc_id,
            title=title,
            ext=ext,
            content=content,
            url=f"{self.base_url}/doc/{owner}/{doc_id}",
            peer_id=peer_id,
            date=int(time.time()),
        )
        self._docs[(owner, doc_id)] = doc
        return doc

    async def _download(self, request: web.Request) -> web.Response:
        key = (int(request.match_info["owner_id"]), int(request.match_info["doc_id"]))
        doc = self._docs.get(key)
        if doc is None:
            raise web.HTTPNotFound()
        return web.Response(body=doc.content, content_type="application/octet-stream")

    # -------------------------------------------------------------- HTTP: Bots Long Poll

    async def _long_poll(self, request: web.Request) -> web.Response:
        params = await _params(request)
        if params.get("act") != "a_check":
            return _json({"error": "act=a_check is required"}, status=400)
        try:
            wait = min(max(int(params.get("wait", "25")), 0), LONG_POLL_MAX_WAIT)
        except ValueError:
            wait = 25
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            poll = self._longpoll
            key = params.get("key", "")
            if key in poll.lost_keys:
                return _json({"failed": 3})
            if key not in poll.keys or int(request.match_info["group_id"]) != self.group_id:
                return _json({"failed": 2})
            try:
                ts = int(params.get("ts", ""))
            except ValueError:
                return _json({"failed": 1, "ts": str(poll.next_ts)})
            if ts < poll.floor:
                return _json({"failed": 1, "ts": str(poll.floor)})
            if ts > poll.next_ts:
                return _json({"failed": 1, "ts": str(poll.next_ts)})
            ready = [update for number, update in poll.updates if number >= ts]
            ready = ready[:LONG_POLL_BATCH]
            remaining = deadline - loop.time()
            if ready or remaining <= 0 or self._closing:
                return _json({"ts": str(ts + len(ready)), "updates": ready})
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # -------------------------------------------------------------- helpers

    def _next_cmid(self, peer: int) -> int:
        self._cmids[peer] = self._cmids.get(peer, 0) + 1
        return self._cmids[peer]

    def _foreign_message(self, peer: int, cmid: int) -> dict[str, Any]:
        """The `reply_message` object for the message `cmid` in the peer."""
        for sent in self._sent.get(peer, []):
            if sent.conversation_message_id == cmid:
                return {
                    "date": sent.date,
                    "from_id": -self.group_id,
                    "text": sent.text,
                    "attachments": [],
                    "conversation_message_id": cmid,
                    "peer_id": peer,
                    "id": sent.message_id,
                }
        for message in self._incoming.get(peer, []):
            if message["conversation_message_id"] == cmid:
                keep = ("date", "from_id", "text", "attachments", "peer_id", "id")
                return {**{k: message[k] for k in keep}, "conversation_message_id": cmid}
        raise AssertionError(f"no message {cmid} in {peer} to reply to")


# ------------------------------------------------------------------------------ checking


async def _params(request: web.Request) -> dict[str, str]:
    """The query and (for POST) form parameters, as VK reads them."""
    params = dict(request.query)
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, ensure_ascii=False))


def _int(params: Mapping[str, str], name: str, *, required: bool = False) -> int:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _invalid(f"{name} is undefined")
        return 0
    try:
        return int(value)
    except ValueError:
        raise _invalid(f"{name} not integer") from None


def _ids(value: str) -> list[int]:
    try:
        return [int(item) for item in value.split(",") if item.strip()]
    except ValueError:
        raise _invalid(f"ids are not integers: {value!r}") from None


def _payload_object(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return raw
    value = json.loads(raw)
    return value if isinstance(value, dict) else {"value": value}


def _keyboard(raw: str) -> dict[str, Any]:
    """The keyboard JSON parsed, checked as VK checks it (error 911 with the reason)."""

    def bad(reason: str) -> VkApiError:
        return VkApiError(911, reason)

    try:
        board = json.loads(raw)
    except ValueError:
        raise bad("keyboard is not JSON") from None
    if not isinstance(board, dict):
        raise bad("keyboard should be an object")
    rows = board.get("buttons")
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad("buttons should be an array of arrays")
    inline = board.get("inline", False)
    if not isinstance(inline, bool) or not isinstance(board.get("one_time", False), bool):
        raise bad("inline and one_time should be booleans")
    if inline and board.get("one_time"):
        raise bad("one_time is not supported for inline keyboards")
    max_rows, max_in_row, max_all = INLINE_LIMITS if inline else KEYBOARD_LIMITS
    if len(rows) > max_rows:
        raise bad(f"too many rows: {len(rows)} > {max_rows}")
    if any(len(row) > max_in_row for row in rows):
        raise bad(f"too many buttons in a row (at most {max_in_row})")
    if sum(len(row) for row in rows) > max_all:
        raise bad(f"too many buttons (at most {max_all})")
    for row in rows:
        for button in row:
            _check_button(button, bad)
    return board


def _check_button(button: Any, bad: Callable[[str], VkApiError]) -> None:
    action = button.get("action") if isinstance(button, dict) else None
    if not isinstance(action, dict):
        raise bad("a button needs an action object")
    kind = action.get("type")
    if kind not in BUTTON_TYPES:
        raise bad(f"action type {kind!r} is unknown")
    label = action.get("label")
    if kind in LABELLED_BUTTONS:
        if not isinstance(label, str) or not label:
            raise bad(f"a {kind} button needs a label")
        if len(label) > LABEL_LIMIT:
            raise bad(f"label {label!r} is longer than {LABEL_LIMIT}")
    if kind == "open_link" and not re.match(r"^https?://", str(action.get("link", ""))):
        raise bad("an open_link button needs an http(s) link")
    payload = action.get("payload")
    if payload is not None:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        if len(text) > PAYLOAD_LIMIT:
            raise bad(f"payload is longer than {PAYLOAD_LIMIT}")
        try:
            json.loads(text)
        except ValueError:
            raise bad("payload should be JSON") from None
    color = button.get("color")
    if color is not None and color not in BUTTON_COLORS:
        raise bad(f"color {color!r} is unknown")


def _event_data(raw: str) -> dict[str, Any]:
    """messages.sendMessageEventAnswer's event_data, parsed and checked."""
    if len(raw) > EVENT_DATA_LIMIT:
        raise _invalid(f"event_data is longer than {EVENT_DATA_LIMIT}")
    try:
        data = json.loads(raw)
    except ValueError:
        raise _invalid("event_data is not JSON") from None
    if not isinstance(data, dict):
        raise _invalid("event_data should be an object")
    kind = data.get("type")
    if kind == "show_snackbar":
        text = data.get("text")
        if not isinstance(text, str) or not 0 < len(text) <= SNACKBAR_LIMIT:
            raise _invalid(f"show_snackbar needs a text of 1 to {SNACKBAR_LIMIT} characters")
    elif kind == "open_link":
        if not re.match(r"^https?://", str(data.get("link", ""))):
            raise _invalid("open_link needs an http(s) link")
    elif kind == "open_app":
        if not isinstance(data.get("app_id"), int):
            raise _invalid("open_app needs an app_id")
    else:
        raise _invalid(f"event_data type {kind!r} is unknown")
    return data


# ------------------------------------------------------------------------------ fixture


@pytest.fixture
async def vk_api() -> AsyncIterator[VkApiFake]:
    """A fresh fake VK API with a community of its own, serving until the test ends."""
    async with VkApiFake() as fake:
        yield fake
