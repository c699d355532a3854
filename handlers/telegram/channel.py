"""The Telegram channel as the composition root runs it: the dispatcher with the project's
routers and middlewares, fed by long polling or by a webhook on the bot's web server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial

from aiogram import Bot, Dispatcher
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import AiogramError, TelegramAPIError, TelegramUnauthorizedError
from aiogram.types import BotCommand, ErrorEvent
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import ClientError, web
from pydantic import ValidationError

from bot.clock import Clock
from bot.engine.funnel import Funnel, StorageUnavailable
from bot.flood import FloodGate
from bot.handoff import ManagerDesk
from bot.pacing import Pacer
from bot.redemption import Redemptions
from bot.scenario.reload import ScenarioReloader
from bot.settings import Settings
from bot.transport import ChannelUnavailable
from handlers.telegram.managers import setup_managers_router
from handlers.telegram.managers_chat import ManagersChatId
from handlers.telegram.middlewares import InFlight, Throttle
from handlers.telegram.router import setup_fallback_router, setup_router
from handlers.telegram.sender import TelegramSender
from handlers.telegram.session import TolerantSession
from storage.database import Database
from storage.session_lock import SessionLock, poll_while_locked

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
WEBHOOK_PATIENCE = 5.0  # seconds an update waits for the database before a 503
POLLING_PATIENCE = 600.0
SHUTDOWN_GRACE_SECONDS = 25.0
POLL_LOCK_RETRY = 2.0  # seconds between tries to take over polling from another process
POLL_LOCK_CHECK = 3.0  # seconds between checks that this process still holds the poll lock
COMMANDS = [
    BotCommand(command="start", description="Начать сначала"),
    BotCommand(command="menu", description="Меню"),
    BotCommand(command="stop", description="Не присылать рассылки"),
    BotCommand(command="promo", description="Мои промокоды"),
    BotCommand(command="invite", description="Пригласить друга"),
    BotCommand(command="booking", description="Моя запись"),
    BotCommand(command="mydata", description="Какие данные о вас хранятся"),
    BotCommand(command="delete", description="Удалить мои данные"),
]


def create_bot(settings: Settings) -> Bot:
    assert settings.telegram_bot_token is not None
    session = TolerantSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(settings.telegram_bot_token.get_secret_value(), session=session)


async def on_error(event: ErrorEvent, funnel: Funnel, sender: TelegramSender) -> bool:
    """Log with the update id; the prospect gets a short apology, never silence."""
    update = event.update
    if isinstance(event.exception, StorageUnavailable):
        raise event.exception  # the webhook answers 503 and Telegram sends it again
    log.error("update %s failed", update.update_id, exc_info=event.exception)
    chat = (
        update.message.chat
        if update.message
        else (
            update.callback_query.message.chat
            if update.callback_query and update.callback_query.message
            else None
        )
    )
    if chat is not None and chat.type == "private":
        with suppress(TelegramAPIError):
            await sender.bot.send_message(
                chat.id, funnel.scenarios.current.scenario.messages.error
            )
    return True


def create_dispatcher(
    funnel: Funnel,
    sender: TelegramSender,
    in_flight: InFlight,
    throttle: Throttle | None = None,
    reloader: ScenarioReloader | None = None,
    desk: ManagerDesk | None = None,
    redemptions: Redemptions | None = None,
) -> Dispatcher:
    """The dispatcher with every dependency in its workflow data (handlers take what they name)."""
    desk = desk or ManagerDesk(funnel.db, funnel.scenarios, funnel.clock, {sender.channel: sender})
    dispatcher = Dispatcher(
        funnel=funnel,
        sender=sender,
        reloader=reloader,
        desk=desk,
        redemptions=redemptions or Redemptions(funnel),
    )
    dispatcher.update.outer_middleware(in_flight)
    throttle = throttle or Throttle()
    dispatcher.message.outer_middleware(throttle)
    dispatcher.callback_query.outer_middleware(throttle)
    dispatcher.include_routers(
        setup_managers_router(sender.managers), setup_router(), setup_fallback_router()
    )
    dispatcher.errors.register(on_error)

    async def finish_in_flight() -> None:
        await in_flight.drain(SHUTDOWN_GRACE_SECONDS)

    dispatcher.shutdown.register(finish_in_flight)
    return dispatcher


async def register_commands(bot: Bot) -> None:
    try:
        await bot.set_my_commands(COMMANDS)
    except AiogramError as exc:  # a server without the method (or garbled) must not stop us
        log.warning("could not register bot commands: %s", str(exc).splitlines()[0])


class WebhookHandler(SimpleRequestHandler):
    """aiogram's handler (secret checked in constant time, 401 without it, answered after the
    update is handled and committed), plus: a malformed update is logged and acknowledged,
    so Telegram does not redeliver it for ever."""

    async def _handle_request(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            return await super()._handle_request(bot, request)
        except (ValidationError, ValueError) as exc:
            log.warning("malformed webhook update skipped: %s", str(exc).splitlines()[0])
            return web.json_response({})
        except StorageUnavailable:
            return web.Response(status=503, text="storage unavailable, send again")


def add_webhook_route(app: web.Application, dispatcher: Dispatcher, bot: Bot, secret: str) -> None:
    """The webhook on the bot's web server; stopping the server lets the updates in flight
    finish (the dispatcher's shutdown) and closes the bot's session."""
    WebhookHandler(dispatcher, bot, secret_token=secret, handle_in_background=False).register(
        app, path=WEBHOOK_PATH
    )
    setup_application(app, dispatcher, bot=bot)


def create_sender(
    settings: Settings,
    db: Database | None = None,
    clock: Clock | None = None,
    pacer: Pacer | None = None,
) -> TelegramSender:
    """The sender; with `db`, a move of the managers' chat to a supergroup is kept there;
    with `pacer`, replies keep the limits shared with the delivery worker."""
    managers = ManagersChatId(settings.managers_telegram_chat_id, db, clock)
    return TelegramSender(create_bot(settings), managers, pacer=pacer)


class TelegramChannel:
    """Long polling, or a webhook when `WEBHOOK_BASE_URL` is set."""

    def __init__(
        self,
        settings: Settings,
        funnel: Funnel,
        sender: TelegramSender,
        desk: ManagerDesk,
        redemptions: Redemptions,
        reloader: ScenarioReloader | None,
    ) -> None:
        self.settings = settings
        self.funnel = funnel
        self.sender = sender
        self.bot = sender.bot
        # Telegram sends a webhook update again after a 5xx; a polled one is never sent again.
        funnel.patience["telegram"] = WEBHOOK_PATIENCE if self.webhook else POLLING_PATIENCE
        throttle = Throttle(FloodGate(rate=settings.flood_rate, burst=settings.flood_burst))
        self.dispatcher = create_dispatcher(
            funnel, sender, InFlight(), throttle, reloader, desk, redemptions
        )
        self._poller: asyncio.Task[None] | None = None

    @property
    def webhook(self) -> bool:
        return bool(self.settings.webhook_base_url)

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Telegram's refusals and a server that is not the Bot API, as one line to act on."""
        try:
            yield
        except TelegramUnauthorizedError:
            raise ChannelUnavailable(
                "Telegram refused TELEGRAM_BOT_TOKEN: revoked or mistyped (see @BotFather)"
            ) from None
        except (AiogramError, ClientError, OSError, TimeoutError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise ChannelUnavailable(
                f"TELEGRAM_API_URL {self.settings.telegram_api_url} does not answer as "
                f"Telegram's Bot API: {reason}"
            ) from None

    async def start(self) -> None:
        """Learn the bot's username (for referral links), where the managers' chat is now
        (a group upgraded to a supergroup before this start) and offer the commands."""
        with self._reaching():
            me = await self.bot.get_me()
        await self.sender.managers.restore()
        self.funnel.referral_links.telegram_bot = me.username
        log.info(
            "Telegram bot @%s started (%s)",
            me.username,
            "webhook" if self.webhook else "long polling",
        )
        await register_commands(self.bot)

    def add_routes(self, app: web.Application) -> bool:
        if not self.webhook:
            return False
        add_webhook_route(app, self.dispatcher, self.bot, self._secret())
        return True

    def _secret(self) -> str:
        assert self.settings.webhook_secret is not None  # settings refuse a webhook without one
        return self.settings.webhook_secret.get_secret_value()

    async def receive(self) -> asyncio.Task[None] | None:
        """Point Telegram at the webhook (the web server is up by now), or poll in the
        background; the polling task is returned, as its end is an error."""
        if self.webhook:
            url = (self.settings.webhook_base_url or "").rstrip("/") + WEBHOOK_PATH
            with self._reaching():
                await self.bot.set_webhook(
                    url,
                    secret_token=self._secret(),
                    allowed_updates=self.dispatcher.resolve_used_update_types(),
                )
            log.info("webhook %s set", url)
            return None
        with self._reaching():
            await self.bot.delete_webhook()
        if self.funnel.db.dialect == "postgresql":
            # Several processes may share PostgreSQL, and Telegram serves one poller per bot.
            self._poller = asyncio.create_task(self._poll_while_locked())
        else:  # SQLite: one process per file anyway (bot/roles.py, lock_database)
            self._poller = asyncio.create_task(self._poll())
        return self._poller

    async def _poll(self, *, close_bot_session: bool = True) -> None:
        await self.dispatcher.start_polling(
            self.bot,
            handle_signals=False,
            tasks_concurrency_limit=64,
            close_bot_session=close_bot_session,
        )

    async def _poll_while_locked(self) -> None:
        """Poll only while this process holds the bot's poll lock (another process polls
        meanwhile, or takes over within seconds of this one's death)."""
        # Per bot, not one key for all: advisory locks span the whole database, and two bots
        # (or test schemas) sharing it must not wait for each other.
        lock = SessionLock(self.funnel.db.engine, f"leadbot:telegram-polling:{self.bot.id}")
        await poll_while_locked(
            lock,
            # The session stays open: the sender shares it, and polling may resume later.
            partial(self._poll, close_bot_session=False),
            self._stop_polling,
            messenger="Telegram",
            retry=POLL_LOCK_RETRY,
            check=POLL_LOCK_CHECK,
        )

    async def _stop_polling(self, polling: asyncio.Task[None]) -> None:
        """The updates in flight finish (the dispatcher's shutdown), then polling ends."""
        if polling.done():
            return
        try:
            await self.dispatcher.stop_polling()
        except RuntimeError:  # polling had not begun yet: nothing in flight
            polling.cancel()
        with suppress(asyncio.CancelledError):
            await polling

    async def stop(self) -> None:
        """Stop polling: the updates in flight finish, then the bot's session closes. (With a
        webhook, stopping the web server does both.)"""
        if self._poller is not None and self.funnel.db.dialect == "postgresql":
            # Waiting for the lock or polling: the task stops polling and frees the lock.
            self._poller.cancel()
            with suppress(asyncio.CancelledError):
                await self._poller
        elif self._poller is not None:
            if not self._poller.done():
                with suppress(RuntimeError):  # polling had not begun yet
                    await self.dispatcher.stop_polling()
            with suppress(asyncio.CancelledError):
                await self._poller
        await self.bot.session.close()  # closed already, unless the start failed
