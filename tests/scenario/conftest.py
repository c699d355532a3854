"""A copy of the test funnel in a temporary folder, edited by each test to break one thing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURE_SCENARIO = Path(__file__).resolve().parents[1] / "fixtures" / "funnel"
Edit = Callable[[str, str], None]
ENGLISH = "  language: en\n"
RUSSIAN = "  language: ru\n"  # put in ENGLISH's place, so that lines keep their numbers


@pytest.fixture
def scenario_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`sc/` (relative, so problems name `sc/funnel.yaml`) holding the fixture funnel, with
    `settings.language: en`, so the problems pinned here read in English (the fixture's own
    default is Russian; test_wording.py pins the Russian texts). The language takes the
    place of the heading comment: lines from `timezone:` on keep their numbers."""
    shutil.copytree(FIXTURE_SCENARIO, tmp_path / "sc")
    main = tmp_path / "sc" / "funnel.yaml"
    comment, version, settings, *rest = main.read_text(encoding="utf-8").splitlines(True)
    assert (comment[0], version, settings) == ("#", "version: 1\n", "settings:\n")
    main.write_text("".join([version, settings, ENGLISH, *rest]), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return Path("sc")


@pytest.fixture
def edit(scenario_dir: Path) -> Edit:
    """Replace the one occurrence of `old` in `sc/funnel.yaml` with `new`."""
    main = scenario_dir / "funnel.yaml"

    def replace(old: str, new: str) -> None:
        text = main.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        main.write_text(text.replace(old, new), encoding="utf-8")

    return replace


def leadbot_check(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `leadbot check` in the current directory (tests chdir into tmp_path first)."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        timeout=60,
        check=False,
    )
