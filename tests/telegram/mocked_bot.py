"""A real aiogram Bot whose HTTP session records requests instead of sending them, the way
aiogram's own tests/mocked_bot.py works; answers are valid Bot API objects made on the spot."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.methods import (
    GetMe,
    SendDocument,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, Document, PhotoSize, User

from handlers.telegram.session import HeldResponseTypes

BOT_USER = User(id=42, is_bot=True, first_name="Leadbot", username="leadbot_test_bot")


class RecordingSession(HeldResponseTypes):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []
        self._failures: list[tuple[type, int | None, dict[str, Any]]] = []
        self._next_id = 1000
        self.message_ids: dict[int, int] = {}  # id(request) -> the message id it got

    def fail_next(
        self,
        method: type,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        *,
        migrate_to_chat_id: int | None = None,
        chat_id: int | None = None,
    ) -> None:
        """The next call of `method` (to `chat_id`, if given) gets this Bot API error."""
        response: dict[str, Any] = {
            "ok": False,
            "error_code": error_code,
            "description": description,
        }
        parameters = {"retry_after": retry_after, "migrate_to_chat_id": migrate_to_chat_id}
        if any(value is not None for value in parameters.values()):
            response["parameters"] = {k: v for k, v in parameters.items() if v is not None}
        self._failures.append((method, chat_id, response))

    def of(self, method: type) -> list[Any]:
        return [r for r in self.requests if isinstance(r, method)]

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram's signature
    ) -> TelegramType:
        self.requests.append(method)
        for index, (kind, chat_id, response) in enumerate(self._failures):
            if isinstance(method, kind) and chat_id in (None, getattr(method, "chat_id", None)):
                del self._failures[index]
                return self.check_response(
                    bot, method, response["error_code"], self.json_dumps(response)
                ).result  # type: ignore[return-value]
        result = self._result(method)
        content = self.json_dumps({"ok": True, "result": result})
        return self.check_response(bot, method, 200, content).result  # type: ignore[return-value]

    def _result(self, method: TelegramMethod[Any]) -> Any:
        if isinstance(method, GetMe):
            return BOT_USER.model_dump(exclude_none=True)
        if isinstance(method, SendMessage | SendDocument | SendPhoto):
            self._next_id += 1
            self.message_ids[id(method)] = self._next_id
            message: dict[str, Any] = {
                "message_id": self._next_id,
                "date": int(datetime.now(UTC).timestamp()),
                "chat": Chat(id=int(method.chat_id), type="private").model_dump(),
                "from": BOT_USER.model_dump(exclude_none=True),
            }
            if isinstance(method, SendMessage):
                message["text"] = method.text
            elif isinstance(method, SendDocument):
                message["document"] = Document(
                    file_id=f"doc{self._next_id}", file_unique_id=f"u{self._next_id}"
                ).model_dump()
            else:
                message["photo"] = [
                    PhotoSize(
                        file_id=f"ph{self._next_id}",
                        file_unique_id=f"u{self._next_id}",
                        width=1,
                        height=1,
                    ).model_dump()
                ]
            return message
        return True

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109 - aiogram's signature
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        yield b""

    async def close(self) -> None:
        pass


def sent_texts(session: RecordingSession, chat_id: int | None = None) -> list[str]:
    return [
        r.text for r in session.of(SendMessage) if chat_id is None or int(r.chat_id) == chat_id
    ]
