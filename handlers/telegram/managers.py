"""The managers' group chat: card buttons, replies to the bot's posts, and the commands
/lead, /today, /redeem, /stats and /reload. Only that chat is listened to: anyone who can write
there is a manager; the same command or a card button's data anywhere else gets nothing. When
the group is upgraded to a supergroup, the supergroup is that chat from then on."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, Message, User

from bot.engine.funnel import Funnel
from bot.handoff import Manager, ManagerDesk
from bot.messages import Outgoing
from bot.redemption import Redemptions, managers_text, parse_redeem
from bot.scenario.reload import ScenarioReloader
from handlers.telegram.callbacks import Press
from handlers.telegram.managers_chat import ManagersChatId
from handlers.telegram.sender import inline_keyboard, post_reference

log = logging.getLogger(__name__)
CHANNEL = "telegram"
STATS_PICTURE = "funnel.png"


def manager_of(user: User) -> Manager:
    name = user.full_name or (f"@{user.username}" if user.username else str(user.id))
    return Manager(CHANNEL, str(user.id), name)


def setup_managers_router(managers: ManagersChatId) -> Router:
    router = Router(name=__name__)
    if managers.current is None:
        return router

    def in_managers_chat(message: Message) -> bool:
        # The supergroup's first message names the group it was: it may come first.
        return managers.holds(message.chat.id) or (
            message.migrate_from_chat_id is not None
            and managers.holds(message.migrate_from_chat_id)
        )

    router.message.filter(in_managers_chat)
    router.callback_query.filter(F.message.chat.id.func(managers.holds))

    @router.message(F.migrate_to_chat_id | F.migrate_from_chat_id)
    async def upgraded(message: Message) -> None:
        if message.migrate_to_chat_id is not None:
            await managers.moved(message.chat.id, message.migrate_to_chat_id)
        elif message.migrate_from_chat_id is not None:
            await managers.moved(message.migrate_from_chat_id, message.chat.id)

    @router.callback_query(Press.filter(F.action.startswith("h:")))
    async def card_button(query: CallbackQuery, callback_data: Press, desk: ManagerDesk) -> None:
        answer = await desk.press(manager_of(query.from_user), callback_data.action)
        await query.answer(answer)

    @router.message(Command("reload"))
    async def reload(message: Message, reloader: ScenarioReloader | None) -> None:
        if reloader is None:
            return
        _, report = await reloader.reload()
        await message.answer(report[:4000])

    @router.message(Command("lead"))
    async def lead(
        message: Message, command: CommandObject, desk: ManagerDesk, funnel: Funnel
    ) -> None:
        if not command.args:
            await message.answer("Напишите /lead и номер лида, телефон или e-mail.")
            return
        card = await desk.card_for(command.args, phone_region=funnel.phone_region)
        if card is None:
            await message.answer(f"Лид «{command.args[:64]}» не найден.")
            return
        lead_id, text, buttons = card
        shown = await message.answer(
            text,
            reply_markup=inline_keyboard(Outgoing(text, buttons)),
            disable_web_page_preview=True,
        )
        # Shown by request, it is a card like the first: kept up to date, and a reply to it
        # goes to the lead.
        await desk.remember(
            CHANNEL, post_reference(message.chat.id, shown.message_id), lead_id, "card"
        )

    @router.message(Command("today"))
    async def today(message: Message, desk: ManagerDesk) -> None:
        await message.answer(await desk.today())

    @router.message(Command("redeem"))
    async def redeem(message: Message, command: CommandObject, redemptions: Redemptions) -> None:
        readings = parse_redeem(command.args or "")
        if readings is None or message.from_user is None:
            await message.reply(
                "Напишите /redeem КОД или /redeem КОД СУММА, "
                "например /redeem START-7KQ4M-9XRTB 45000."
            )
            return
        manager = manager_of(message.from_user)
        outcome = await redemptions.redeem_reading(
            readings, source=manager.key, by=f"{manager.key} {manager.name}"
        )
        await message.reply(managers_text(outcome))

    @router.message(Command("stats"))
    async def stats(message: Message, desk: ManagerDesk) -> None:
        answer = await desk.stats()
        if answer.picture is not None:
            try:
                await message.answer_photo(
                    BufferedInputFile(answer.picture, filename=STATS_PICTURE),
                    caption=answer.caption,
                )
            except TelegramAPIError as exc:  # the figures still go, as the text below
                log.warning("the /stats picture was not sent: %s", exc)
        await message.answer(answer.text)

    @router.message(F.reply_to_message & F.text & F.from_user)
    async def reply(message: Message, desk: ManagerDesk) -> None:
        assert message.reply_to_message is not None
        assert message.from_user is not None
        chat, replied = message.chat.id, message.reply_to_message.message_id
        manager, text = manager_of(message.from_user), message.text or ""
        own = post_reference(chat, message.message_id)
        answer = await desk.reply(manager, post_reference(chat, replied), own, text)
        if answer is None and chat == managers.configured:
            # A post of an earlier version, named by its bare id: made in the configured chat.
            answer = await desk.reply(manager, str(replied), own, text)
        if answer:
            await message.reply(answer)

    return router
