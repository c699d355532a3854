"""Rendering the engine's `Outgoing` as Telegram messages, and sending them politely."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
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
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.messages import Button, FileRef, Outgoing
from bot.transport import Blocked, RetryLater, TemporaryFailure
from handlers.telegram.callbacks import pack_action

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024  # a longer text goes in its own message before the file
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
        managers_chat_id: int | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.bot = bot
        self.sleep = sleep
        self.managers_chat_id = managers_chat_id
        self._file_ids: dict[tuple[str, float], str] = {}
        self._contact_keyboard: set[int] = set()

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
        try:
            await self._send(int(external_id), message)
        except TelegramForbiddenError as exc:
            raise Blocked(str(exc)) from exc
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after, str(exc)) from exc
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise TemporaryFailure(str(exc)) from exc

    async def send_now(self, chat_id: int, messages: list[Outgoing]) -> None:
        """Replies to a prospect who is waiting. Telegram's retry_after is waited out exactly,
        a bounded number of times; past that the reply is given up and the error raised."""
        for message in messages:
            for attempt in range(1, INLINE_ATTEMPTS + 1):
                try:
                    await self.send(str(chat_id), message)
                    break
                except RetryLater as exc:
                    if attempt == INLINE_ATTEMPTS or exc.seconds > INLINE_WAIT_LIMIT_SECONDS:
                        raise
                    log.warning(
                        "Telegram asked to wait %.1fs before replying to %s", exc.seconds, chat_id
                    )
                    await self.sleep(exc.seconds)

    async def post_to_managers(
        self, text: str, buttons: Rows = (), *, expect_reply: bool = False
    ) -> str | None:
        """A message in the managers' chat; its reference `<chat>:<message>` (for
        `edit_in_managers` and for routing replies: message ids count per chat, so a new
        managers' chat must not meet an old one's posts), or None without a managers' chat."""
        if self.managers_chat_id is None:
            return None
        markup: InlineKeyboardMarkup | ForceReply | None = inline_keyboard(Outgoing(text, buttons))
        if expect_reply:
            markup = ForceReply(input_field_placeholder=text[:64])
        try:
            sent = await self.bot.send_message(
                self.managers_chat_id, text, reply_markup=markup, disable_web_page_preview=True
            )
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after, str(exc)) from exc
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise TemporaryFailure(str(exc)) from exc
        return post_reference(self.managers_chat_id, sent.message_id)

    async def edit_in_managers(self, reference: str, text: str, buttons: Rows = ()) -> None:
        """Rewrite a message posted with `post_to_managers` (a lead card changing state)."""
        chat, _, message_id = reference.rpartition(":")
        # A bare id is a post of an earlier version, made in the configured chat.
        if self.managers_chat_id is None or chat not in ("", str(self.managers_chat_id)):
            return
        try:
            await self.bot.edit_message_text(
                text=text,
                chat_id=self.managers_chat_id,
                message_id=int(message_id),
                reply_markup=inline_keyboard(Outgoing(text, buttons)),
                disable_web_page_preview=True,
            )
        except TelegramBadRequest as exc:
            if "message is not modified" not in str(exc):
                raise

    def _markup(self, chat_id: int, message: Outgoing) -> Markup | None:
        if message.contact_request:
            self._contact_keyboard.add(chat_id)
            return ReplyKeyboardMarkup(
                keyboard=[[KeyboardButton(text=message.contact_request, request_contact=True)]],
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
        caption: str | None = message.text
        if len(message.text) > CAPTION_LIMIT:
            await self.bot.send_message(chat_id, message.text, disable_web_page_preview=True)
            caption = None
        await self._send_file(chat_id, message.file, caption, markup)

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
