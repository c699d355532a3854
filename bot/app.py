"""The composition root: builds the database, the scenario and the engine once per process."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from bot.clock import Clock, SystemClock
from bot.crm import BITRIX24, WEBHOOK, CrmExporter
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.engine.transport import ManagersChat, Transport
from bot.pacing import DEFAULT_LIMITS, ChannelLimits, Limit, pacer_for
from bot.redemption import Redemptions
from bot.referrals import ReferralLinks
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scoring import Routes
from bot.settings import Settings
from storage import migrate
from storage.database import Database

log = logging.getLogger(__name__)


class SchemaOutdated(Exception):
    """The database is not at the newest migration and will not be migrated implicitly."""


@dataclass
class App:
    settings: Settings
    db: Database
    scenarios: ActiveScenario
    funnel: Funnel
    clock: Clock

    async def close(self) -> None:
        await self.db.dispose()

    def redemptions(self) -> Redemptions:
        return Redemptions(
            self.funnel,
            max_failures=self.settings.redeem_max_failures,
            lockout=timedelta(minutes=self.settings.redeem_lockout_minutes),
        )

    def delivery_worker(
        self,
        transports: Mapping[str, Transport],
        managers: Mapping[str, ManagersChat] | None = None,
        crm: CrmExporter | None = None,
    ) -> DeliveryWorker:
        """The worker that sends what falls due, through these channels."""
        return DeliveryWorker(
            self.db,
            self.scenarios,
            self.clock,
            transports,
            pacer_for(self.settings.redis_url, channel_limits(self.settings)),
            self.funnel,
            managers=managers,
            crm=crm,
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
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


async def prepare_database(db: Database) -> None:
    """Migrate SQLite by itself; PostgreSQL is shared, so it waits for `leadbot db upgrade`."""
    if db.dialect == "sqlite":
        await migrate.upgrade(db.engine)
        return
    current = await migrate.current_revision(db.engine)
    if current != migrate.head_revision():
        raise SchemaOutdated(
            f"database schema is at {current or 'nothing'}, the code needs "
            f"{migrate.head_revision()}: run `leadbot db upgrade` first"
        )


async def build_app(
    settings: Settings,
    *,
    scenario_dir: Path | None = None,
    database_url: str | None = None,
    clock: Clock | None = None,
) -> App:
    """Load the scenario (raising `ScenarioError`), open and prepare the database."""
    loaded = load_scenario(scenario_dir or settings.scenario_dir)
    db = Database(database_url or settings.database_url)
    try:
        await prepare_database(db)
    except BaseException:
        await db.dispose()
        raise
    clock = clock or SystemClock()
    scenarios = ActiveScenario(loaded)
    funnel = Funnel(
        db,
        scenarios,
        clock,
        phone_region=settings.default_phone_region,
        max_input_length=settings.max_input_length,
        routes=routes_for(settings),
        link_base=settings.webhook_base_url,
        # The Telegram bot's username is learnt from getMe when the bot starts.
        referral_links=ReferralLinks(
            vk_group=f"club{settings.vk_group_id}" if settings.vk_group_id else None
        ),
    )
    log.info(
        "scenario %s loaded (%d offers), database %s",
        loaded.folder,
        len(loaded.scenario.offers),
        db.engine.url.render_as_string(hide_password=True),
    )
    return App(settings=settings, db=db, scenarios=scenarios, funnel=funnel, clock=clock)
