"""The whole report on a history the bot itself made (tests/analytics/history.py): through
`GET /api/stats` on the fake clock, and through `leadbot report` with its page and JSON. The
expected figures come from what the simulated people did, not from the database."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from bot.outside import OutsideEvents
from handlers.web.api import STATS_PATH, api_app
from storage.database import Database
from tests.analytics.history import QUESTION, History, Person, generate
from tests.test_cli import leadbot

TOKEN = "report-token"
MSK = ZoneInfo("Europe/Moscow")
# The report of whole local days 2 November .. 13 December: the span the spend was entered for.
SINCE = datetime(2026, 11, 2, tzinfo=MSK).astimezone(UTC)
UNTIL = datetime(2026, 12, 14, tzinfo=MSK).astimezone(UTC)
QUERY = "since=2026-11-02&until=2026-12-13"
CENT = Decimal("0.01")


async def stats(history: History, query: str, token: str = TOKEN) -> tuple[int, Any]:
    runner = web.AppRunner(api_app(OutsideEvents(history.bench.funnel), TOKEN))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}{STATS_PATH}?{query}"
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                return response.status, await response.json()
    finally:
        await runner.cleanup()


def inside(moment: datetime | None) -> bool:
    return moment is not None and SINCE <= moment < UNTIL


def money(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def close(got: str | None, expected: Decimal) -> bool:
    return got is not None and abs(Decimal(got) - expected) <= CENT


def rfm_segment(person: Person, now: datetime) -> str:
    """The documented default thresholds (settings.rfm), written out again."""
    last = max(at for at, _ in person.purchases)
    if now - last > timedelta(days=180):
        return "lost"
    if now - last > timedelta(days=90):
        return "at_risk"
    if now - last <= timedelta(days=30) and len(person.purchases) >= 3:
        return "champions"
    return "loyal" if len(person.purchases) >= 3 else "new"


def p_value(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided two-proportion z-test with the pooled rate, from the textbook."""
    pooled = (x1 + x2) / (n1 + n2)
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def check_funnel(report: dict[str, Any], came: list[Person]) -> None:
    overall = report["funnel"]["figures"]["overall"]
    buyers = [p for p in came if p.purchases]
    qualified = [p for p in came if p.purchases or (p.offer == "audit" and not p.leaves)]
    assert overall["total"] == len(came)
    assert overall["reached"]["customer"] == len(buyers)
    # Everyone bought through the events API: nobody was handed off, nobody "via a manager".
    assert overall["reached"]["handed_off"] == 0
    assert (overall["via_manager"], overall["without_manager"]) == (0, len(buyers))
    assert overall["reached"]["qualified"] == len(qualified)
    stopped = [p for p in came if p.stops and p.hello_at is not None]
    assert overall["side"]["unsubscribed"] == len(stopped) > 0


def check_sources(report: dict[str, Any], came: list[Person], spend: dict[str, Decimal]) -> None:
    rows = {row["key"]: row for row in report["sources"]["figures"]["sources"]}
    assert set(rows) == {p.source for p in came}
    for key, row in rows.items():
        mine = [p for p in came if p.source == key]
        buyers = [p for p in mine if p.purchases]
        revenue = sum((p.revenue for p in mine), Decimal(0))
        purchases = sum(len(p.purchases) for p in mine)
        assert (row["leads"], row["customers"]) == (len(mine), len(buyers)), key
        assert (row["purchases"], money(row["revenue"])) == (purchases, revenue), key
        assert close(row["average_check"], revenue / purchases)
        assert close(row["ltv"], revenue / len(buyers))
        cycle = sum((min(at for at, _ in p.purchases) - p.arrived for p in buyers), timedelta())
        assert row["cycle_days"] == pytest.approx(cycle / len(buyers) / timedelta(days=1))
        if key is None:
            assert row["spend"] is row["cpl"] is row["cpa"] is row["romi"] is None
            continue
        assert money(row["spend"]) == spend[key]  # the window is the span entered: all of it
        assert close(row["cpl"], spend[key] / len(mine))
        assert close(row["cpa"], spend[key] / len(buyers))
        assert row["romi"] == pytest.approx(float(100 * (revenue - spend[key]) / spend[key]))


def check_cohorts(report: dict[str, Any], came: list[Person], now: datetime) -> None:
    figures = report["cohorts"]["figures"]

    def monday(moment: datetime) -> str:
        local = moment.astimezone(MSK).date()
        return (local - timedelta(days=local.weekday())).isoformat()

    weeks = Counter(monday(p.arrived) for p in came)
    assert dict(zip(figures["weeks"], figures["leads"], strict=True)) == weeks
    offsets = figures["offsets"]
    assert offsets == [0, 1, 2, 4, 8]
    checked = 0
    for row, week in enumerate(figures["weeks"]):
        cohort = [p for p in came if monday(p.arrived) == week]
        for column, k in enumerate(offsets):
            share = figures["customers"][row][column]
            if share is None:  # the cohort is too young for the offset
                start = datetime.fromisoformat(week).replace(tzinfo=MSK)
                assert now - start < timedelta(weeks=k + 1)
                continue
            early = [
                p
                for p in cohort
                if p.purchases
                and min(at for at, _ in p.purchases) - p.arrived < timedelta(weeks=k + 1)
            ]
            assert share == pytest.approx(100 * len(early) / len(cohort)), (week, k)
            checked += 1
    assert checked >= 20


def check_rfm(report: dict[str, Any], people: list[Person], now: datetime) -> None:
    segments = {s["id"]: s for s in report["rfm"]["figures"]["segments"]}
    expected: dict[str, list[Person]] = {key: [] for key in segments}
    for person in people:
        if person.purchases:
            expected[rfm_segment(person, now)].append(person)
    for key, members in expected.items():
        revenue = sum((p.revenue for p in members), Decimal(0))
        assert segments[key]["customers"] == len(members), key
        assert money(segments[key]["revenue"]) == revenue, key
    assert sum(1 for m in expected.values() if m) >= 2  # the history is not one segment


def check_nps(report: dict[str, Any], came: list[Person]) -> None:
    (question,) = report["nps"]["figures"]["questions"]
    answers = [p.nps for p in came if p.nps is not None and inside(p.nps_at)]
    promoters = sum(1 for a in answers if a >= 9)
    detractors = sum(1 for a in answers if a <= 6)
    score = question["score"]
    assert (score["answers"], score["promoters"], score["detractors"]) == (
        len(answers),
        promoters,
        detractors,
    )
    assert score["nps"] == pytest.approx(100 * (promoters - detractors) / len(answers))
    by_month = Counter(
        p.nps_at.astimezone(MSK).strftime("%Y-%m") for p in came if inside(p.nps_at)
    )
    assert {m["label"]: m["score"]["answers"] for m in question["months"]} == by_month


def check_ab_and_sends(report: dict[str, Any], people: list[Person]) -> None:
    (test,) = report["ab"]["figures"]["tests"]
    variants = {v["variant"]: v for v in test["variants"]}
    got = [p for p in people if inside(p.hello_at)]
    counts = {}
    for name in ("a", "b"):
        sent = [p for p in got if p.variant == name]
        clicked = [p for p in sent if p.clicked]
        assert (variants[name]["sent"], variants[name]["clicked"]) == (len(sent), len(clicked))
        counts[name] = (len(clicked), len(sent))
    (xa, na), (xb, nb) = counts["a"], counts["b"]
    assert variants["b"]["p_value"] == pytest.approx(p_value(xa, na, xb, nb))
    assert test["winner"] is None  # about 40 a side: short of min_sent, whatever p says
    steps = {s["message"]: s for s in report["sends"]["figures"]["steps"]}
    stopped = [p for p in got if p.stops]
    assert (steps["hello"]["sent"], steps["hello"]["clicked"]) == (
        len(got),
        sum(1 for p in got if p.clicked),
    )
    assert steps["hello"]["unsubscribed"] == len(stopped) > 0


def check_talk_and_misses(report: dict[str, Any], came: list[Person]) -> None:
    talks = {t["offer"]: t for t in report["conversation"]["figures"]["offers"]}
    takers = [p for p in came if p.offer == "guide"]
    left = [p for p in takers if p.leaves]
    email = next(s for s in talks["guide"]["steps"] if s["key"] == "email")
    assert talks["guide"]["took"] == len(takers)
    assert (email["reached"], email["answered"], email["left"]) == (
        len(takers),
        len(takers) - len(left),
        len(left),
    )
    assert talks["guide"]["delivered"] == len(takers) - len(left)
    misses = report["misses"]["figures"]
    asked = sum(1 for p in came if p.asks)
    assert misses["unmatched"] == asked > 0
    assert misses["questions"][0]["text"] == QUESTION
    assert misses["questions"][0]["times"] == asked


async def test_the_report_tells_what_the_people_did(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    history = await generate(db, tmp_path)
    status, body = await stats(history, QUERY)
    assert status == 200, body
    report = body["sections"]
    came = [p for p in history.people if SINCE <= p.arrived < UNTIL]
    assert 0 < len(came) < len(history.people)  # some arrived after the window
    check_funnel(report, came)
    check_sources(report, came, history.spend)
    check_cohorts(report, came, history.now)
    check_rfm(report, history.people, history.now)
    check_nps(report, came)
    check_ab_and_sends(report, history.people)
    check_talk_and_misses(report, came)

    # The tables are the figures as shown: the JSON's first funnel row is the same count.
    funnel_table = report["funnel"]["tables"][0]
    assert funnel_table["rows"][0][1] == len(came)

    if not database_url.startswith("sqlite"):
        return
    # `leadbot report` on the same database: the text, the page and the JSON beside it.
    page, figures = tmp_path / "report.html", tmp_path / "report.json"
    done = await asyncio.to_thread(
        leadbot,
        [
            *("report", "--db", database_url, "--scenario", str(tmp_path / "scenario")),
            *("--since", "2026-11-02", "--until", "2026-12-13", "--by", "source"),
            *("--html", str(page), "--json", str(figures)),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in ("Воронка", "Источники и деньги", "Когорты", "RFM", "NPS", "A/B", "FAQ"):
        assert title in out
    written = json.loads(figures.read_text(encoding="utf-8"))["sections"]
    leads = {row["key"]: row["leads"] for row in written["sources"]["figures"]["sources"]}
    assert leads == Counter(p.source for p in came)
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") >= 8
    assert "http://" not in html.replace("http://www.w3.org", "")


async def test_stats_api_refuses_a_stranger_and_bad_parameters(
    sqlite_db: Database, tmp_path: Path
) -> None:
    history = await generate(sqlite_db, tmp_path, people=5)
    assert (await stats(history, QUERY, token="guess"))[0] == 401
    for query, reason in (
        ("period=forever", "period"),
        ("since=2026-13-01", "since"),
        ("since=2026-11-02&until=2026-11-01", "until"),
        ("by=weather", "by"),
        ("colour=red", "colour"),
    ):
        status, body = await stats(history, query)
        assert status == 400, query
        assert reason in body["error"], body
