"""Runs the conversation stories in tests/stories/*.yaml (see README there) through the
terminal chat transport, the engine and a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.clock import FakeClock
from bot.console import ConsoleChat, ConsoleTransport
from bot.delivery import DeliveryWorker
from bot.engine.funnel import Funnel
from bot.messages import Button
from bot.pacing import MemoryPacer
from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import ROOT
from tests.prospect import snapshot

STORIES = Path(__file__).parent


def _stories() -> Iterator[Any]:
    for file in sorted(STORIES.glob("*.yaml")):
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
        for story in document["stories"]:
            yield pytest.param(
                document.get("scenario", "scenarios"), story, id=f"{file.stem}: {story['name']}"
            )


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@pytest.mark.parametrize(("scenario", "story"), list(_stories()))
async def test_story(scenario: str, story: dict[str, Any], sqlite_db: Database) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    scenarios = ActiveScenario(load_scenario(ROOT / scenario))
    funnel = Funnel(sqlite_db, scenarios, clock)
    transport = ConsoleTransport()
    worker = DeliveryWorker(
        sqlite_db,
        scenarios,
        clock,
        {"console": transport},
        MemoryPacer(),
        funnel,
        worker_id="stories",
    )
    chat = ConsoleChat(
        funnel,
        clock,
        external_id="story",
        first_name=story.get("first_name", "Гость"),
        worker=worker,
        transport=transport,
        zone="UTC",  # the stories give each moment in UTC (timing.yaml says so)
    )
    shown: list[str] = []
    pressable: list[Button] = []  # every button shown so far: old ones stay on the screen
    for number, step in enumerate(story["dialog"], start=1):
        where = f"step {number} of {story['name']!r}"
        if "user" in step:
            output = await chat.process(str(step["user"]))
            assert output is not None, where
            shown = output
        elif "press" in step:
            labels = [b.text for b in chat.buttons]
            assert step["press"] in labels, f"{where}: no button {step['press']!r} in {labels}"
            output = await chat.process(str(labels.index(step["press"]) + 1))
            assert output is not None
            shown = output
        elif "press_earlier" in step:  # scrolled up to an older message: maybe a stale button
            label = step["press_earlier"]
            earlier = [b for b in reversed(pressable) if b.text == label]
            assert earlier, f"{where}: no button {label!r} was shown before"
            chat.buttons = [earlier[0]]
            output = await chat.process("1")
            assert output is not None
            shown = output
        pressable += chat.buttons
        text = "\n".join(shown)
        for expected in _as_list(step.get("bot", [])):
            assert expected in text, f"{where}: expected {expected!r} in:\n{text}"
        for unexpected in _as_list(step.get("not", [])):
            assert unexpected not in text, f"{where}: did not expect {unexpected!r} in:\n{text}"
        if "buttons" in step:
            labels = [b.text for b in chat.buttons]
            missing = [b for b in step["buttons"] if b not in labels]
            assert not missing, f"{where}: buttons {missing} not among {labels}"
        if "state" in step:
            state = await snapshot(sqlite_db, "story", channel="console")
            for key, wanted in step["state"].items():
                _check_state(where, key, getattr(state, key), wanted)


def _check_state(where: str, key: str, actual: Any, wanted: Any) -> None:
    """Lists and mappings must contain what the story names; an empty one means "none"."""
    message = f"{where}: {key} is {actual!r}, expected {wanted!r}"
    if isinstance(wanted, list | dict) and not wanted:
        assert not actual, message
    elif isinstance(wanted, dict):
        assert wanted.items() <= dict(actual).items(), message
    elif isinstance(wanted, list):
        assert set(wanted) <= set(actual), message
    else:
        assert actual == wanted, message
