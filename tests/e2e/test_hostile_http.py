"""Crafted requests against a running bot that serves everything on its web server: the
Telegram webhook, VK's Callback API, the events API, promo redemption and tracked links.
Each is a client's mistake (or an attack), so each gets a 4xx, never a 5xx, and the bot goes
on serving the honest update that follows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.bot_process import free_port, start_bot
from tests.e2e.telegram import TelegramClient
from tests.e2e.vk_api import VkApiFake

TG_SECRET = "the-right-secret-0123456789"
VK_SECRET = "vk-callback-secret-42"
API_TOKEN = "site-events-token-0123456789abcdef"
TILL_TOKEN = "front-desk-token-0123456789"
FORM_TOKEN = "web-form-token-0123456789ab"
BOMB = ("[" * 20_000 + "]" * 20_000).encode()  # 40 KB: under the size bound, not the depth one


def nested(depth: int) -> dict[str, Any]:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return {"update_id": 5, "message": value}


async def test_crafted_requests_get_4xx_and_the_bot_goes_on(
    telegram_emulator: TelegramClient, vk_api: VkApiFake, tmp_path: Path
) -> None:
    port = free_port()
    running = start_bot(
        telegram_emulator,
        tmp_path,
        **vk_api.env(),
        WEBHOOK_BASE_URL="https://bot.example.test",
        WEBHOOK_SECRET=TG_SECRET,
        VK_CALLBACK_SECRET=VK_SECRET,
        VK_CONFIRMATION_CODE="confirm-me",
        API_TOKEN=API_TOKEN,
        REDEEM_TOKENS=f"front-desk:{TILL_TOKEN},web-form:{FORM_TOKEN}:public",
        HTTP_PORT=str(port),
    )
    base = f"http://127.0.0.1:{port}"
    webhook, callback = f"{base}/telegram/webhook", f"{base}/vk/callback"
    events, redeem = f"{base}/api/events", f"{base}/api/promo/redeem"
    tg = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    till = {"Authorization": f"Bearer {TILL_TOKEN}"}
    form = {"Authorization": f"Bearer {FORM_TOKEN}"}
    try:
        with running.log_on_failure():
            await telegram_emulator.wait_for_calls("setWebhook", 1, timeout=30)
            crafted: list[tuple[str, str, bytes, dict[str, str]]] = [
                ("deep JSON, webhook", webhook, BOMB, tg),
                ("deep JSON, VK", callback, BOMB, {}),
                ("deep JSON, events", events, BOMB, api),
                ("deep JSON, redeem", redeem, BOMB, api),
                ("deep update, webhook", webhook, json.dumps(nested(100)).encode(), tg),
                ("non-ASCII secret", webhook, b"{}", {"X-Telegram-Bot-Api-Secret-Token": "сек"}),
                ("non-ASCII token", events, b"{}", {"Authorization": "Bearer токен"}),
                ("till token, events", events, b'{"event": "paid", "lead_id": 1}', till),
                ("not UTF-8, webhook", webhook, b"\xff\xfe{", tg),
                ("not UTF-8, VK", callback, b"\xff\xfe{", {}),
                ("not UTF-8, events", events, b"\xff\xfe{", api),
                ("not an object, VK", callback, b"[1, 2]", {}),
                ("not an object, events", events, b'"event"', api),
                ("too large, webhook", webhook, b"{" + b" " * 70_000 + b"}", tg),
                ("too large, VK", callback, b" " * 70_000, {}),
                ("null update, webhook", webhook, b"null", tg),
                ("wrong types, webhook", webhook, b'{"update_id": "x"}', tg),
            ]
            statuses = {}
            async with aiohttp.ClientSession() as http:
                for name, url, body, headers in crafted:
                    async with http.post(url, data=body, headers=headers) as response:
                        statuses[name] = response.status
                async with http.get(f"{base}/r/{'x' * 5000}") as response:
                    statuses["long link token"] = response.status
                server_errors = {name: s for name, s in statuses.items() if s >= 500}
                assert server_errors == {}
                assert statuses["deep JSON, webhook"] == 400
                assert statuses["non-ASCII secret"] == 401
                assert statuses["non-ASCII token"] == 401
                assert statuses["too large, VK"] == 413
                assert statuses["till token, events"] == 401

                # REDEEM_TOKENS reach the running bot: the till is told, the public form not.
                guess = {"code": "NOPE-12345"}
                async with http.post(redeem, json=guess, headers=till) as response:
                    assert (response.status, (await response.json())["status"]) == (
                        404,
                        "unknown",
                    )
                async with http.post(redeem, json=guess, headers=form) as response:
                    assert (response.status, (await response.json())["status"]) == (
                        404,
                        "refused",
                    )

                # An honest update after all that is handled as ever.
                update = {
                    "update_id": 6,
                    "message": {
                        "message_id": 1,
                        "date": 0,
                        "chat": {"id": 77, "type": "private"},
                        "from": {"id": 77, "is_bot": False, "first_name": "X"},
                        "text": "/start",
                        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                    },
                }
                async with http.post(webhook, json=update, headers=tg) as response:
                    assert response.status == 200
            assert running.rows("select external_id from identities") == [("77",)]
            log = running.log.read_text()
            assert "Traceback" not in log
            assert "GET /r/… 404" in log  # the access log keeps no link token
            assert "xxxxxxxxxx" not in log
            assert TILL_TOKEN not in log
            assert FORM_TOKEN not in log
    finally:
        code = await asyncio.to_thread(running.stop)
        assert code == 0, running.log.read_text()[-4000:]
