"""E2e harness: the Telegram Bot API emulator (npm `telegram-test-api` 4.2.1) over real HTTP.

`telegram_emulator.js` beside this file starts the emulator on 127.0.0.1 and a free port and fills
the gaps of 4.2.1 against the Bot API (see its header). This module installs the package into
`.test-cache/tg` when it is missing, starts the launcher once per test module and gives each test a
`TelegramClient` with a token of its own, so tests never see each other's updates or messages.

A test starts the bot with `TELEGRAM_BOT_TOKEN=client.token` and `TELEGRAM_API_URL=client.base_url`
and then acts as a prospect::

    async def test_start(telegram_emulator: TelegramClient) -> None:
        chat = telegram_emulator.new_chat_id()
        await telegram_emulator.send_command(chat, "/start src_test")
        [greeting] = await telegram_emulator.wait_for(chat, 1)
        await telegram_emulator.press_button(chat, "Аудит")

A managers' group chat: `new_group_id()`, then `send_group_text` (a reply to a bot message with
`reply_to=`), `press_group_button` on a bot message there, and `callback_answers` for the toasts.
A basic group (`new_basic_group_id()`) can be upgraded to a supergroup with `upgrade_group`.

The emulator keeps Telegram's flood limits by default (about 1 message a second per private chat,
20 a minute per group, 30 a second per bot): past one the bot gets 429 with retry_after, and a
send inside a retry_after is recorded (`violations()`). `set_limits` changes them or turns them
off for a test that measures something else.

Nothing here sleeps for a fixed time: `wait_for` and `wait_for_calls` poll until a deadline.
Without node/npm the fixture skips with the reason; with LEADBOT_REQUIRE_SERVICES=1 it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import aiohttp
import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO / ".test-cache" / "tg"
MODULES_DIR = CACHE_DIR / "node_modules"
PACKAGE = "telegram-test-api"
VERSION = "4.2.1"
LAUNCHER = Path(__file__).resolve().with_name("telegram_emulator.js")
REQUIRE_SERVICES = os.environ.get("LEADBOT_REQUIRE_SERVICES") == "1"
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 20.0
POLL_INTERVAL = 0.02

Expectation = int | str | Callable[[list["BotMessage"]], bool]


class EmulatorUnavailable(RuntimeError):
    """Node, npm or the package cannot be had on this machine."""


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LEADBOT_REQUIRE_SERVICES=1 makes it mandatory)", pytrace=False)
    pytest.skip(reason)


# ------------------------------------------------------------------------------ installing


def _installed_version() -> str | None:
    try:
        data = json.loads((MODULES_DIR / PACKAGE / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version")
    return version if isinstance(version, str) else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a file, so that parallel test runs (and the workers of one) do not
    install at the same time."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_emulator_installed() -> str:
    """The path of `node`, after `npm install`ing the emulator into .test-cache/tg when needed."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        raise EmulatorUnavailable(
            f"{missing} not found on PATH: the Telegram e2e tests need Node.js to run "
            f"{PACKAGE}@{VERSION}"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Looked at under the lock only: while another test process (a parallel run, or another
    # pytest-xdist worker) runs `npm install`, the package's package.json may be there before
    # the packages it needs, and a look without the lock would start a half-installed emulator.
    with _file_lock(CACHE_DIR.parent / "tg.lock"):
        if _installed_version() == VERSION:
            return node
        command = [
            npm,
            "install",
            "--prefix",
            str(CACHE_DIR),
            "--no-audit",
            "--no-fund",
            "--save-exact",
            f"{PACKAGE}@{VERSION}",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise EmulatorUnavailable(
                f"`{' '.join(command)}` took more than {INSTALL_TIMEOUT:.0f} s"
            ) from exc
        if done.returncode != 0 or _installed_version() != VERSION:
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise EmulatorUnavailable(
                f"`{' '.join(command)}` failed (exit {done.returncode}): {tail}"
            )
    return node


# ------------------------------------------------------------------------------ the process


@dataclass
class EmulatorProcess:
    """The running launcher: its port, base URL and log (stderr)."""

    process: subprocess.Popen[bytes]
    port: int
    log_file: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self.log_file.flush()
        self.log_file.seek(0)
        return self.log_file.read().decode("utf-8", "replace")

    def stop(self) -> None:
        process = self.process
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the launcher exits when its stdin closes
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self.log_file.close()


def start_emulator(node: str, *, timeout: float = START_TIMEOUT) -> EmulatorProcess:
    """Start the launcher on a free port and wait for its {"port": N} line."""
    log_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by EmulatorProcess.stop)
    process = subprocess.Popen(
        [
            node,
            str(LAUNCHER),
            "--modules",
            str(MODULES_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--exit-on-stdin-close",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log_file,
    )
    emulator = EmulatorProcess(process=process, port=0, log_file=log_file)
    assert process.stdout is not None
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                break
            if selector.select(timeout=left):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
    line = buffer.split(b"\n", 1)[0]
    try:
        emulator.port = int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        emulator.stop()
        raise EmulatorUnavailable(
            f"the Telegram emulator did not report its port within {timeout:.0f} s "
            f"(stdout {buffer[:500]!r}); its log:\n{emulator_log_tail(emulator)}"
        ) from None
    return emulator


def emulator_log_tail(emulator: EmulatorProcess) -> str:
    try:
        return emulator.log()[-3000:]
    except ValueError:  # already closed
        return ""


# ------------------------------------------------------------------------------ what the bot sent


@dataclass(frozen=True)
class SentMedia:
    """A file the bot sent: uploaded (file_name, size), by URL, or by file_id (`given`)."""

    kind: str  # document, photo, video, audio, voice, animation
    source: str  # upload, url or file_id
    file_id: str
    file_unique_id: str
    file_name: str | None
    mime_type: str | None
    size: int | None
    url: str | None
    given: str | None  # the URL or file_id string the bot gave, None for an upload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SentMedia:
        return cls(
            kind=data["kind"],
            source=data["source"],
            file_id=data["file_id"],
            file_unique_id=data["file_unique_id"],
            file_name=data.get("file_name"),
            mime_type=data.get("mime_type"),
            size=data.get("size"),
            url=data.get("url"),
            given=data.get("given"),
        )


@dataclass(frozen=True)
class BotMessage:
    """One message the bot sent to a chat, in its current state (edits applied)."""

    message_id: int
    chat_id: int
    method: str  # sendMessage, sendDocument, ...
    text: str | None  # what the user sees: the text or caption, HTML tags stripped
    raw_text: str | None  # the text or caption as the bot sent it
    parse_mode: str | None
    reply_markup: dict[str, Any] | None  # any kind: inline, reply keyboard, remove, force reply
    media: SentMedia | None
    deleted: bool
    edits: list[dict[str, Any]]
    message: dict[str, Any]  # the Bot API Message the bot got back (after edits)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BotMessage:
        return cls(
            message_id=data["message_id"],
            chat_id=data["chat_id"],
            method=data["method"],
            text=data.get("text"),
            raw_text=data.get("raw_text"),
            parse_mode=data.get("parse_mode"),
            reply_markup=data.get("reply_markup"),
            media=SentMedia.from_json(data["media"]) if data.get("media") else None,
            deleted=bool(data.get("deleted")),
            edits=list(data.get("edits") or []),
            message=data["message"],
        )

    @property
    def document(self) -> SentMedia | None:
        return self.media if self.media is not None and self.media.kind == "document" else None

    @property
    def inline_buttons(self) -> list[list[dict[str, Any]]]:
        """The rows of the inline keyboard (empty without one)."""
        markup = self.reply_markup or {}
        return [list(row) for row in markup.get("inline_keyboard", [])]

    @property
    def keyboard_buttons(self) -> list[list[dict[str, Any]]]:
        """The rows of the reply keyboard (buttons as dicts), empty without one."""
        markup = self.reply_markup or {}
        return [
            [button if isinstance(button, dict) else {"text": button} for button in row]
            for row in markup.get("keyboard", [])
        ]

    def labels(self) -> list[str]:
        """Every button label, inline or reply keyboard, row by row."""
        rows = self.inline_buttons + self.keyboard_buttons
        return [str(button.get("text")) for row in rows for button in row]

    @property
    def reply_to_message_id(self) -> int | None:
        """The message this one replies to, when the bot sent it as a reply."""
        replied = self.message.get("reply_to_message")
        return int(replied["message_id"]) if isinstance(replied, dict) else None

    def callback_data(self, label: str) -> str:
        for row in self.inline_buttons:
            for button in row:
                if button.get("text") == label and "callback_data" in button:
                    return str(button["callback_data"])
        raise AssertionError(
            f"no inline button {label!r} in message {self.message_id}: {self.labels()}"
        )


@dataclass(frozen=True)
class Sent:
    """What the emulator assigned to a prospect's message."""

    message_id: int
    update_id: int


@dataclass(frozen=True)
class Pressed:
    """What the emulator assigned to a button press, and the message the button was on."""

    callback_query_id: str
    update_id: int
    message_id: int


@dataclass(frozen=True)
class CallbackAnswer:
    """The bot's answerCallbackQuery: the toast (or alert) the user saw after a press."""

    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CallbackAnswer:
        return cls(
            callback_query_id=str(params["callback_query_id"]),
            text=params.get("text"),
            show_alert=bool(params.get("show_alert")),
            url=params.get("url"),
        )


# ------------------------------------------------------------------------------ the client


_bot_ids = itertools.count(700_000_001)
# Real user ids go past 2**31 and so do these, so an int32 column shows up in the tests.
_chat_ids = itertools.count(6_000_000_000 + (os.getpid() % 1000) * 1_000_000 + 1)
# Supergroup ids, as Telegram gives them: -100 followed by the group's own number.
_group_ids = itertools.count(-1_002_000_000_000 - (os.getpid() % 1000) * 1_000_000 - 1, -1)
# Basic group ids: negative, without the -100 (new ones start with -4 these days).
_basic_group_ids = itertools.count(-4_000_000_000 - (os.getpid() % 1000) * 1_000_000 - 1, -1)


def new_token() -> str:
    return f"{next(_bot_ids)}:TEST{uuid.uuid4().hex[:16]}"


@dataclass
class TelegramClient:
    """A prospect (or several, one per chat) talking to the bot with `token` through the emulator.

    Private chats: a chat id is also the prospect's user id.
    """

    base_url: str
    token: str = field(default_factory=new_token)
    request_timeout: float = 30.0
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    @property
    def api_url(self) -> str:
        """What the bot's TELEGRAM_API_URL should be (aiogram adds /bot<token>/<method>)."""
        return self.base_url

    @staticmethod
    def new_chat_id() -> int:
        """A chat id (= user id) never used before in this test run."""
        return next(_chat_ids)

    @staticmethod
    def new_group_id() -> int:
        """A supergroup chat id (-100...) never used before in this test run."""
        return next(_group_ids)

    @staticmethod
    def new_basic_group_id() -> int:
        """A basic group's chat id (negative, not -100...) never used before in this test run."""
        return next(_basic_group_ids)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> TelegramClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -------------------------------------------------------------- HTTP

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout)
            )
        return self._session

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        async with self._http().post(f"{self.base_url}{path}", json=payload) as response:
            body = await response.json(content_type=None)
        if not isinstance(body, dict) or not body.get("ok"):
            raise AssertionError(f"emulator {path} refused {payload!r}: {body!r}")
        return body.get("result")

    async def bot_api(self, method: str, **params: Any) -> dict[str, Any]:
        """Call the Bot API as the bot would (JSON body) and return the raw answer."""
        url = f"{self.base_url}/bot{self.token}/{method}"
        async with self._http().post(url, json=params) as response:
            body: dict[str, Any] = await response.json(content_type=None)
        return body

    # -------------------------------------------------------------- acting as a prospect

    @staticmethod
    def _user(
        user_id: int,
        first_name: str,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    def _message(
        self,
        chat_id: int,
        *,
        first_name: str,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
        **content: Any,
    ) -> dict[str, Any]:
        user = self._user(chat_id, first_name, last_name, username, language_code)
        chat = {k: v for k, v in user.items() if k not in ("is_bot", "language_code")}
        chat["type"] = "private"
        return {
            "botToken": self.token,
            "from": user,
            "chat": chat,
            "date": int(time.time()),
            **content,
        }

    async def send_message(
        self,
        chat_id: int,
        *,
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ru",
        **content: Any,
    ) -> Sent:
        """Any message from the prospect: `content` is its fields (text, contact, photo, ...)."""
        message = self._message(
            chat_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            **content,
        )
        result = await self._post("/sendMessage", message)
        return Sent(message_id=result["message_id"], update_id=result["update_id"])

    async def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ru",
    ) -> Sent:
        return await self.send_message(
            chat_id,
            text=text,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )

    async def send_command(
        self,
        chat_id: int,
        command: str,
        *,
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ru",
    ) -> Sent:
        """A command with its bot_command entity, e.g. "/start src_test"."""
        if not command.startswith("/"):
            raise ValueError(f"a command starts with '/': {command!r}")
        length = command.find(" ") if " " in command else len(command)
        message = self._message(
            chat_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            text=command,
            entities=[{"offset": 0, "length": length, "type": "bot_command"}],
        )
        result = await self._post("/sendCommand", message)
        return Sent(message_id=result["message_id"], update_id=result["update_id"])

    async def share_contact(
        self,
        chat_id: int,
        phone: str,
        user_id: int | None = None,
        *,
        first_name: str = "Test",
        last_name: str | None = None,
    ) -> Sent:
        """A contact message; `user_id` defaults to the prospect's own (request_contact)."""
        contact: dict[str, Any] = {
            "phone_number": phone,
            "first_name": first_name,
            "user_id": chat_id if user_id is None else user_id,
        }
        if last_name is not None:
            contact["last_name"] = last_name
        return await self.send_message(
            chat_id, first_name=first_name, last_name=last_name, contact=contact
        )

    async def press(
        self,
        chat_id: int,
        callback_data: str,
        message_id: int | None = None,
        *,
        first_name: str = "Test",
        username: str | None = None,
    ) -> Pressed:
        """Press an inline button. Without `message_id` the button is taken to be on the bot's
        last message carrying this callback_data (else its last message in the chat); an id the
        bot never sent arrives as an inaccessible message (date 0), as Telegram does."""
        message: dict[str, Any] = {"chat": {"id": chat_id, "type": "private"}}
        if message_id is not None:
            message["message_id"] = message_id
        payload = {
            "botToken": self.token,
            "from": self._user(chat_id, first_name, None, username, "ru"),
            "message": message,
            "data": callback_data,
        }
        result = await self._post("/sendCallback", payload)
        return Pressed(
            callback_query_id=result["callback_query_id"],
            update_id=result["update_id"],
            message_id=result["message_id"],
        )

    async def press_button(self, chat_id: int, label: str, *, first_name: str = "Test") -> Pressed:
        """Press the inline button with this label on the newest bot message that has it."""
        messages = await self.bot_messages(chat_id)
        for message in reversed(messages):
            if message.deleted:
                continue
            for row in message.inline_buttons:
                for button in row:
                    if button.get("text") == label and "callback_data" in button:
                        return await self.press(
                            chat_id,
                            str(button["callback_data"]),
                            message.message_id,
                            first_name=first_name,
                        )
        labels = [m.labels() for m in messages if not m.deleted and m.inline_buttons]
        raise AssertionError(f"no inline button {label!r} in chat {chat_id}; buttons: {labels}")

    # -------------------------------------------------------------- acting in a group

    @staticmethod
    def group_chat(group_id: int, title: str) -> dict[str, Any]:
        """A group's Chat: -100... is a supergroup, other negative ids a basic group."""
        if group_id >= 0:
            raise ValueError(f"a group chat id is negative: {group_id}")
        kind = "supergroup" if str(group_id).startswith("-100") else "group"
        return {"id": group_id, "type": kind, "title": title}

    async def send_group_message(
        self,
        group_id: int,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ru",
        title: str = "Менеджеры",
        reply_to: BotMessage | int | None = None,
        **content: Any,
    ) -> Sent:
        """Any message a user (`user_id`) writes in a group; `reply_to` makes it a reply to
        that message of the group (a BotMessage or an id): the bot gets the full message in
        reply_to_message, with `from` = the bot for its own."""
        message: dict[str, Any] = {
            "botToken": self.token,
            "from": self._user(user_id, first_name, last_name, username, language_code),
            "chat": self.group_chat(group_id, title),
            "date": int(time.time()),
            **content,
        }
        if reply_to is not None:
            replied = reply_to.message_id if isinstance(reply_to, BotMessage) else reply_to
            message["reply_to_message"] = {"message_id": replied}
        path = "/sendCommand" if "entities" in content else "/sendMessage"
        result = await self._post(path, message)
        return Sent(message_id=result["message_id"], update_id=result["update_id"])

    async def send_group_text(
        self,
        group_id: int,
        text: str,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        title: str = "Менеджеры",
        reply_to: BotMessage | int | None = None,
    ) -> Sent:
        """A user's text in a group, optionally a reply to a message there."""
        return await self.send_group_message(
            group_id,
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            title=title,
            reply_to=reply_to,
            text=text,
        )

    async def send_group_command(
        self,
        group_id: int,
        command: str,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        title: str = "Менеджеры",
    ) -> Sent:
        """A command in a group ("/stats" or "/stats@bot_username"), with its entity."""
        if not command.startswith("/"):
            raise ValueError(f"a command starts with '/': {command!r}")
        length = command.find(" ") if " " in command else len(command)
        return await self.send_group_message(
            group_id,
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            title=title,
            text=command,
            entities=[{"offset": 0, "length": length, "type": "bot_command"}],
        )

    async def press_group(
        self,
        group_id: int,
        callback_data: str,
        message_id: int,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
    ) -> str:
        """A user (`user_id`) presses a button with `callback_data` on message `message_id` of
        the group, whatever the message shows now (a button from a screen not yet updated);
        the callback query id."""
        payload = {
            "botToken": self.token,
            "from": self._user(user_id, first_name, last_name, username, "ru"),
            "message": {"chat": {"id": group_id}, "message_id": message_id},
            "data": callback_data,
        }
        result = await self._post("/sendCallback", payload)
        return str(result["callback_query_id"])

    async def press_group_button(
        self,
        group_id: int,
        message: BotMessage,
        label: str,
        *,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
    ) -> str:
        """A user (`user_id`) presses the inline button `label` of the bot's `message` in the
        group, as that message is now (edits applied); the callback query id."""
        current = await self.bot_message(group_id, message.message_id)
        if current.deleted:
            raise AssertionError(f"message {message.message_id} in chat {group_id} is deleted")
        return await self.press_group(
            group_id,
            current.callback_data(label),
            current.message_id,
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
        )

    # -------------------------------------------------------------- what the bot did

    async def bot_messages(self, chat_id: int) -> list[BotMessage]:
        """Everything the bot sent to the chat, in order, deleted ones included (`deleted`)."""
        result = await self._post("/test/botMessages", {"token": self.token, "chatId": chat_id})
        return [BotMessage.from_json(entry) for entry in result]

    async def bot_message(self, chat_id: int, message_id: int) -> BotMessage:
        """One message the bot sent to the chat, as it is now (edits applied)."""
        for message in await self.bot_messages(chat_id):
            if message.message_id == message_id:
                return message
        raise AssertionError(f"the bot sent no message {message_id} to chat {chat_id}")

    async def last_message(self, chat_id: int) -> BotMessage:
        messages = await self.bot_messages(chat_id)
        if not messages:
            raise AssertionError(f"the bot has sent nothing to chat {chat_id}")
        return messages[-1]

    async def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Every Bot API call of this bot (or of one method), failed ones too: dicts with
        method, params, files, ok, error_code, description."""
        payload: dict[str, Any] = {"token": self.token}
        if method is not None:
            payload["method"] = method
        result: list[dict[str, Any]] = await self._post("/test/calls", payload)
        return result

    async def recorded(self, method: str) -> list[dict[str, Any]]:
        """The parameters of this bot's successful calls of `method`, in order."""
        return [call["params"] for call in await self.calls(method) if call["ok"]]

    async def wait_for(
        self,
        chat_id: int,
        expected: Expectation,
        timeout: float = 10.0,  # noqa: ASYNC109 (a deadline for polling, with a report)
        *,
        poll: float = POLL_INTERVAL,
    ) -> list[BotMessage]:
        """Poll every `poll` seconds until the bot has sent to the chat: at least `expected`
        messages (int), a message containing `expected` (str), or until `expected(messages)`
        is true."""
        if isinstance(expected, int):
            count = expected

            def check(messages: list[BotMessage]) -> bool:
                return len(messages) >= count
        elif isinstance(expected, str):
            needle = expected

            def check(messages: list[BotMessage]) -> bool:
                return any(needle in (m.text or "") for m in messages)
        else:
            check = expected
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            messages = await self.bot_messages(chat_id)
            if check(messages):
                return messages
            if loop.time() >= deadline:
                break
            await asyncio.sleep(poll)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {expected!r} in chat {chat_id}; "
            f"the bot sent: {[(m.method, m.text) for m in messages]}"
            f"{await self._failures_note()}"
        )

    async def callback_answers(self) -> list[CallbackAnswer]:
        """The bot's successful answerCallbackQuery calls, in order: the toasts users saw."""
        return [CallbackAnswer.from_params(p) for p in await self.recorded("answerCallbackQuery")]

    async def wait_for_callback_answer(
        self,
        callback_query_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109 (a deadline for polling, with a report)
    ) -> CallbackAnswer:
        """Poll until the bot has answered this button press; its answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for answer in await self.callback_answers():
                if answer.callback_query_id == callback_query_id:
                    return answer
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        raise AssertionError(
            f"timed out after {timeout} s waiting for the answer to callback query "
            f"{callback_query_id}{await self._failures_note()}"
        )

    async def wait_for_calls(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 (a deadline for polling, with a report)
    ) -> list[dict[str, Any]]:
        """Poll until the bot has made `count` successful calls of `method`; their params."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            params = await self.recorded(method)
            if len(params) >= count:
                return params
            if loop.time() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {count} {method} call(s), got "
            f"{len(params)}{await self._failures_note()}"
        )

    async def _failures_note(self) -> str:
        # Only answered errors: a long poll still waiting (or cut short by the bot) is no failure.
        calls = await self.calls()
        failed = [c for c in calls if not c["ok"] and c.get("error_code") is not None][-5:]
        if not failed:
            return ""
        lines = [f"{c['method']}: {c.get('error_code')} {c.get('description')}" for c in failed]
        return "; failed bot calls: " + " | ".join(lines)

    # -------------------------------------------------------------- test-only controls

    async def fail_next(
        self,
        method: str,
        *,
        error_code: int = 400,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        times: int = 1,
    ) -> None:
        """Make this bot's next `times` calls of `method` fail with this error, e.g.
        `fail_next("sendMessage", error_code=429, retry_after=1)` or `error_code=403` (blocked)."""
        await self._post(
            "/test/failNext",
            {
                "token": self.token,
                "method": method,
                "error_code": error_code,
                "description": description,
                "retry_after": retry_after,
                "migrate_to_chat_id": migrate_to_chat_id,
                "times": times,
            },
        )

    async def set_limits(
        self,
        enabled: bool = True,
        *,
        chat_per_second: float | None = None,
        chat_burst: float | None = None,
        group_per_minute: float | None = None,
        overall_per_second: float | None = None,
    ) -> dict[str, Any]:
        """Telegram's flood limits for this bot (on by default): off with `enabled=False`, or
        other numbers (Telegram tightens them for a bot as it likes); counting starts afresh.
        The limits now in force."""
        result: dict[str, Any] = await self._post(
            "/test/limits",
            {
                "token": self.token,
                "enabled": enabled,
                "chat_per_second": chat_per_second,
                "chat_burst": chat_burst,
                "group_per_minute": group_per_minute,
                "overall_per_second": overall_per_second,
            },
        )
        return result

    async def violations(self) -> list[dict[str, Any]]:
        """This bot's sends that came inside a retry_after the emulator had given it (each
        was refused with 429 again): dicts with method, chat_id, scope and early_ms."""
        result: list[dict[str, Any]] = await self._post("/test/violations", {"token": self.token})
        return result

    async def upgrade_group(
        self, group_id: int, *, user_id: int, first_name: str, tell_the_bot: bool = True
    ) -> int:
        """A user upgrades the basic group `group_id` to a supergroup: its new id. From now on
        the Bot API answers a call naming the old id with 400 and migrate_to_chat_id, users
        act in the new chat, and the bot gets a migrate_to_chat_id message in the old chat and
        a migrate_from_chat_id one in the new (not with `tell_the_bot=False`: a bot that
        missed them learns of the upgrade from the 400)."""
        result = await self._post(
            "/test/upgradeGroup",
            {
                "token": self.token,
                "chatId": group_id,
                "from": self._user(user_id, first_name, None, None, "ru"),
                "notify": tell_the_bot,
            },
        )
        return int(result["chat_id"])

    async def inject_update(self, update: Any, *, assign_update_id: bool = True) -> int | None:
        """Queue any JSON as an update for the bot's getUpdates, as is. A dict without update_id
        gets the next one unless `assign_update_id` is False; an update without an integer
        update_id is handed out once (it can never be confirmed by offset)."""
        result = await self._post(
            "/test/injectUpdate",
            {"token": self.token, "update": update, "assign_update_id": assign_update_id},
        )
        update_id: int | None = result["update_id"]
        return update_id

    async def file_bytes(self, file_id: str) -> bytes:
        """The content of a file the bot uploaded."""
        async with self._http().get(f"{self.base_url}/test/files/{file_id}") as response:
            if response.status != 200:
                raise AssertionError(f"no uploaded file {file_id!r}")
            return await response.read()


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def telegram_emulator_server() -> Iterator[EmulatorProcess]:
    """The launcher process, one per test module (tests get tokens of their own)."""
    try:
        node = ensure_emulator_installed()
        emulator = start_emulator(node)
    except EmulatorUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
async def telegram_emulator(
    telegram_emulator_server: EmulatorProcess,
) -> AsyncIterator[TelegramClient]:
    """A client with a fresh bot token on the module's emulator. Whatever the test did, the
    bot under test never sent inside a retry_after Telegram gave it."""
    client = TelegramClient(telegram_emulator_server.url)
    try:
        yield client
        violations = await client.violations()
        assert violations == [], f"sends inside a retry_after Telegram gave: {violations}"
    finally:
        await client.close()
