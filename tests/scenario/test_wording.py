"""What `leadbot check` says, in the scenario's language: Russian unless `settings.language`
is en. The same mistake, pinned word for word in both."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from bot.scenario.catalogue import CATALOGUE
from bot.scenario.loader import ScenarioError, load_scenario
from bot.scenario.wording import Say, language_of, plural
from tests.scenario.conftest import ENGLISH, RUSSIAN, Edit, leadbot_check


@pytest.mark.parametrize(
    ("old", "new", "english", "russian"),
    [
        (
            'title: "Чек-лист"',
            f'title: "{"к" * 41}"',
            "sc/funnel.yaml:33:12: offers.quick.title: "
            "button text is 41 characters, over the limit of 40",
            "sc/funnel.yaml:33:12: offers.quick.title: "
            "текст кнопки на 41 символ, больше предела в 40",
        ),
        (
            'text: "Внедрение от 30 000 ₽."',
            f'text: "{"ы" * 4098}"',
            "sc/funnel.yaml:63:11: faq[0].text: text is 4098 characters, over the limit of 4096",
            "sc/funnel.yaml:63:11: faq[0].text: текст на 4098 символов, больше предела в 4096",
        ),
        (
            "  policy_url: https://example.com/privacy\n",
            "",
            "sc/funnel.yaml:13:1: consent: missing required key 'policy_url'",
            "sc/funnel.yaml:13:1: consent: нет обязательного ключа 'policy_url'",
        ),
        (
            "{id: remind, after: 1d,",
            "{id: remind, after: 1d, at: 11:00,",
            "sc/funnel.yaml:51:37: sequences.audit_followup.steps[0].at: "
            'write times in quotes, like at: "11:00"',
            "sc/funnel.yaml:51:37: sequences.audit_followup.steps[0].at: "
            'время пишите в кавычках, например at: "11:00"',
        ),
        (
            "  email: {type: email,",
            "  email: {type: mail,",
            "sc/funnel.yaml:39:17: questions.email.type: "
            "should be 'name', 'phone', 'email', 'text', 'choice', 'scale', 'date' or 'slot'",
            "sc/funnel.yaml:39:17: questions.email.type: "
            "допустимо только 'name', 'phone', 'email', 'text', 'choice', 'scale', "
            "'date' или 'slot'",
        ),
        (
            "  nps: {type: scale,",
            "  nps: {type: choice,",
            "sc/funnel.yaml:47:3: questions.nps: a choice question needs options:",
            "sc/funnel.yaml:47:3: questions.nps: вопросу с выбором нужны варианты в options:",
        ),
        (
            "{id: remind,",
            "{id: напомнить,",
            "sc/funnel.yaml:51:14: sequences.audit_followup.steps[0].id: bad id 'напомнить': "
            "use 1-32 latin letters, digits or _ (no spaces)",
            "sc/funnel.yaml:51:14: sequences.audit_followup.steps[0].id: неподходящий id "
            "'напомнить': нужны 1–32 латинские буквы, цифры или _ (без пробелов)",
        ),
        (
            "      - tag: wants_audit",
            "      - tag: wants_audit\n      - case_rea",
            "sc/funnel.yaml:75:9: scoring.qualify.any[2]: unknown event 'case_rea'; "
            "did you mean 'case_read'?",
            "sc/funnel.yaml:75:9: scoring.qualify.any[2]: неизвестное событие 'case_rea'; "
            "может быть, 'case_read'?",
        ),
        (
            "    - offer: quick",
            "    - offer: webinar",
            "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'webinar' "
            "(known: audit, guide, quick)",
            "sc/funnel.yaml:11:14: start.buttons[2].offer: неизвестный оффер 'webinar' "
            "(есть: audit, guide, quick)",
        ),
        (
            "Спасибо, {name}!",
            "Спасибо, {phone}!",
            "sc/funnel.yaml:23:13: offers.audit.deliver.text: unknown placeholder {phone} "
            "(known: {first_name}, {name}, {referral_link}, {policy_url}, {promo.<id>})",
            "sc/funnel.yaml:23:13: offers.audit.deliver.text: неизвестная переменная {phone} "
            "(есть: {first_name}, {name}, {referral_link}, {policy_url}, {promo.<id>})",
        ),
        (
            "  policy_url: https://example.com/privacy",
            "  policy_url: [https://example.com/privacy",
            "sc/funnel.yaml:15:15: YAML syntax: a [ is not closed with ] or a comma is missing; "
            "quote texts that have a colon",
            "sc/funnel.yaml:15:15: ошибка в записи YAML: скобка [ не закрыта скобкой ] или не "
            "хватает запятой; текст с двоеточием возьмите в кавычки",
        ),
        (
            '{text: "Читать кейс", event: case_read, url: "https://example.com/case"}',
            '{text: "Читать кейс", event: case_read, url: "https://example.com/case"}\n'
            '          - {text: "Позвоните", handoff: true}',
            "sc/funnel.yaml:60:13: sequences.guide_warmup.steps[0].buttons[1]: the press is "
            "recorded as an event: give the button event: (like callback_requested)",
            "sc/funnel.yaml:60:13: sequences.guide_warmup.steps[0].buttons[1]: нажатие "
            "записывается как событие: дайте кнопке event: (например, callback_requested)",
        ),
    ],
    ids=[
        "button",
        "text",
        "missing-key",
        "time",
        "one-of",
        "validator",
        "id",
        "event",
        "offer",
        "placeholder",
        "yaml",
        "step-button",
    ],
)
def test_a_problem_in_both_languages(
    scenario_dir: Path, edit: Edit, old: str, new: str, english: str, russian: str
) -> None:
    edit(old, new)
    in_english = problems(scenario_dir)
    edit(ENGLISH, RUSSIAN)

    assert (in_english, problems(scenario_dir)) == ([english], [russian])


def problems(folder: Path) -> list[str]:
    with pytest.raises(ScenarioError) as refused:
        load_scenario(folder)
    return [str(problem) for problem in refused.value.problems]


def test_the_ok_line_and_a_warning_in_russian(scenario_dir: Path, edit: Edit) -> None:
    edit(ENGLISH, RUSSIAN)

    result = leadbot_check("sc")

    assert (result.returncode, result.stdout.splitlines(), result.stderr) == (
        0,
        [
            "предупреждение: sc/funnel.yaml:33:5: offers.quick: лид, который возьмёт этот "
            "оффер, не дойдёт до менеджеров: правило scoring.qualify не выполнится для лида, "
            "который взял только этот оффер, и на его пути нет handoff: true (ни в then: "
            "оффера, ни в кнопках его цепочек)",
            "sc: ошибок нет: 1 файл, 3 оффера, 5 вопросов, 2 цепочки (3 шага), 0 промокодов, "
            "1 ответ FAQ, 1 предупреждение",
        ],
        "",
    )


def test_the_problem_count_in_russian(scenario_dir: Path, edit: Edit) -> None:
    edit(ENGLISH, RUSSIAN)
    edit("    - offer: quick", "    - offer: quik")
    edit("ask: [email]", "ask: [emial]")

    result = leadbot_check("sc")

    assert (result.returncode, result.stderr) == (1, "2 ошибки в папке sc\n")


@pytest.mark.parametrize(
    ("number", "form"),
    [
        (0, "файлов"),
        (1, "файл"),
        (2, "файла"),
        (5, "файлов"),
        (11, "файлов"),
        (12, "файлов"),
        (21, "файл"),
        (22, "файла"),
        (111, "файлов"),
        (1001, "файл"),
    ],
)
def test_russian_nouns_agree_with_their_number(number: int, form: str) -> None:
    assert plural("ru", number, ["файл", "файла", "файлов"]) == form


def test_big_numbers_are_grouped_as_each_language_writes_them() -> None:
    big = Say("file.too_big", limit=1_000_000)
    assert big.render("en").startswith("the file is over 1,000,000 bytes")
    assert big.render("ru").startswith("файл больше 1\u00a0000\u00a0000 байт")


@pytest.mark.parametrize(
    ("written", "language"),
    [("ru", "ru"), ("en", "en"), ("EN", "en"), ("en-GB", "en"), ("uk", "ru"), (None, "ru")],
)
def test_english_only_for_an_english_scenario(written: object, language: str) -> None:
    assert language_of(written) == language


# The Russian line leaves out the folder: the position before it already names it.
LEFT_OUT = {"file.not_found": {"folder"}}


@pytest.mark.parametrize("key", sorted(CATALOGUE))
def test_both_languages_name_the_same_values(key: str) -> None:
    english, russian = CATALOGUE[key]

    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    assert fields(russian) == fields(english) - LEFT_OUT.get(key, set())
