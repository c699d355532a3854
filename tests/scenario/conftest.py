"""A copy of the test funnel in a temporary folder, edited by each test to break one thing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURE_SCENARIO = Path(__file__).resolve().parents[1] / "fixtures" / "funnel"
Edit = Callable[[str, str], None]


@pytest.fixture
def scenario_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`sc/` (relative, so problems name `sc/funnel.yaml`) holding the fixture funnel."""
    shutil.copytree(FIXTURE_SCENARIO, tmp_path / "sc")
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
