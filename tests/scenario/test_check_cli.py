"""`leadbot check [DIR]`: what a marketer sees in the terminal, and the exit code CI relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
Edit = Callable[[str, str], None]


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


def test_valid_scenario_prints_one_ok_line_with_the_counts(scenario_dir: Path, edit: Edit) -> None:
    # The checklist leads nowhere (a warning below) unless it hands the lead over.
    edit(
        'text: "Держите чек-лист: https://example.com/checklist"',
        'text: "Чек-лист"\n    then: {handoff: true}',
    )
    result = leadbot_check("sc")

    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "sc: OK: 1 file, 3 offers, 5 questions, 2 sequences (3 steps), 0 promos, 1 FAQ entry\n",
        "",
    )


def test_warnings_are_printed_before_the_ok_line_and_do_not_fail(scenario_dir: Path) -> None:
    result = leadbot_check("sc")

    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (
        0,
        [
            "warning: sc/funnel.yaml:33:5: offers.quick: a lead who takes this offer never "
            "reaches the managers: scoring.qualify cannot hold for a lead who takes only this "
            "offer, and no handoff: true is on its way (the offer's then:, or a button of its "
            "chains)",
            "sc: OK: 1 file, 3 offers, 5 questions, 2 sequences (3 steps), 0 promos, "
            "1 FAQ entry, 1 warning",
        ],
        "",
    )


def test_without_a_folder_checks_scenario_dir(scenario_dir: Path) -> None:
    result = leadbot_check(env={"SCENARIO_DIR": "sc"})

    assert result.returncode == 0
    assert "\nsc: OK: 1 file, 3 offers," in result.stdout


def test_every_problem_is_printed_and_the_exit_code_is_1(scenario_dir: Path, edit: Edit) -> None:
    edit("    - offer: quick", "    - offer: quik")
    edit("Спасибо, {name}!", "Спасибо, {nme}!")
    edit("{id: remind, after: 1d,", "{id: remind, after: 1d, at: 11:00,")
    # The schema is checked first; references only once it holds, so fix it in two rounds.
    first = leadbot_check("sc")
    edit("at: 11:00,", 'at: "11:00",')
    second = leadbot_check("sc")

    assert (first.returncode, first.stdout.splitlines(), first.stderr) == (
        1,
        [
            "sc/funnel.yaml:51:37: sequences.audit_followup.steps[0].at: "
            'write times in quotes, like at: "11:00"',
        ],
        "1 problem(s) in sc\n",
    )
    assert (second.returncode, second.stdout.splitlines(), second.stderr) == (
        1,
        [
            "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'quik'; "
            "did you mean 'quick'?",
            "sc/funnel.yaml:23:13: offers.audit.deliver.text: unknown placeholder {nme}; "
            "did you mean {name}?",
        ],
        "2 problem(s) in sc\n",
    )


def test_problems_from_several_files_are_sorted_by_file_and_line(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text(
        'offers:\n  guide:\n    title: "Гайд"\n    deliver: {text: "Держите"}\n'
        'consent:\n  text: "Согласны?"\n  policy_url: https://example.com\n',
        encoding="utf-8",
    )

    result = leadbot_check("sc")

    assert (result.returncode, result.stdout.splitlines()) == (
        1,
        [
            "sc/more.yaml:2:3: offers.guide: duplicate id, also defined at sc/funnel.yaml:25:3",
            "sc/more.yaml:5:1: consent: this section is already in sc/funnel.yaml:13:1; "
            "keep it in one file",
        ],
    )


def test_syntax_errors_of_every_file_come_before_anything_else(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text("faq: [\n", encoding="utf-8")
    (scenario_dir / "a.yaml").write_text("promos:\n\tfirst: {}\n", encoding="utf-8")
    (scenario_dir / "z.yaml").write_text("offers:\n  guide: {}\n", encoding="utf-8")

    result = leadbot_check("sc")

    # z.yaml's duplicate offer is found only once every file reads as YAML.
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (
        1,
        [
            "sc/a.yaml:2:1: YAML syntax: a tab character; indent with spaces",
            "sc/more.yaml:2:1: YAML syntax: the file ends before a [ or { is closed",
        ],
        "2 problem(s) in sc\n",
    )


def test_folder_that_does_not_exist(scenario_dir: Path) -> None:
    result = leadbot_check("nope")

    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "nope:1:1: no such scenario folder\n",
        "1 problem(s) in nope\n",
    )


def test_empty_folder(scenario_dir: Path) -> None:
    Path("empty").mkdir()

    result = leadbot_check("empty")

    assert (result.returncode, result.stdout) == (1, "empty:1:1: no *.yaml files in this folder\n")


def test_shipped_scenario_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check", "scenarios"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("scenarios: OK: ")
