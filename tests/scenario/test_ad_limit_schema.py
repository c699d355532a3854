"""`settings.ad_limit` in a scenario file: what loads, and what a marketer reads when not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.scenario.loader import ScenarioError, load_scenario
from tests.scenario.conftest import Edit

QUIET = '  quiet_hours: "21:00-10:00"\n'


def problems(folder: Path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(folder)
    return [str(problem) for problem in caught.value.problems]


def test_no_limit_unless_the_scenario_sets_one(scenario_dir: Path) -> None:
    assert load_scenario(scenario_dir).scenario.settings.ad_limit is None


@pytest.mark.parametrize(
    ("written", "most", "per"),
    [
        ("{max: 2, per: 1w}", 2, timedelta(days=7)),
        ("{max: 1, per: 3d}", 1, timedelta(days=3)),
        ("{max: 5, per: 36h}", 5, timedelta(hours=36)),
    ],
)
def test_a_limit_loads(
    scenario_dir: Path, edit: Edit, written: str, most: int, per: timedelta
) -> None:
    edit(QUIET, f"{QUIET}  ad_limit: {written}\n")
    limit = load_scenario(scenario_dir).scenario.settings.ad_limit
    assert limit is not None
    assert (limit.max, limit.per) == (most, per)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            "{max: 0, per: 1w}",
            "sc/funnel.yaml:6:19: settings.ad_limit.max: should be greater than or equal to 1",
        ),
        (
            "{max: 2, per: 0d}",
            "sc/funnel.yaml:6:27: settings.ad_limit.per: the window needs a length, like 1w or 7d",
        ),
        (
            "{max: 2, per: week}",
            "sc/funnel.yaml:6:27: settings.ad_limit.per: bad duration 'week': "
            "use a whole number and a unit m, h, d or w (30m, 1h, 2d, 1w)",
        ),
        ("{max: 2}", "sc/funnel.yaml:6:3: settings.ad_limit: missing required key 'per'"),
        (
            "{max: 2, per: 1w, every: 1d}",
            "sc/funnel.yaml:6:31: settings.ad_limit.every: unknown key 'every'",
        ),
    ],
)
def test_a_bad_limit_is_reported_where_it_is(
    scenario_dir: Path, edit: Edit, written: str, expected: str
) -> None:
    edit(QUIET, f"{QUIET}  ad_limit: {written}\n")
    assert problems(scenario_dir) == [expected]
