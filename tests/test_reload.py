"""Reloading the scenario while the bot runs: good edits apply, a broken folder is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.scenario.active import ActiveScenario
from bot.scenario.loader import load_scenario
from bot.scenario.reload import ScenarioReloader
from tests.conftest import FIXTURE_SCENARIO


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE_SCENARIO, tmp_path / "sc")
    return tmp_path / "sc"


def edit(folder: Path, old: str, new: str) -> None:
    file = folder / "funnel.yaml"
    file.write_text(file.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


async def test_an_edit_is_picked_up_on_the_next_look(folder: Path) -> None:
    active = ActiveScenario(load_scenario(folder))
    reloader = ScenarioReloader(active)
    await reloader.poll()
    assert active.current.scenario.start.text == "Привет, {first_name}! Выберите:"
    edit(folder, "Выберите:", "Что вам интересно?")
    await reloader.poll()
    assert active.current.scenario.start.text == "Привет, {first_name}! Что вам интересно?"


async def test_a_broken_folder_is_refused_and_the_old_scenario_keeps_running(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    active = ActiveScenario(load_scenario(folder))
    before = active.current
    reports: list[str] = []

    async def to_managers(text: str) -> None:
        reports.append(text)

    reloader = ScenarioReloader(active, on_refused=to_managers)
    edit(folder, "ask: [email]", "ask: [emial]")
    await reloader.poll()
    assert active.current is before
    [report] = reports
    assert report.splitlines()[0].endswith("не принят (ошибок: 1), работает прежний:")
    # The fixture sets no language: Russian, as `leadbot check` would say it.
    assert "offers.guide.ask[0]: неизвестный вопрос 'emial'; может быть, 'email'?" in report
    assert "scenario reload refused" in caplog.text
    await reloader.poll()  # nothing changed since: not reported again
    assert len(reports) == 1
    edit(folder, "ask: [emial]", "ask: [email]")
    accepted, text = await reloader.reload()
    assert accepted
    assert text.startswith("Сценарий")
    assert active.current is not before


async def test_the_report_speaks_the_scenarios_language(folder: Path) -> None:
    edit(folder, "  timezone: Europe/Moscow\n", "  timezone: Europe/Moscow\n  language: en\n")
    active = ActiveScenario(load_scenario(folder))
    reloader = ScenarioReloader(active)
    accepted, text = await reloader.reload()
    assert accepted
    assert text.splitlines()[:2] == [
        f"The scenario {folder} is updated: 3 offers, 2 sequences, 1 file.",
        "Warnings (1):",
    ]
    edit(folder, "ask: [email]", "ask: [emial]")
    accepted, text = await reloader.reload()
    assert not accepted
    assert text.splitlines()[:2] == [
        f"The scenario {folder} is refused (1 problem); the old one keeps running:",
        f"{folder}/funnel.yaml:28:11: offers.guide.ask[0]: unknown question 'emial'; "
        "did you mean 'email'?",
    ]
