"""`leadbot check` in one pass: a mistake in one file or section does not hide the others,
and does not bring false follow-on problems with it. Files the bot leaves unread are warned
about."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.scenario.loader import ScenarioError, load_scenario
from tests.scenario.conftest import ENGLISH, RUSSIAN, Edit, leadbot_check


def plant_five_mistakes(folder: Path, edit: Edit) -> None:
    """A YAML syntax error, an unknown key, a misspelt question id, a misspelt placeholder and
    a missing file, across three files."""
    (folder / "promos.yaml").write_text(
        "promos:\n\tfirst: {kind: personal, discount: 10%}\n", encoding="utf-8"
    )
    (folder / "more.yaml").write_text(
        "questions:\n"
        '  budget: {type: text, text: "Какой бюджет?", optinal: true}\n'
        "offers:\n"
        "  webinar:\n"
        '    title: "Вебинар"\n'
        '    deliver: {text: "Ссылка для {nmae}: https://example.com/webinar"}\n',
        encoding="utf-8",
    )
    edit("ask: [email]", "ask: [emial]")
    edit("file: files/guide.pdf", "file: files/gide.pdf")


@pytest.mark.parametrize(
    ("language", "expected", "count"),
    [
        (
            ENGLISH,
            [
                "sc/funnel.yaml:27:11: offers.guide.ask[0]: unknown question 'emial'; "
                "did you mean 'email'?",
                "sc/funnel.yaml:30:13: offers.guide.deliver.file: "
                "file 'files/gide.pdf' not found in sc",
                "sc/more.yaml:2:47: questions.budget.optinal: unknown key 'optinal'; "
                "did you mean 'optional'?",
                "sc/more.yaml:6:21: offers.webinar.deliver.text: unknown placeholder {nmae}; "
                "did you mean {name}?",
                "sc/promos.yaml:2:1: YAML syntax: a tab character; indent with spaces",
            ],
            "5 problem(s) in sc\n",
        ),
        (
            RUSSIAN,
            [
                "sc/funnel.yaml:27:11: offers.guide.ask[0]: неизвестный вопрос 'emial'; "
                "может быть, 'email'?",
                "sc/funnel.yaml:30:13: offers.guide.deliver.file: "
                "такой файл не найден: 'files/gide.pdf'",
                "sc/more.yaml:2:47: questions.budget.optinal: неизвестный ключ 'optinal'; "
                "может быть, 'optional'?",
                "sc/more.yaml:6:21: offers.webinar.deliver.text: неизвестная переменная "
                "{nmae}; может быть, {name}?",
                "sc/promos.yaml:2:1: ошибка в записи YAML: символ табуляции; "
                "отступы делайте пробелами",
            ],
            "5 ошибок в папке sc\n",
        ),
    ],
    ids=["en", "ru"],
)
def test_five_mistakes_in_three_files_come_out_in_one_run(
    scenario_dir: Path, edit: Edit, language: str, expected: list[str], count: str
) -> None:
    edit(ENGLISH, language)
    plant_five_mistakes(scenario_dir, edit)

    result = leadbot_check("--scenario", "sc")

    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (1, expected, count)


# ---- no false follow-on problems ----


def problems(folder: Path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(folder)
    return [str(problem) for problem in caught.value.problems]


def test_an_offer_that_fails_the_schema_is_still_known_by_its_id(
    scenario_dir: Path, edit: Edit
) -> None:
    edit('    title: "Чек-лист"', '    titel: "Чек-лист"')  # start.buttons opens it
    edit("Спасибо, {name}!", "Спасибо, {nme}!")  # another offer's own mistake is still found

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:23:13: offers.audit.deliver.text: unknown placeholder {nme}; "
        "did you mean {name}?",
        "sc/funnel.yaml:32:3: offers.quick: missing required key 'title'",
        "sc/funnel.yaml:33:5: offers.quick.titel: unknown key 'titel'; did you mean 'title'?",
    ]


def test_events_recorded_by_a_sequence_that_fails_the_schema_are_known(
    scenario_dir: Path, edit: Edit
) -> None:
    # case_read is recorded by a button of guide_warmup, and scored under scoring.events.
    edit("{id: nps, after: 7d,", "{id: nps, after: soon,")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:60:26: sequences.guide_warmup.steps[1].after: bad duration 'soon': "
        "use a whole number and a unit m, h, d or w (30m, 1h, 2d, 1w)"
    ]


def test_sections_of_a_file_that_is_not_yaml_count_as_written(scenario_dir: Path) -> None:
    """The consent, the offers and the scoring here may be in the broken file: none of them
    is reported missing, and no reference into them is unknown."""
    main = scenario_dir / "funnel.yaml"
    text = main.read_text(encoding="utf-8")
    broken, rest = text.split("consent:\n", 1)[0], "consent:\n" + text.split("consent:\n", 1)[1]
    questions = rest.index("questions:\n")
    (scenario_dir / "a_offers.yaml").write_text(rest[:questions] + "\tx: 1\n", encoding="utf-8")
    main.write_text(broken + rest[questions:].replace("{name}, получилось", "{nmae}, получилось"))

    assert problems(scenario_dir) == [
        "sc/a_offers.yaml:24:1: YAML syntax: a tab character; indent with spaces",
        "sc/funnel.yaml:34:15: sequences.guide_warmup.steps[0].text: unknown placeholder "
        "{nmae}; did you mean {name}?",
    ]


def test_a_faq_entry_that_fails_leaves_the_others_checked_where_they_are(
    scenario_dir: Path,
) -> None:
    (scenario_dir / "faq.yaml").write_text(
        "faq:\n"
        '  - {match: "цена", text: "Смотрите", buttons: [{offer: audit, text: "Аудит"}]}\n'
        '  - {match: "сроки", text: "Две недели, {nme}"}\n',
        encoding="utf-8",
    )

    assert problems(scenario_dir) == [
        "sc/faq.yaml:2:49: faq[0].buttons[0]: "
        "an offer: button shows the offer's title; give it no text: or url:",
        "sc/faq.yaml:3:28: faq[1].text: unknown placeholder {nme}; did you mean {name}?",
    ]


def test_a_misspelt_section_hides_no_more_than_itself(scenario_dir: Path, edit: Edit) -> None:
    edit("offers:\n", "ofers:\n")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:1:1: offers: missing required section",
        "sc/funnel.yaml:17:1: ofers: unknown key 'ofers'; did you mean 'offers'?",
    ]


# ---- the language of the messages ----


def test_the_language_is_read_from_settings_that_fail_the_schema(
    scenario_dir: Path, edit: Edit
) -> None:
    edit("timezone: Europe/Moscow", "timezone: Europe/Moskow")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:4:13: settings.timezone: unknown time zone 'Europe/Moskow': "
        "use a name like Europe/Moscow"
    ]


def test_the_language_is_glimpsed_in_a_main_file_that_is_not_yaml(
    scenario_dir: Path, edit: Edit
) -> None:
    edit("ask: [email]", "ask: [email")

    [problem] = problems(scenario_dir)
    assert problem.startswith("sc/funnel.yaml:27:10: YAML syntax: a [ is not closed")


def test_without_a_readable_language_the_messages_are_russian(
    scenario_dir: Path, edit: Edit
) -> None:
    edit(ENGLISH, "")
    edit("ask: [email]", "ask: [email")

    [problem] = problems(scenario_dir)
    assert problem.startswith("sc/funnel.yaml:26:10: ошибка в записи YAML: скобка [ не закрыта")


# ---- files the bot does not read ----


def warnings(folder: Path) -> list[str]:
    return [str(warning) for warning in load_scenario(folder).warnings]


def test_files_that_are_not_read_are_warned_about(scenario_dir: Path, edit: Edit) -> None:
    edit(ENGLISH, RUSSIAN)
    edit('      text: "Держите чек-лист: https://example.com/checklist"', '      text: "Чек-лист"')
    edit('    title: "Чек-лист"', '    title: "Чек-лист"\n    then: {handoff: true}')
    for name in ("promos.yml", "faq.YAML", "funnel.yaml~", "notes.txt", "price.pdf"):
        (scenario_dir / name).write_text("promos: {}\n", encoding="utf-8")
    (scenario_dir / "old").mkdir()
    (scenario_dir / "old" / "offers.yaml").write_text("offers: {}\n", encoding="utf-8")
    (scenario_dir / ".funnel.yaml.swp").write_text("", encoding="utf-8")  # an editor's, hidden
    (scenario_dir / "files" / "unused.pdf").write_text("", encoding="utf-8")  # may be sent later

    assert warnings(scenario_dir) == [
        "sc/faq.YAML:1:1: этот файл не читается: бот читает только файлы с окончанием .yaml; "
        "переименуйте его в faq.yaml",
        "sc/funnel.yaml~:1:1: этот файл не читается: бот читает только файлы с окончанием "
        ".yaml; если это резервная копия, уберите её из папки",
        "sc/notes.txt:1:1: этот файл не читается и не отправляется: сценарий — это файлы "
        "*.yaml, и ни один file: его не называет",
        "sc/old/offers.yaml:1:1: этот файл не читается: бот читает только файлы *.yaml прямо "
        "в папке sc, а не во вложенных папках",
        "sc/price.pdf:1:1: этот файл не читается и не отправляется: сценарий — это файлы "
        "*.yaml, и ни один file: его не называет",
        "sc/promos.yml:1:1: этот файл не читается: бот читает только файлы с окончанием "
        ".yaml; переименуйте его в promos.yaml",
    ]
    edit("file: files/guide.pdf", "file: price.pdf")  # a file the scenario sends is in use
    assert [w.split(":")[0] for w in warnings(scenario_dir)] == [
        "sc/faq.YAML",
        "sc/funnel.yaml~",
        "sc/notes.txt",
        "sc/old/offers.yaml",
        "sc/promos.yml",
    ]


def test_a_yml_file_is_warned_about_beside_the_problems_it_explains(
    scenario_dir: Path, edit: Edit
) -> None:
    (scenario_dir / "webinar.yml").write_text(
        'offers:\n  webinar: {title: "Вебинар", deliver: {text: "Ссылка"}}\n', encoding="utf-8"
    )
    edit("    - offer: quick", "    - offer: webinar")
    edit('    title: "Чек-лист"', '    title: "Чек-лист"\n    then: {handoff: true}')

    result = leadbot_check("sc")

    assert result.stdout.splitlines() == [
        "warning: sc/webinar.yml:1:1: not read: only files ending in .yaml are; "
        "rename it to webinar.yaml",
        "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'webinar' "
        "(known: audit, guide, quick)",
    ]
