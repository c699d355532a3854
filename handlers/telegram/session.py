"""An aiohttp session that keeps polling alive when the server sends one malformed update, and
does not build the type of every reply it parses again."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import Update
from pydantic import ValidationError

log = logging.getLogger(__name__)


class HeldResponseTypes(BaseSession):
    """aiogram parses every reply as `Response[<what the method returns>]`, and pydantic keeps
    such a class only while something refers to it: between two replies it was collected and
    built again (about 1 ms of CPU an update of the funnel, bench/funnel.py). Held here, one
    per return type."""

    def check_response(
        self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int, content: str
    ) -> Response[TelegramType]:
        held: dict[Any, Any] = self.__dict__.setdefault("_response_types", {})
        if method.__returning__ not in held:
            held[method.__returning__] = Response[method.__returning__]
        return super().check_response(bot, method, status_code, content)


class TolerantSession(HeldResponseTypes, AiohttpSession):
    """aiogram validates a getUpdates batch as a whole: one bad update would fail every poll
    and stall the bot. Here a bad update is logged and replaced by an empty one with its id,
    so the offset moves past it and the rest of the batch is handled."""

    def check_response(
        self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int, content: str
    ) -> Response[TelegramType]:
        if isinstance(method, GetUpdates):
            content = self._drop_malformed(bot, content)
        return super().check_response(bot, method, status_code, content)

    def _drop_malformed(self, bot: Bot, content: str) -> str:
        try:
            data: Any = json.loads(content)
        except ValueError:
            return content
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            return content
        kept = []
        for item in data["result"]:
            try:
                Update.model_validate(item, context={"bot": bot})
                kept.append(item)
            except ValidationError as exc:
                update_id = item.get("update_id") if isinstance(item, dict) else None
                log.warning("malformed update %s skipped: %s", update_id, str(exc).splitlines()[0])
                if isinstance(update_id, int):
                    kept.append({"update_id": update_id})
        data["result"] = kept
        return json.dumps(data)
