"""The composition root: builds the database, the scenario and the engine once per process,
and runs a bot: the messengers configured, one delivery worker and one managers' desk for
them all, and one web server (webhooks, the VK Callback API, the events API, tracked links).
The one module that imports a channel, and only the channels configured: vkbottle alone
takes seconds to import."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Protocol

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.exceptions import RedisError

from bot.clock import Clock, SystemClock
from bot.crm import BITRIX24, WEBHOOK, CrmExporter
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.handoff import ManagerDesk, remind_unclaimed
from bot.heartbeat import Heartbeat, start_heartbeat
from bot.metrics import Metrics
from bot.outside import OutsideEvents
from bot.pacing import DEFAULT_LIMITS, ChannelLimits, Limit, Pacer, pacer_for
from bot.redemption import Redemptions
from bot.referrals import ReferralLinks
from bot.roles import Role, hold_pacing, start_scenario_watch
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scenario.reload import ScenarioReloader, log_warnings
from bot.scoring import Routes
from bot.settings import Settings
from bot.transport import ChannelUnavailable, ManagersChat, Transport
from handlers.web.api import Caller, add_api_routes
from handlers.web.health import Probes, add_health_routes
from handlers.web.server import AccessLog
from handlers.web.server import web_app as new_web_app
from storage import migrate
from storage.database import Database
from storage.session_lock import SessionLock

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 25.0  # for the web requests in flight
REDIS_PATIENCE = 10.0  # seconds Redis may take to answer at start


class StartupFailed(Exception):
    """The bot could not start; the message is one line saying what to fix."""


class SchemaOutdated(Exception):
    """The database is not at the newest migration and will not be migrated implicitly."""

    def __init__(self, current: str | None, needed: str, *, newer: bool = False) -> None:
        if newer:  # a newer version migrated it: this older one must not run on it
            advice = "this leadbot is older than the database: run the newer version"
        else:
            advice = "run `leadbot db upgrade` first"
        super().__init__(
            f"database schema is at {current or 'nothing'}, the code needs {needed}: {advice}"
        )
        # For a message in another language.
        self.current, self.needed, self.newer = current, needed, newer


@dataclass
class App:
    settings: Settings
    db: Database
    scenarios: ActiveScenario
    funnel: Funnel
    clock: Clock
    # The process's counters, shared by the engine, the worker and the redemptions.
    metrics: Metrics = field(default_factory=Metrics)

    async def close(self) -> None:
        await self.db.dispose()

    def redemptions(self) -> Redemptions:
        return Redemptions(
            self.funnel,
            max_failures=self.settings.redeem_max_failures,
            lockout=timedelta(minutes=self.settings.redeem_lockout_minutes),
        )

    def pacer(self) -> Pacer:
        """The limits this process keeps: in Redis, shared with every other process of the
        same bot, when REDIS_URL is set."""
        return pacer_for(
            self.settings.redis_url, channel_limits(self.settings), pacing_accounts(self.settings)
        )

    def delivery_worker(
        self,
        transports: Mapping[str, Transport],
        managers: Mapping[str, ManagersChat] | None = None,
        crm: CrmExporter | None = None,
        *,
        only_own_channels: bool = False,
        pacer: Pacer | None = None,
    ) -> DeliveryWorker:
        """The worker that sends what falls due, through these channels (only their rows
        with `only_own_channels`: the terminal chat on a database the bot may share), paced
        by `pacer` (by a pacer of its own without one)."""
        return DeliveryWorker(
            self.db,
            self.scenarios,
            self.clock,
            transports,
            pacer or self.pacer(),
            self.funnel,
            managers=managers,
            crm=crm,
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            only_own_channels=only_own_channels,
            metrics=self.metrics,
        )


def routes_for(settings: Settings) -> Routes:
    """Which managers' chats and CRMs a handoff goes to, from what is configured."""
    managers = []
    if settings.telegram_bot_token and settings.managers_telegram_chat_id is not None:
        managers.append("telegram")
    if settings.vk_group_token and settings.managers_vk_peer_id is not None:
        managers.append("vk")
    crm = []
    if settings.crm_bitrix24_webhook_url:
        crm.append(BITRIX24)
    if settings.crm_webhook_url:
        crm.append(WEBHOOK)
    return Routes(managers=tuple(managers), crm=tuple(crm))


def crm_exporter(settings: Settings) -> CrmExporter | None:
    bitrix24 = settings.crm_bitrix24_webhook_url
    secret = settings.crm_webhook_secret
    if bitrix24 is None and settings.crm_webhook_url is None:
        return None
    return CrmExporter(
        bitrix24_url=bitrix24.get_secret_value() if bitrix24 else None,
        webhook_url=settings.crm_webhook_url,
        webhook_secret=secret.get_secret_value() if secret else None,
    )


def channel_limits(settings: Settings) -> dict[str, ChannelLimits]:
    """The platforms' limits as configured (defaults: their published numbers)."""
    total = settings.telegram_messages_per_second
    per_chat = settings.telegram_chat_messages_per_second
    per_group = settings.telegram_group_messages_per_minute
    vk = settings.vk_requests_per_second
    return {
        **DEFAULT_LIMITS,
        "telegram": ChannelLimits(
            overall=Limit(total, max(1, round(total))),
            per_chat=Limit(per_chat, max(1, round(per_chat))),
            per_group=Limit(per_group / 60, max(1, round(per_group))),
        ),
        "vk": replace(DEFAULT_LIMITS["vk"], overall=Limit(vk, max(1, round(vk)))),
    }


def pacing_accounts(settings: Settings) -> dict[str, str]:
    """Whose limits the pacer keeps per channel: the Telegram bot (its token's id part, not a
    secret) and the VK community."""
    accounts = {}
    if settings.telegram_bot_token:
        accounts["telegram"] = settings.telegram_bot_token.get_secret_value().split(":", 1)[0]
    if settings.vk_group_id is not None:
        accounts["vk"] = str(settings.vk_group_id)
    return accounts


async def prepare_database(db: Database) -> None:
    """Migrate SQLite by itself; PostgreSQL is shared, so it waits for `leadbot db upgrade`."""
    if db.dialect == "sqlite":
        await migrate.upgrade(db.engine)
        return
    current = await migrate.current_revision(db.engine)
    if current != migrate.head_revision():
        known = current is None or current in migrate.revisions()
        raise SchemaOutdated(current, migrate.head_revision(), newer=not known)


async def build_app(
    settings: Settings,
    *,
    scenario_dir: Path | None = None,
    database_url: str | None = None,
    clock: Clock | None = None,
    routes: Routes | None = None,
) -> App:
    """Load the scenario (raising `ScenarioError`), open and prepare the database. `routes`
    says where handoffs go when not where the settings say (the console's own chat)."""
    loaded = load_scenario(scenario_dir or settings.scenario_dir)
    log_warnings(loaded)
    db = Database(database_url or settings.database_url)
    try:
        await prepare_database(db)
    except BaseException:
        await db.dispose()
        raise
    clock = clock or SystemClock()
    scenarios = ActiveScenario(loaded)
    metrics = Metrics()
    funnel = Funnel(
        db,
        scenarios,
        clock,
        phone_region=settings.default_phone_region,
        max_input_length=settings.max_input_length,
        routes=routes if routes is not None else routes_for(settings),
        link_base=settings.webhook_base_url,
        # The Telegram bot's username is learnt from getMe when the bot starts.
        referral_links=ReferralLinks(
            vk_group=f"club{settings.vk_group_id}" if settings.vk_group_id else None
        ),
        metrics=metrics,
    )
    log.info(
        "scenario %s loaded (%d offers), database %s",
        loaded.folder,
        len(loaded.scenario.offers),
        db.engine.url.render_as_string(hide_password=True),
    )
    return App(
        settings=settings,
        db=db,
        scenarios=scenarios,
        funnel=funnel,
        clock=clock,
        metrics=metrics,
    )


class Channel(Protocol):
    """A messenger as `serve` runs it (handlers/telegram/channel.py, handlers/vk/channel.py)."""

    async def start(self) -> None:
        """Learn who the bot is there (for referral links)."""

    def add_routes(self, app: web.Application) -> bool:
        """Put its webhook on the web server, if it uses one."""
        ...

    async def receive(self) -> asyncio.Task[None] | None:
        """Begin taking updates: set the webhook, or poll in a task (returned)."""
        ...

    async def stop(self) -> None:
        """Stop taking updates; the ones in flight finish."""


async def serve(settings: Settings, app: App, role: Role = Role.ALL) -> None:
    """Run the configured messengers until SIGINT or SIGTERM: as `role` says, taking their
    updates (the web server), sending what falls due (the delivery worker), or both. A worker
    still makes the channels: it sends through them, it only never takes updates."""
    # Caught from the start: a SIGTERM while the process starts stops it as cleanly.
    stop = stop_on_signals()
    senders: dict[str, Transport] = {}
    managers: dict[str, ManagersChat] = {}
    # Each channel is made once every sender is known: the desk and the worker serve all.
    makers: list[Callable[[ManagerDesk, Redemptions, ScenarioReloader], Channel]] = []
    # One pacer for the replies the channels send at once and for the worker's sends.
    pacer = app.pacer()
    if settings.telegram_bot_token is not None:
        from handlers.telegram import channel as telegram

        telegram_sender = telegram.create_sender(settings, app.db, app.clock, pacer)
        senders["telegram"] = managers["telegram"] = telegram_sender
        makers.append(partial(telegram.TelegramChannel, settings, app.funnel, telegram_sender))
    if settings.vk_group_token is not None:
        from handlers.vk import channel as vk

        vk_sender = vk.create_sender(settings, pacer)
        senders["vk"] = vk_sender
        if settings.managers_vk_peer_id is not None:
            managers["vk"] = vk_sender
        makers.append(partial(vk.VkChannel, settings, app.funnel, vk_sender))
    crm = crm_exporter(settings)
    # What a web process queues, a worker process sends.
    worker = app.delivery_worker(senders, managers, crm, pacer=pacer) if role.delivers else None
    desk = ManagerDesk(app.db, app.scenarios, app.clock, managers)
    # A scenario edit that is refused is said in the managers' chat (the first configured).
    on_refused = next(iter(managers.values())).post_to_managers if managers else None
    reloader = ScenarioReloader(app.scenarios, on_refused=on_refused)
    redemptions = app.redemptions()
    channels = [make(desk, redemptions, reloader) for make in makers]

    async def reminders() -> None:
        await remind_unclaimed(app.db, app.scenarios, app.clock, app.funnel.routes.managers)

    heartbeat: Heartbeat | None = None
    watch: AsyncIOScheduler | None = None  # a web process's scenario watcher
    http: web.AppRunner | None = None
    pacing: list[SessionLock] = []
    try:
        try:
            await _reach_redis(pacer)
            pacing = await hold_pacing(
                app.db, pacing_accounts(settings), alone=settings.redis_url is None
            )
            for channel in channels:
                await channel.start()  # a worker too: referral links need the bot's username
            if worker is not None:
                heartbeat = start_heartbeat(
                    worker, app.db, app.clock, reloader=reloader, reminders=reminders
                )
            else:
                watch = start_scenario_watch(reloader)
            http = await _serve_http(settings, app, channels, redemptions, role)
            receiving = channels if role.receives else []
            polling = [task for channel in receiving if (task := await channel.receive())]
        except ChannelUnavailable as exc:
            raise StartupFailed(str(exc)) from None
        except OSError as exc:  # the web server's address
            raise StartupFailed(
                f"cannot listen on HTTP_HOST:HTTP_PORT {settings.http_host}:"
                f"{settings.http_port}: {exc.strerror or exc}"
            ) from None
        await wait_for_signal(polling, stop)
    finally:
        # The delivery in progress finishes and is recorded while the channels' sessions
        # are open; then the updates in flight finish.
        if heartbeat is not None:
            await heartbeat.stop()
        if watch is not None:
            watch.shutdown(wait=False)
        if http is not None:
            await http.cleanup()
        for channel in channels:
            await channel.stop()
        await pacer.aclose()
        for lock in pacing:
            await lock.release()
        forget_signals()
        if crm is not None:
            await crm.aclose()


async def _reach_redis(pacer: Pacer) -> None:
    """A process that shares its limits through Redis starts only when Redis answers."""
    try:
        await asyncio.wait_for(pacer.ping(), REDIS_PATIENCE)
    except (OSError, TimeoutError, RedisError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise StartupFailed(f"REDIS_URL does not answer: {reason}") from None


async def _serve_http(
    settings: Settings,
    app: App,
    channels: list[Channel],
    redemptions: Redemptions,
    role: Role = Role.ALL,
) -> web.AppRunner | None:
    """The web server, when something needs it: a webhook, the events API (a token is set),
    promo redemption (a till's token is set) or tracked links (they point at
    `WEBHOOK_BASE_URL`), or `HTTP_ALWAYS` asks for the probes and metrics it always serves.
    Not by default otherwise: bots side by side (tests, a terminal chat) would fight for the
    port. A `web` process always serves; a `worker` only its probes, with `HTTP_ALWAYS`."""
    web_app = new_web_app()
    probes = Probes(app.db, app.metrics, app.clock.now, redis_url=settings.redis_url)
    add_health_routes(web_app, probes)
    if not role.receives:
        return await _listen(settings, web_app) if settings.http_always else None
    api_token = settings.api_token.get_secret_value() if settings.api_token else None
    tills = {token: Caller(*till) for token, till in settings.redeem_callers().items()}
    add_api_routes(web_app, OutsideEvents(app.funnel), api_token, redemptions, tills)
    webhooks = [channel.add_routes(web_app) for channel in channels]
    needed = any(webhooks) or api_token or tills or settings.webhook_base_url
    if not (needed or settings.http_always or role is Role.WEB):
        return None
    return await _listen(settings, web_app)


async def _listen(settings: Settings, web_app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(
        web_app, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, access_log_class=AccessLog
    )
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    log.info("web server on %s:%s", settings.http_host, settings.http_port)
    return runner


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (instead of their default of ending the process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def forget_signals() -> None:
    """SIGINT and SIGTERM back to their defaults, once stopped."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)


async def wait_for_signal(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Until `stop` is set (SIGINT or SIGTERM), or until one of `tasks` ends, which is an
    error: raised."""
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    for task in done - {waiter}:
        task.result()
        raise RuntimeError("a messenger stopped taking updates")
