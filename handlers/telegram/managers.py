"""Commands in the managers' group chat. Only that chat is listened to: anyone who can write
there is a manager; the same command elsewhere gets nothing."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.scenario.reload import ScenarioReloader


def setup_managers_router(managers_chat_id: int | None) -> Router:
    router = Router(name=__name__)
    if managers_chat_id is None:
        return router
    router.message.filter(F.chat.id == managers_chat_id)

    @router.message(Command("reload"))
    async def reload(message: Message, reloader: ScenarioReloader | None) -> None:
        if reloader is None:
            return
        _, report = await reloader.reload()
        await message.answer(report[:4000])

    return router
