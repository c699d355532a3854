"""The VK channel as the composition root runs it: Bots Long Poll for development, the
Callback API for production (on the bot's web server, beside the Telegram webhook and the
events API)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import suppress

from aiohttp import ClientError, web
from vkbottle import API, Bot, VKAPIError

from bot.engine.funnel import Funnel
from bot.flood import FloodGate
from bot.handoff import ManagerDesk
from bot.messages import Incoming
from bot.pacing import Pacer
from bot.redemption import Redemptions
from bot.scenario.reload import ScenarioReloader
from bot.settings import Settings
from bot.transport import ChannelUnavailable
from handlers.vk.rate import PacedToken
from handlers.vk.router import UNSTORED, VkHandlers
from handlers.vk.sender import VkSender
from storage.session_lock import SessionLock, poll_while_locked

log = logging.getLogger(__name__)

CALLBACK_PATH = "/vk/callback"
CALLBACK_PATIENCE = 5.0  # seconds an event waits for the database before VK is told "again"
POLLING_PATIENCE = 600.0


def create_api(settings: Settings) -> API:
    """vkbottle's API with the community token, pointed at `VK_API_URL`, paced below VK's
    limit of calls a second."""
    assert settings.vk_group_token is not None
    api = API(token=PacedToken(settings.vk_group_token.get_secret_value()))
    api.API_URL = settings.vk_api_url.rstrip("/") + "/"
    return api


def create_sender(settings: Settings, pacer: Pacer | None = None) -> VkSender:
    return VkSender(
        create_api(settings),
        group_id=settings.vk_group_id,
        managers_peer_id=settings.managers_vk_peer_id,
        pacer=pacer,
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


class VkChannel:
    """The handlers behind vkbottle's router, fed by long polling or by the Callback API."""

    def __init__(
        self,
        settings: Settings,
        funnel: Funnel,
        sender: VkSender,
        desk: ManagerDesk,
        redemptions: Redemptions,
        reloader: ScenarioReloader | None,
    ) -> None:
        self.settings = settings
        self.funnel = funnel
        self.sender = sender
        flood = FloodGate(rate=settings.flood_rate, burst=settings.flood_burst)
        self.handlers = VkHandlers(funnel, sender, desk, redemptions, reloader, flood)
        # VK sends a Callback API event again when not answered "ok"; long polling never does.
        funnel.patience["vk"] = CALLBACK_PATIENCE if self.callback_mode else POLLING_PATIENCE
        self.bot = Bot(api=sender.api, labeler=self.handlers.labeler())
        self._poller: asyncio.Task[None] | None = None

    @property
    def callback_mode(self) -> bool:
        return self.settings.vk_callback_secret is not None

    async def start(self) -> None:
        """Learn the community: its id (for long polling and the Callback API's check) and
        its screen name (for referral links)."""
        try:
            groups = (await self.sender.api.request("groups.getById", {}))["response"]
            group = (groups.get("groups") if isinstance(groups, dict) else groups)[0]
            group_id = int(group["id"])
        except VKAPIError as exc:
            raise ChannelUnavailable(
                f"VK refused VK_GROUP_TOKEN ({exc.code}): revoked, mistyped or without "
                "community rights"
            ) from None
        except (ClientError, OSError, TimeoutError, ValueError, LookupError, TypeError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise ChannelUnavailable(
                f"VK_API_URL {self.settings.vk_api_url} does not answer as VK's API: {reason}"
            ) from None
        self.sender.group_id = self.sender.group_id or group_id
        self.funnel.referral_links.vk_group = group.get("screen_name") or f"club{group_id}"
        log.info(
            "VK community %s started (%s)",
            self.funnel.referral_links.vk_group,
            "Callback API" if self.callback_mode else "long polling",
        )

    async def receive(self) -> asyncio.Task[None] | None:
        """Bots Long Poll in the background, unless the Callback API brings the events; the
        polling task is returned, as its end is an error."""
        if self.callback_mode:
            return None
        self.bot.polling.group_id = self.sender.group_id  # type: ignore[attr-defined]
        if self.funnel.db.dialect == "postgresql":
            # Several processes may share PostgreSQL: one of them polls the community.
            lock = SessionLock(self.funnel.db.engine, f"leadbot:vk-polling:{self.sender.group_id}")
            polling = poll_while_locked(lock, self.bot.run_polling, _cancel, messenger="VK")
            self._poller = asyncio.create_task(polling)
        else:  # SQLite: one process per file anyway (bot/roles.py, lock_database)
            self._poller = asyncio.create_task(self.bot.run_polling())
        return self._poller

    async def stop(self) -> None:
        if self._poller is not None:
            await _cancel(self._poller)
        await self.sender.api.http_client.close()

    def add_routes(self, app: web.Application) -> bool:
        if not self.callback_mode:
            return False
        app.router.add_post(CALLBACK_PATH, self.callback)
        return True

    async def callback(self, request: web.Request) -> web.Response:
        """VK's Callback API: the confirmation code for VK's check, then events, each
        answered `ok` only once handled and committed (VK sends it again otherwise). The
        update's `event_id` is de-duplicated in the database by the engine."""
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError, web.HTTPRequestEntityTooLarge):
            return web.Response(status=400, text="bad request")
        if not isinstance(body, dict):
            return web.Response(status=400, text="bad request")
        group_id = self.sender.group_id
        if group_id is not None and body.get("group_id") != group_id:
            return web.Response(status=403, text="wrong community")
        if body.get("type") == "confirmation":
            return web.Response(text=self.settings.vk_confirmation_code or "")
        expected = self.settings.vk_callback_secret
        given = body.get("secret")
        if (
            expected is None
            or not isinstance(given, str)
            or not hmac.compare_digest(given.encode(), expected.get_secret_value().encode())
        ):
            log.warning("VK callback without the right secret refused")
            return web.Response(status=403, text="forbidden")
        unstored: list[Incoming] = []
        token = UNSTORED.set(unstored)
        try:
            await self.bot.process_event(body)
        finally:
            UNSTORED.reset(token)
        if unstored:  # not "ok": VK sends the event again
            return web.Response(status=503, text="storage unavailable, send again")
        return web.Response(text="ok")
