"""`/stats` in the managers' chat answers with a picture of the funnel and its key figures.

Telegram: `leadbot run` as a real process against the Telegram emulator, which refuses what
Telegram refuses (a caption over 1024 characters, a "photo" that is not a picture). VK: the
real handlers behind vkbottle against the VK API fake, in this process, as in
tests/vk/test_reply_random_id.py; the picture is uploaded with photos.getMessagesUploadServer
and photos.saveMessagesPhoto and attached to one message, or left out when VK refuses it."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile
from vkbottle import API, PhotoMessageUploader
from vkbottle import Bot as VkBot
from vkbottle.exception_factory import VKAPIError

from bot.analytics import charts
from bot.analytics.funnel import STAGE_LABELS
from bot.clock import FakeClock
from bot.engine.funnel import Funnel
from bot.handoff import ManagerDesk
from bot.redemption import Redemptions
from bot.scenario.active import ActiveScenario
from bot.scenario.fields import FUNNEL_STAGES
from bot.scenario.loader import load_scenario
from handlers.vk.router import VkHandlers
from handlers.vk.sender import VkSender
from storage import migrate
from storage.database import Database
from storage.models import Lead
from tests.conftest import SHIPPED_SCENARIO
from tests.e2e.bot_process import MANAGERS, RunningBot
from tests.e2e.telegram import BotMessage, TelegramClient
from tests.e2e.test_managers_chat import OLGA, take_the_audit
from tests.e2e.vk_api import VkApiFake

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, read here rather than trusted."""
    assert data.startswith(PNG), data[:16]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def share(part: int, whole: int) -> str:
    """A share as the caption writes it: one decimal, a decimal comma."""
    return f"{100 * part / whole:.1f}".replace(".", ",").removesuffix(",0") + "%"


def expected_reached(stages: list[str]) -> dict[str, int]:
    """How many leads reached each stage, counted here from their funnel stages: a lead
    passed every stage below its own. (The report counts the upper stages from what
    happened, bot/analytics/funnel.py; for leads who bought nothing and whose handoff
    stands as their funnel stage, that is the same count.)"""
    rank = {stage: number for number, stage in enumerate(FUNNEL_STAGES)}
    return {
        stage: sum(1 for s in stages if rank.get(s, 0) >= rank[stage]) for stage in FUNNEL_STAGES
    }


# ---- Telegram, through the emulator


async def test_stats_answers_with_the_funnel_picture_and_the_key_figures(
    telegram_emulator: TelegramClient, bot: RunningBot
) -> None:
    with bot.log_on_failure():
        tg = telegram_emulator
        qualified = tg.new_chat_id()
        await take_the_audit(tg, qualified)  # consent, phone, qualified and handed over
        newcomer = tg.new_chat_id()
        await tg.send_command(newcomer, "/start src_vk", first_name="Пётр")
        await tg.wait_for(newcomer, 1)

        await tg.send_group_command(MANAGERS, "/stats", **OLGA)

        def answered(ms: list[BotMessage]) -> bool:
            return any(m.method == "sendPhoto" for m in ms) and any(
                (m.text or "").startswith("Воронка: сегодня") for m in ms
            )

        messages = await tg.wait_for(MANAGERS, answered, timeout=20)
        [photo] = [m for m in messages if m.method == "sendPhoto"]
        [text] = [m for m in messages if (m.text or "").startswith("Воронка: сегодня")]
        assert photo.message_id < text.message_id  # the picture first, the details under it

        # The picture: an uploaded PNG of a size a phone shows well.
        assert photo.media is not None
        assert (photo.media.kind, photo.media.source) == ("photo", "upload")
        data = await tg.file_bytes(photo.media.file_id)
        width, height = png_size(data)
        assert 600 <= width <= 1600
        assert 200 <= height <= 1600
        assert 5_000 <= len(data) <= 1_000_000
        [size] = photo.message["photo"]
        assert (size["width"], size["height"]) == (width, height)

        # The caption: the figures of the leads in the database, counted here.
        stages = [row[0] for row in bot.rows("select funnel_stage from leads")]
        assert len(stages) == 2
        reached = expected_reached(stages)
        assert reached["qualified"] == 1  # the audit qualified Maria; Pyotr only came
        caption = photo.text or ""
        assert len(caption) <= 1024
        assert caption.startswith("Воронка за 30 дней")
        assert f"Лидов: {len(stages)}" in caption.splitlines()
        for stage in ("contact", "qualified", "handed_off", "customer"):
            line = (
                f"{STAGE_LABELS[stage]}: {reached[stage]} ({share(reached[stage], len(stages))})"
            )
            assert line in caption.splitlines(), (line, caption)
        assert "Выручка: 0 ₽ от 0 клиентов" in caption.splitlines()  # nobody bought yet

        # Telegram refuses the picture: the figures still come, as the text.
        await tg.fail_next("sendPhoto", description="Bad Request: IMAGE_PROCESS_FAILED")
        await tg.send_group_command(MANAGERS, "/stats", **OLGA)

        def texts(ms: list[BotMessage]) -> list[BotMessage]:
            return [m for m in ms if (m.text or "").startswith("Воронка: сегодня")]

        messages = await tg.wait_for(MANAGERS, lambda ms: len(texts(ms)) == 2, timeout=20)
        assert [m.method for m in messages if m.message_id > text.message_id] == ["sendMessage"]
        assert [c.get("error_code") for c in await tg.calls("sendPhoto")] == [None, 400]


async def test_the_emulator_refuses_what_telegram_refuses_of_a_photo(
    telegram_emulator: TelegramClient,
) -> None:
    """The emulator the test above relies on is no kinder than Telegram."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(telegram_emulator.base_url))
    client = Bot(telegram_emulator.token, session=session)
    picture = charts.png(charts.funnel([("Пришли", 3), ("Купили", 1)], "Воронка"))
    chat = telegram_emulator.new_chat_id()
    try:
        with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
            await client.send_photo(chat, BufferedInputFile(b"%PDF-1.4 not a picture", "a.png"))
        with pytest.raises(TelegramBadRequest, match="caption is too long"):
            await client.send_photo(
                chat, BufferedInputFile(picture, "funnel.png"), caption="ф" * 1025
            )
        sent = await client.send_photo(
            chat, BufferedInputFile(picture, "funnel.png"), caption="ф" * 1024
        )
    finally:
        await client.session.close()
    assert sent.photo is not None
    assert (sent.photo[-1].width, sent.photo[-1].height) == png_size(picture)
    assert [m.method for m in await telegram_emulator.bot_messages(chat)] == ["sendPhoto"]


# ---- VK, through the VK API fake


@dataclass
class VkManagers:
    vk: VkApiFake
    router: VkBot
    db: Database
    chat: int  # the managers' conversation

    async def stats(self) -> None:
        """A manager writes /stats in the managers' conversation."""
        manager = self.vk.new_user_id()
        message = self.vk.message_new_object(manager, "/stats", peer_id=self.chat)
        await self.router.process_event(
            self.vk.callback_event("message_new", message, secret=None)
        )


@pytest.fixture
async def vk_managers(tmp_path: Path) -> AsyncIterator[VkManagers]:
    """vkbottle's router over the real handlers, with the managers' conversation, and leads
    of known funnel stages in the database."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'leads.db'}")
    await migrate.upgrade(db.engine)
    now = datetime.now(UTC)
    async with db.unit_of_work() as uow:
        for stage in VK_LEADS:
            arrived = now - timedelta(hours=1)  # inside the last 30 days, before the clock's now
            uow.session.add(
                Lead(created_at=arrived, updated_at=arrived, stage=stage, funnel_stage=stage)
            )
        await uow.commit()
    async with VkApiFake() as vk:
        api = API(vk.token)
        api.API_URL = vk.api_url
        chat = vk.new_chat_peer_id()
        clock = FakeClock(now)
        scenarios = ActiveScenario(load_scenario(SHIPPED_SCENARIO))
        funnel = Funnel(db, scenarios, clock)
        sender = VkSender(api, group_id=vk.group_id, managers_peer_id=chat)
        desk = ManagerDesk(db, scenarios, clock, {sender.channel: sender})
        handlers = VkHandlers(funnel, sender, desk, Redemptions(funnel))
        try:
            yield VkManagers(vk, VkBot(api=api, labeler=handlers.labeler()), db, chat)
        finally:
            await api.http_client.close()
            await db.dispose()


# Leads by the funnel stage they reached: the caption's figures are counted from this.
VK_LEADS = ["new", "new", "engaged", "contact", "qualified", "customer"]


def assert_vk_figures(text: str) -> None:
    reached = expected_reached(VK_LEADS)
    lines = text.splitlines()
    assert lines[0] == "Воронка за 30 дней (лиды по дате прихода)"
    assert f"Лидов: {len(VK_LEADS)}" in lines
    bought = reached["customer"]
    line = f"{STAGE_LABELS['customer']}: {bought} ({share(bought, len(VK_LEADS))})"
    assert line in lines, text
    assert f"{STAGE_LABELS['qualified']}: {reached['qualified']} (" in text
    assert "Воронка: сегодня / 7 дней / 30 дней" in text  # the longer text follows


async def test_vk_stats_is_one_message_with_the_funnel_picture_attached(
    vk_managers: VkManagers,
) -> None:
    vk = vk_managers.vk
    await vk_managers.stats()

    [message] = vk.sent(vk_managers.chat)
    assert message.attachment is not None
    [attachment] = message.attachment.split(",")
    photo = vk.photo(attachment)
    assert photo.peer_id == vk_managers.chat  # uploaded for the managers' conversation
    width, height = png_size(photo.content)
    assert (600 <= width <= 1600, 200 <= height <= 1600) == (True, True)
    assert_vk_figures(message.text)


async def test_vk_stats_falls_back_to_the_text_when_the_upload_fails(
    vk_managers: VkManagers,
) -> None:
    vk = vk_managers.vk
    vk.fail("photos.getMessagesUploadServer", 10)

    await vk_managers.stats()

    [message] = vk.sent(vk_managers.chat)
    assert message.attachment is None
    assert vk.photos() == []
    assert_vk_figures(message.text)


async def test_vk_stats_asked_again_with_nothing_changed_uploads_the_picture_once(
    vk_managers: VkManagers,
) -> None:
    vk = vk_managers.vk
    await vk_managers.stats()
    await vk_managers.stats()

    first, second = vk.sent(vk_managers.chat)
    assert first.attachment == second.attachment
    assert len(vk.photos()) == 1
    assert len(vk.recorded("photos.saveMessagesPhoto")) == 1


async def test_the_vk_fake_refuses_a_picture_that_is_not_one_and_an_unsaved_photo() -> None:
    """The VK API fake the tests above rely on is no kinder than VK."""
    async with VkApiFake() as vk:
        api = API(vk.token)
        api.API_URL = vk.api_url
        chat = vk.new_chat_peer_id()
        uploader = PhotoMessageUploader(api)
        try:
            with pytest.raises(VKAPIError) as not_a_picture:
                await uploader.upload(b"%PDF-1.4 not a picture", peer_id=chat)
            picture = charts.png(charts.funnel([("Пришли", 3)], "Воронка"))
            attachment = await uploader.upload(picture, peer_id=chat)
            with pytest.raises(VKAPIError) as unsaved:
                await api.request(
                    "messages.send",
                    {"peer_id": chat, "random_id": 1, "message": "x", "attachment": "photo-1_1"},
                )
        finally:
            await api.http_client.close()
    assert "photo is undefined" in str(not_a_picture.value)
    assert "no such photo" in str(unsaved.value)
    assert vk.photo(attachment).content == picture
    assert vk.photos() == [vk.photo(attachment)]
