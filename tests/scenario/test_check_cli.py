"""`leadbot check [--scenario DIR]`: what a marketer sees in the terminal, and the exit code CI
relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.scenario.conftest import Edit, leadbot_check

ROOT = Path(__file__).resolve().parents[2]


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

    result = leadbot_check("--scenario", "sc")

    # A schema problem in one sequence does not hide the references checked elsewhere.
    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (
        1,
        [
            "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'quik'; "
            "did you mean 'quick'?",
            "sc/funnel.yaml:23:13: offers.audit.deliver.text: unknown placeholder {nme}; "
            "did you mean {name}?",
            "sc/funnel.yaml:51:37: sequences.audit_followup.steps[0].at: "
            'write times in quotes, like at: "11:00"',
        ],
        "3 problem(s) in sc\n",
    )


def test_problems_from_several_files_are_sorted_by_file_and_line(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text(
        'offers:\n  guide:\n    title: "Гайд"\n    deliver: {text: "Держите"}\n'
        'consent:\n  text: "Согласны?"\n  policy_url: https://example.com\n',
        encoding="utf-8",
    )

    result = leadbot_check("sc")

    # The schema holds (the first definition wins), so warnings are known too: printed first.
    assert (result.returncode, result.stdout.splitlines()) == (
        1,
        [
            "warning: sc/funnel.yaml:33:5: offers.quick: a lead who takes this offer never "
            "reaches the managers: scoring.qualify cannot hold for a lead who takes only this "
            "offer, and no handoff: true is on its way (the offer's then:, or a button of its "
            "chains)",
            "sc/more.yaml:2:3: offers.guide: duplicate id, also defined at sc/funnel.yaml:25:3",
            "sc/more.yaml:5:1: consent: this section is already in sc/funnel.yaml:13:1; "
            "keep it in one file",
        ],
    )


def test_syntax_errors_do_not_hide_the_other_files_problems(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text("faq: [\n", encoding="utf-8")
    (scenario_dir / "a.yaml").write_text("promos:\n\tfirst: {}\n", encoding="utf-8")
    (scenario_dir / "z.yaml").write_text("offers:\n  guide: {}\n", encoding="utf-8")

    result = leadbot_check("sc")

    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (
        1,
        [
            "sc/a.yaml:2:1: YAML syntax: a tab character; indent with spaces",
            "sc/more.yaml:2:1: YAML syntax: the file ends before a [ or { is closed",
            "sc/z.yaml:2:3: offers.guide: duplicate id, also defined at sc/funnel.yaml:25:3",
        ],
        "3 problem(s) in sc\n",
    )


def test_a_folder_given_twice_is_refused(scenario_dir: Path) -> None:
    result = leadbot_check("sc", "--scenario", "sc")

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "leadbot check: error: argument --scenario: not allowed with argument DIR"
    )


# With no scenario to read `settings.language` from, the market's language: Russian.


def test_folder_that_does_not_exist(scenario_dir: Path) -> None:
    result = leadbot_check("--scenario", "nope")

    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "nope:1:1: такой папки сценария нет\n",
        "1 ошибка в папке nope\n",
    )


def test_empty_folder(scenario_dir: Path) -> None:
    Path("empty").mkdir()
    (Path("empty") / "offers.yml").write_text("offers: {}\n", encoding="utf-8")

    result = leadbot_check("empty")

    assert (result.returncode, result.stdout.splitlines()) == (
        1,
        [
            "предупреждение: empty/offers.yml:1:1: этот файл не читается: бот читает только "
            "файлы с окончанием .yaml; переименуйте его в offers.yaml",
            "empty:1:1: в этой папке нет файлов *.yaml",
        ],
    )


def test_shipped_scenario_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check", "--scenario", "scenarios"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("scenarios: ошибок нет: 6 файлов, ")
