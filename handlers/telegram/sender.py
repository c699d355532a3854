"""Rendering the engine's `Outgoing` as Telegram messages, and sending them politely."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    BufferedInputFile,
    ForceReply,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.messages import SIZES, Button, FileRef, Outgoing, fitted_all
from bot.pacing import Pacer
from bot.transport import Blocked, Refused, RetryLater, TemporaryFailure, send_waiting
from handlers.telegram.callbacks import pack_action
from handlers.telegram.holds import ChatHolds
from handlers.telegram.managers_chat import ManagersChatId

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# A reply sent right now waits out Telegram's retry_after, but not for ever.
INLINE_ATTEMPTS = 3
INLINE_WAIT_LIMIT_SECONDS = 60.0
Rows = tuple[tuple[Button, ...], ...]

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


def post_reference(chat_id: int, message_id: int) -> str:
    """How a post in a group chat is named in the database: the chat and the message."""
    return f"{chat_id}:{message_id}"


def inline_keyboard(message: Outgoing) -> InlineKeyboardMarkup | None:
    if not message.buttons:
        return None
    rows = [
        [
            InlineKeyboardButton(text=b.text, url=b.url)
            if b.url
            else InlineKeyboardButton(text=b.text, callback_data=pack_action(b.action or "menu"))
            for b in row
        ]
        for row in message.buttons
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


class TelegramSender:
    """Sends to one bot's chats; remembers uploaded files' ids and open contact keyboards."""

    channel = "telegram"

    def __init__(
        self,
        bot: Bot,
        managers: int | ManagersChatId | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        holds: ChatHolds | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.bot = bot
        self.sleep = sleep
        # Replies sent right away book the channel's limit here, with the delivery worker's
        # sends and every other process's (through Redis): None leaves them unpaced (tests).
        self.pacer = pacer
        self.managers = (
            managers if isinstance(managers, ManagersChatId) else ManagersChatId(managers)
        )
        self.holds = holds or ChatHolds()
        self._file_ids: dict[tuple[str, float], str] = {}
        self._contact_keyboard: set[int] = set()

    @property
    def managers_chat_id(self) -> int | None:
        """The managers' chat as it is now (a supergroup, once the group was upgraded)."""
        return self.managers.current

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        """Send one message; `Blocked` when the user blocked the bot, `RetryLater` on limits.
        The Bot API has no idempotency key, so `idempotency_key` is not used here."""
        chat_id = int(external_id)
        held = self.holds.left(chat_id)
        if held > 0:  # Telegram would refuse it, and count it against the bot
            raise RetryLater(held, f"Telegram asked chat {chat_id} to wait {held:.1f}s more")
        try:
            await self._send(chat_id, message)
        except TelegramForbiddenError as exc:
            raise Blocked(str(exc)) from exc
        except TelegramRetryAfter as exc:
            self.holds.hold(chat_id, exc.retry_after)
            raise RetryLater(exc.retry_after, str(exc)) from exc
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise TemporaryFailure(str(exc)) from exc
        except TelegramBadRequest as exc:
            if "is too long" in exc.message:  # "message is too long", "message caption is ..."
                raise Refused(exc.message) from exc
            raise

    async def send_now(self, chat_id: int, messages: list[Outgoing]) -> None:
        """Replies to a prospect who is waiting, each within the channel's limit. Telegram's
        retry_after is waited out, a bounded number of times; past that the reply is given
        up and the error raised. A text too long for one message goes as several
        (`fitted_all`)."""
        paced = None if self.pacer is None else (self.pacer, self.channel, str(chat_id))
        for message in fitted_all(messages, SIZES[self.channel]):
            await send_waiting(
                partial(self._send_after_hold, chat_id, message),
                sleep=self.sleep,
                attempts=INLINE_ATTEMPTS,
                wait_limit=INLINE_WAIT_LIMIT_SECONDS,
                paced=paced,
            )

    async def _send_after_hold(self, chat_id: int, message: Outgoing) -> None:
        """A retry_after of this chat (this reply's, another's or the worker's) ends first;
        waiting it out is not a refusal."""
        while (held := self.holds.left(chat_id)) > 0:
            if held > INLINE_WAIT_LIMIT_SECONDS:
                raise RetryLater(held, f"chat {chat_id} is held for {held:.1f}s")
            await self.sleep(held)
        await self.send(str(chat_id), message)

    async def post_to_managers(
        self, text: str, buttons: Rows = (), *, expect_reply: bool = False
    ) -> str | None:
        """A message in the managers' chat; its reference `<chat>:<message>` (for
        `edit_in_managers` and for routing replies: message ids count per chat, so a new
        managers' chat must not meet an old one's posts), or None without a managers' chat.
        A group upgraded to a supergroup is followed: the post goes there, later ones too."""
        chat_id = self.managers.current
        if chat_id is None:
            return None
        markup: InlineKeyboardMarkup | ForceReply | None = inline_keyboard(Outgoing(text, buttons))
        if expect_reply:
            markup = ForceReply(input_field_placeholder=text[:64])
        try:
            sent = await self._post(chat_id, text, markup)
        except TelegramMigrateToChat as exc:
            await self.managers.moved(chat_id, exc.migrate_to_chat_id)
            chat_id = exc.migrate_to_chat_id
            sent = await self._post(chat_id, text, markup)
        return post_reference(chat_id, sent.message_id)

    async def _post(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | ForceReply | None
    ) -> Message:
        held = self.holds.left(chat_id)
        if held > 0:
            raise RetryLater(held, f"Telegram asked the managers' chat to wait {held:.1f}s more")
        try:
            return await self.bot.send_message(
                chat_id, text, reply_markup=markup, disable_web_page_preview=True
            )
        except TelegramRetryAfter as exc:
            self.holds.hold(chat_id, exc.retry_after)
            raise RetryLater(exc.retry_after, str(exc)) from exc
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise TemporaryFailure(str(exc)) from exc

    async def edit_in_managers(self, reference: str, text: str, buttons: Rows = ()) -> None:
        """Rewrite a message posted with `post_to_managers` (a lead card changing state)."""
        chat, _, message_id = reference.rpartition(":")
        # A bare id is a post of an earlier version, made in the configured chat. A post in a
        # group since upgraded to a supergroup can no longer be edited: it stays as it was.
        posted_in = int(chat) if chat else self.managers.configured
        if posted_in is None or not self.managers.holds(posted_in):
            return
        try:
            await self.bot.edit_message_text(
                text=text,
                chat_id=posted_in,
                message_id=int(message_id),
                reply_markup=inline_keyboard(Outgoing(text, buttons)),
                disable_web_page_preview=True,
            )
        except TelegramMigrateToChat as exc:
            await self.managers.moved(posted_in, exc.migrate_to_chat_id)
        except TelegramBadRequest as exc:
            if "message is not modified" not in str(exc):
                raise

    def _markup(self, chat_id: int, message: Outgoing) -> Markup | None:
        if message.contact_request:
            self._contact_keyboard.add(chat_id)
            # A message carries one keyboard, so its other buttons (the way out of a phone
            # question) join the share-phone one as keys that send their label as text; the
            # engine reads those labels (bot/engine/inside_question.py). A link cannot be a key.
            keys = [
                [KeyboardButton(text=b.text) for b in row if not b.url] for row in message.buttons
            ]
            return ReplyKeyboardMarkup(
                keyboard=[
                    [KeyboardButton(text=message.contact_request, request_contact=True)],
                    *(row for row in keys if row),
                ],
                resize_keyboard=True,
                one_time_keyboard=True,
            )
        inline = inline_keyboard(message)
        if inline is None and chat_id in self._contact_keyboard:
            # A message can carry one kind of keyboard: the first one without inline buttons
            # takes the share-phone keyboard away.
            self._contact_keyboard.discard(chat_id)
            return ReplyKeyboardRemove()
        return inline

    async def _send(self, chat_id: int, message: Outgoing) -> None:
        markup = self._markup(chat_id, message)
        if message.file is None:
            await self.bot.send_message(
                chat_id, message.text, reply_markup=markup, disable_web_page_preview=True
            )
            return
        # Fitted before (`fitted_all`): a text too long for a caption came as messages of
        # its own, so a caption over the limit is Telegram's 400, refused, not a second send.
        await self._send_file(chat_id, message.file, message.text or None, markup)

    async def _send_file(
        self, chat_id: int, file: FileRef, caption: str | None, markup: Markup | None
    ) -> None:
        photo = Path(file.name).suffix.lower() in PHOTO_SUFFIXES
        key: tuple[str, float] | None = None
        if file.data is not None:
            media: str | BufferedInputFile | FSInputFile = BufferedInputFile(file.data, file.name)
        elif file.path is not None:
            key = (file.path, os.stat(file.path).st_mtime)
            media = self._file_ids.get(key) or FSInputFile(file.path, filename=file.name)
        else:
            media = file.url or ""
        try:
            if photo:
                sent = await self.bot.send_photo(
                    chat_id, media, caption=caption, reply_markup=markup
                )
            else:
                sent = await self.bot.send_document(
                    chat_id, media, caption=caption, reply_markup=markup
                )
        except TelegramBadRequest:
            if key is None or key not in self._file_ids:
                raise
            del self._file_ids[key]  # a cached file id went stale: upload once more
            await self._send_file(chat_id, file, caption, markup)
            return
        if key is not None:
            uploaded = (
                sent.photo[-1].file_id
                if sent.photo
                else (sent.document.file_id if sent.document else None)
            )
            if uploaded:
                self._file_ids[key] = uploaded
