"""The HTML report in a real browser: Debian's headless Chromium opens the page from a file,
driven over the DevTools protocol (its websocket, through aiohttp). Every chart is laid out
with a size, the screenshot is a picture and not a blank page, nothing is logged as an error
(a blocked fetch or a script would be), and on a phone's width nothing overflows the page.

Without Chromium the test skips, saying so; with LEADBOT_REQUIRE_SERVICES=1 (CI, which
installs it) it fails instead."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.analytics import charts
from bot.analytics.html import Section, page
from bot.analytics.tables import Table

REQUIRE_SERVICES = os.environ.get("LEADBOT_REQUIRE_SERVICES") == "1"
CHROMIUM = ("chromium", "/usr/bin/chromium", "chromium-browser")
START_TIMEOUT = 15.0  # seconds for Chromium to write its DevTools port
HOSTILE = "<script>alert('источник')</script>"
PHONE_WIDTH = 390


def chromium() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    reason = "no Chromium here (Debian: apt-get install chromium); the browser test is skipped"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LEADBOT_REQUIRE_SERVICES=1 makes it mandatory)", pytrace=False)
    pytest.skip(reason)


def report() -> str:
    """A page like the report's: every kind of chart, Cyrillic labels, user text in tables."""
    funnel = charts.funnel(
        [("Пришли", 480), ("Дали контакт", 210), ("Квалифицированы", 96), ("Купили", 31)],
        "Воронка за 30 дней",
    )
    cohorts = charts.heatmap(
        ["неделя 03.11", "неделя 10.11", "неделя 17.11"],
        ["0 нед.", "1 нед.", "2 нед.", "4 нед."],
        [[12.0, 20.5, 26.0, 31.0], [9.0, 15.0, None, None], [14.0, None, None, None]],
        "Когорты: доля квалифицированных, %",
        "{:.0f}%",
    )
    money = charts.bars(
        ["ВКонтакте", "Яндекс Директ", HOSTILE],
        {"Выручка, ₽": [1_200_000, 640_000, 260_000], "CPA, ₽": [8_000, 12_500, 4_300]},
        "Выручка и CPA по источникам",
        "₽",
    )
    ab = charts.bars(
        ["A", "B", "C"],
        {"Квалифицировались, %": [11.2, 14.8, 9.1]},
        "A/B: шаг «приглашение»",
        "%",
        errors={"Квалифицировались, %": [2.1, 2.4, 1.9]},
    )
    nps = charts.lines(
        ["окт", "ноя", "дек", "янв"],
        {"NPS": [32.0, None, 41.0, 47.5], "сайт": [20.0, 25.0, 30.0, None]},
        "NPS по месяцам",
        "баллы",
    )
    sources = Table(
        "Источники",
        ("Источник", "Лидов", "Выручка", "ROMI, %"),
        (("ВКонтакте", 300, None, 12.5), (HOSTILE, 20, None, None)),
        note="Источник назван так, как его прислали: " + HOSTILE,
    )
    return page(
        "Отчёт: ноябрь 2026",
        "Лиды с 01.11.2026 по 30.11.2026, UTC",
        [
            Section("Воронка", [charts.svg(funnel)], []),
            Section("Когорты", [charts.svg(cohorts)], []),
            Section("Деньги", [charts.svg(money)], [sources]),
            Section("NPS и A/B", [charts.svg(nps), charts.svg(ab)], []),
        ],
    )


class DevTools:
    """One page's DevTools session: commands by id, and the events that came meanwhile."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self._ids = count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json()
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    async def until(self, event: str) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while True:
            message = await self.socket.receive_json()
            self.events.append(message)
            if message.get("method") == event:
                return message

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"]["value"]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and log entries of level error."""
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"), ensure_ascii=False)[:300])
            elif method == "Runtime.exceptionThrown":
                found.append(json.dumps(params, ensure_ascii=False)[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "")[:300])
        return found


@contextlib.asynccontextmanager
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium with a profile of its own; the DevTools session of its page."""
    profile = tmp_path / "profile"
    command = [
        chromium(),
        "--headless=new",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,1400",
        "about:blank",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if process.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"Chromium did not start (exit code {process.returncode})")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            [target] = [t for t in targets if t["type"] == "page"][:1]
            async with http.ws_connect(
                target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
            ) as socket:
                yield DevTools(socket)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


def picture_colours(data: bytes) -> tuple[int, float]:
    """Distinct colours of a screenshot, and the share of its pixels that are white."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    pixels = image.width * image.height
    colours = image.getcolors(maxcolors=pixels) or []
    white = sum(n for n, colour in colours if colour == (255, 255, 255))
    return len(colours), white / pixels


async def test_the_report_renders_every_chart_in_chromium(tmp_path: Path) -> None:
    chromium()  # skip before writing anything when there is no browser
    file = tmp_path / "отчёт.html"
    file.write_text(report(), encoding="utf-8")
    async with asyncio.timeout(60), browser(tmp_path) as tab:
        await tab.send("Page.enable")
        await tab.send("Runtime.enable")
        await tab.send("Log.enable")
        await tab.send("Page.navigate", url=file.as_uri())
        await tab.until("Page.loadEventFired")

        boxes = await tab.evaluate(
            "[...document.querySelectorAll('svg')].map(s => {"
            " const r = s.getBoundingClientRect(); return [r.width, r.height]; })"
        )
        title = await tab.evaluate("document.title")
        scripts = await tab.evaluate("document.scripts.length")
        shown = await tab.evaluate("document.body.innerText")
        shot = await tab.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)

        # A phone: the page fits its width; wide tables scroll inside their own box.
        await tab.send(
            "Emulation.setDeviceMetricsOverride",
            width=PHONE_WIDTH,
            height=844,
            deviceScaleFactor=1,
            mobile=True,
        )
        await tab.send("Page.reload")
        await tab.until("Page.frameStoppedLoading")
        await asyncio.sleep(0.2)  # the reload's layout
        phone = await tab.evaluate(
            "({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
            " svgs: [...document.querySelectorAll('svg')].map("
            "s => s.getBoundingClientRect().width)})"
        )
        errors = tab.errors()

    assert errors == []
    assert title == "Отчёт: ноябрь 2026"
    assert len(boxes) == 5  # funnel, heat map, money, NPS, A/B
    assert all(width > 300 and height > 100 for width, height in boxes), boxes
    assert scripts == 0
    assert HOSTILE in shown  # user text shown as text, never run

    colours, white = picture_colours(base64.b64decode(shot["data"]))
    assert colours > 100  # bars, cells, lines, text: a picture, not a blank page
    assert white < 0.9

    assert phone["scroll"] <= phone["inner"], phone
    assert all(0 < width <= phone["inner"] for width in phone["svgs"]), phone
