"""Running the Telegram channel: long polling, or a webhook on aiohttp."""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING

from aiogram import Bot, Dispatcher
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, ErrorEvent
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from pydantic import ValidationError

from bot.app import App, crm_exporter
from bot.engine.funnel import Funnel
from bot.engine.transport import ManagersChat, Transport
from bot.handoff import ManagerDesk, remind_unclaimed
from bot.heartbeat import Heartbeat, start_heartbeat
from bot.outside import OutsideEvents
from bot.redemption import Redemptions
from bot.scenario.reload import ScenarioReloader
from bot.settings import Settings
from handlers.signals import wait_for_signal
from handlers.telegram.managers import setup_managers_router
from handlers.telegram.middlewares import InFlight, Throttle
from handlers.telegram.router import setup_fallback_router, setup_router
from handlers.telegram.sender import TelegramSender
from handlers.telegram.session import TolerantSession
from handlers.web.api import MAX_BODY, add_api_routes, api_app

if TYPE_CHECKING:
    from handlers.vk.runner import VkChannel

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SHUTDOWN_GRACE_SECONDS = 25.0
COMMANDS = [
    BotCommand(command="start", description="Начать сначала"),
    BotCommand(command="menu", description="Меню"),
    BotCommand(command="stop", description="Не присылать рассылки"),
    BotCommand(command="promo", description="Мои промокоды"),
    BotCommand(command="invite", description="Пригласить друга"),
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
        setup_managers_router(sender.managers_chat_id), setup_router(), setup_fallback_router()
    )
    dispatcher.errors.register(on_error)

    async def finish_in_flight() -> None:
        await in_flight.drain(SHUTDOWN_GRACE_SECONDS)

    dispatcher.shutdown.register(finish_in_flight)
    return dispatcher


async def register_commands(bot: Bot) -> None:
    try:
        await bot.set_my_commands(COMMANDS)
    except TelegramAPIError as exc:  # a server without the method must not stop the bot
        log.warning("could not register bot commands: %s", exc)


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


def webhook_app(dispatcher: Dispatcher, bot: Bot, secret: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    WebhookHandler(dispatcher, bot, secret_token=secret, handle_in_background=False).register(
        app, path=WEBHOOK_PATH
    )
    setup_application(app, dispatcher, bot=bot)
    return app


async def _serve_http(settings: Settings, app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("events API served on %s:%s", settings.http_host, settings.http_port)
    return runner


async def run_telegram(settings: Settings, app: App) -> None:
    """Telegram, and VK beside it when `VK_GROUP_TOKEN` is set: one delivery worker and one
    managers' desk serve both, so prospects and managers may be in either messenger."""
    funnel = app.funnel
    bot = create_bot(settings)
    sender = TelegramSender(bot, settings.managers_telegram_chat_id)
    reloader = ScenarioReloader(app.scenarios, on_refused=sender.post_to_managers)
    transports: dict[str, Transport] = {sender.channel: sender}
    managers: dict[str, ManagersChat] = {sender.channel: sender}
    vk_sender = None
    if settings.vk_group_token:
        # Imported only when VK is configured: vkbottle takes seconds to import.
        from handlers.vk.runner import VkChannel, create_sender

        vk_sender = create_sender(settings)
    if vk_sender is not None:
        transports[vk_sender.channel] = vk_sender
        if settings.managers_vk_peer_id is not None:
            managers[vk_sender.channel] = vk_sender
    crm = crm_exporter(settings)
    worker = app.delivery_worker(transports, managers, crm)
    desk = ManagerDesk(app.db, app.scenarios, app.clock, managers)
    redemptions = app.redemptions()
    vk = None
    if vk_sender is not None:
        vk = VkChannel(settings, funnel, vk_sender, desk, redemptions, reloader)
        await vk.start()

    async def reminders() -> None:
        await remind_unclaimed(app.db, app.scenarios, app.clock, funnel.routes.managers)

    heartbeat = start_heartbeat(worker, app.db, app.clock, reloader=reloader, reminders=reminders)
    try:
        await _serve(settings, funnel, bot, sender, reloader, heartbeat, desk, redemptions, vk)
    finally:
        await heartbeat.stop()  # a no-op when the dispatcher's shutdown already stopped it
        await worker.pacer.aclose()
        if crm is not None:
            await crm.aclose()


async def _serve(
    settings: Settings,
    funnel: Funnel,
    bot: Bot,
    sender: TelegramSender,
    reloader: ScenarioReloader,
    heartbeat: Heartbeat,
    desk: ManagerDesk,
    redemptions: Redemptions,
    vk: VkChannel | None = None,
) -> None:
    in_flight = InFlight()
    throttle = Throttle(rate=settings.flood_rate, burst=settings.flood_burst)
    dispatcher = create_dispatcher(
        funnel, sender, in_flight, throttle, reloader, desk, redemptions
    )
    api_token = settings.api_token.get_secret_value() if settings.api_token else None
    outside = OutsideEvents(funnel)
    # Before the bot's session closes, the delivery tick in progress finishes and records.
    dispatcher.shutdown.register(heartbeat.stop)
    me = await bot.get_me()
    funnel.referral_links.telegram_bot = me.username
    log.info(
        "Telegram bot @%s started (%s)",
        me.username,
        "webhook" if settings.webhook_base_url else "long polling",
    )
    await register_commands(bot)
    if vk is not None:
        vk.start_polling()
    try:
        await _serve_updates(settings, dispatcher, bot, outside, api_token, redemptions, vk)
    finally:
        if vk is not None:
            await vk.stop()


async def _serve_updates(
    settings: Settings,
    dispatcher: Dispatcher,
    bot: Bot,
    outside: OutsideEvents,
    api_token: str | None,
    redemptions: Redemptions,
    vk: VkChannel | None,
) -> None:
    if not settings.webhook_base_url:
        await bot.delete_webhook()
        # The events API and VK's Callback API need a web server even without a webhook.
        api = None
        if api_token or (vk is not None and vk.callback_mode):
            web_app = api_app(outside, api_token, redemptions)
            if vk is not None and vk.callback_mode:
                vk.add_callback_route(web_app)
            api = await _serve_http(settings, web_app)
        try:
            await dispatcher.start_polling(bot, handle_signals=True, tasks_concurrency_limit=64)
        finally:
            if api is not None:
                await api.cleanup()
        return
    assert settings.webhook_secret is not None  # settings refuse a webhook without one
    secret = settings.webhook_secret.get_secret_value()
    app = webhook_app(dispatcher, bot, secret)
    add_api_routes(app, outside, api_token, redemptions)
    if vk is not None and vk.callback_mode:
        vk.add_callback_route(app)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    url = settings.webhook_base_url.rstrip("/") + WEBHOOK_PATH
    await bot.set_webhook(
        url, secret_token=secret, allowed_updates=dispatcher.resolve_used_update_types()
    )
    log.info(
        "webhook served on %s:%s%s for %s",
        settings.http_host,
        settings.http_port,
        WEBHOOK_PATH,
        url,
    )
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()  # lets requests in flight finish, then closes the bot session
