"""aiogram routers: Telegram updates in, the engine's replies out. Only private chats reach
the prospect flow; groups (the managers' chat) never do."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, Update

from bot.engine.funnel import Funnel
from bot.logs import one_event
from bot.messages import COMMANDS, Incoming, Kind, Outgoing
from bot.transport import Blocked
from handlers.telegram.callbacks import Press
from handlers.telegram.sender import TelegramSender

log = logging.getLogger(__name__)
CHANNEL = "telegram"


def incoming(
    update: Update, message: Message | None, user_id: int, kind: Kind, **fields: object
) -> Incoming:
    user = (message.from_user if message else None) or (
        update.callback_query.from_user if update.callback_query else None
    )
    return Incoming(
        channel=CHANNEL,
        external_id=str(user_id),
        kind=kind,
        first_name=user.first_name if user else None,
        username=user.username if user else None,
        event_key=f"{CHANNEL}:{update.update_id}",
        **fields,  # type: ignore[arg-type]
    )


async def deliver(
    funnel: Funnel, sender: TelegramSender, chat_id: int, event: Incoming
) -> list[Outgoing]:
    """Hand the event to the engine (which commits), then send its replies."""
    with one_event():  # the lines logged until the replies are sent carry the lead's id
        reply = await funnel.handle_until_stored(event)
        try:
            await sender.send_now(chat_id, reply.messages)
        except Blocked:
            await funnel.mark_blocked(CHANNEL, event.external_id)
    return reply.messages


def setup_router() -> Router:
    router = Router(name=__name__)
    router.message.filter(F.chat.type == "private")
    router.callback_query.filter(F.message.chat.type == "private")

    @router.message(CommandStart())
    async def start(
        message: Message,
        command: CommandObject,
        event_update: Update,
        funnel: Funnel,
        sender: TelegramSender,
    ) -> None:
        await deliver(
            funnel,
            sender,
            message.chat.id,
            incoming(event_update, message, message.chat.id, Kind.START, payload=command.args),
        )

    for name, kind in COMMANDS.items():

        @router.message(Command(name))
        async def command(
            message: Message,
            event_update: Update,
            funnel: Funnel,
            sender: TelegramSender,
            kind: Kind = kind,
        ) -> None:
            await deliver(
                funnel,
                sender,
                message.chat.id,
                incoming(event_update, message, message.chat.id, kind),
            )

    @router.message(F.contact)
    async def contact(
        message: Message, event_update: Update, funnel: Funnel, sender: TelegramSender
    ) -> None:
        assert message.contact is not None
        own = message.from_user is not None and message.contact.user_id == message.from_user.id
        await deliver(
            funnel,
            sender,
            message.chat.id,
            incoming(
                event_update,
                message,
                message.chat.id,
                Kind.CONTACT,
                phone=message.contact.phone_number,
                contact_is_own=own,
            ),
        )

    @router.message(F.text)
    async def text(
        message: Message, event_update: Update, funnel: Funnel, sender: TelegramSender
    ) -> None:
        await deliver(
            funnel,
            sender,
            message.chat.id,
            incoming(event_update, message, message.chat.id, Kind.TEXT, text=message.text),
        )

    @router.message()
    async def anything_else(
        message: Message, event_update: Update, funnel: Funnel, sender: TelegramSender
    ) -> None:
        # Stickers, photos, voice, documents... where we expect text or a button.
        await deliver(
            funnel,
            sender,
            message.chat.id,
            incoming(event_update, message, message.chat.id, Kind.UNSUPPORTED),
        )

    @router.callback_query(Press.filter())
    async def press(
        query: CallbackQuery,
        callback_data: Press,
        event_update: Update,
        funnel: Funnel,
        sender: TelegramSender,
    ) -> None:
        await query.answer()  # first, so the button stops spinning whatever happens next
        chat_id = query.message.chat.id if query.message else query.from_user.id
        await deliver(
            funnel,
            sender,
            chat_id,
            incoming(
                event_update, None, query.from_user.id, Kind.BUTTON, payload=callback_data.action
            ),
        )

    @router.callback_query()
    async def forged(
        query: CallbackQuery, event_update: Update, funnel: Funnel, sender: TelegramSender
    ) -> None:
        # Data we never made (an old format, a forged client): answered, then the menu.
        log.info("unknown callback data %r from %s", (query.data or "")[:64], query.from_user.id)
        await query.answer()
        chat_id = query.message.chat.id if query.message else query.from_user.id
        await deliver(
            funnel,
            sender,
            chat_id,
            incoming(event_update, None, query.from_user.id, Kind.BUTTON, payload=""),
        )

    return router


def setup_fallback_router() -> Router:
    """Last in line: a callback nobody handled (say, from a group) still gets its answer, so no
    button spins for ever."""
    router = Router(name=f"{__name__}.fallback")

    @router.callback_query()
    async def unanswered(query: CallbackQuery) -> None:
        await query.answer()

    return router
