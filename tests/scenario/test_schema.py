"""What marketers read when a scenario is wrong: every problem's exact `file:line:column: text`.

Each test copies tests/fixtures/funnel to `sc/` (see conftest.py), breaks one thing and pins
the full list of problems, so a reworded or misplaced message shows up here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from bot.scenario import source
from bot.scenario.conditions import (
    AllRule,
    AnswerRule,
    AnyRule,
    Comparison,
    EventCount,
    EventRule,
    Rule,
    ScoreRule,
    TagRule,
)
from bot.scenario.loader import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
Edit = Callable[[str, str], None]
RULE = TypeAdapter(Rule)


def problems(folder: Path) -> list[str]:
    """Every problem the loader reports, as `file:line:column: message`, in its order."""
    with pytest.raises(ScenarioError) as caught:
        load_scenario(folder)
    return [str(problem) for problem in caught.value.problems]


# ---- what loads ----


def test_fixture_scenario_loads(scenario_dir: Path) -> None:
    loaded = load_scenario(scenario_dir)

    assert loaded.files == (scenario_dir / "funnel.yaml",)
    assert list(loaded.scenario.offers) == ["audit", "guide", "quick"]
    assert loaded.scenario.sequences["guide_warmup"].steps[1].ask == "nps"


def test_shipped_scenario_passes() -> None:
    loaded = load_scenario(ROOT / "scenarios")

    assert loaded.scenario.offers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pricing_viewed >= 3", EventRule(event=EventCount(name="pricing_viewed", count=3))),
        ("case_read", EventRule(event=EventCount(name="case_read", op=">=", count=1))),
        (
            {"tag": "wants_audit", "score": ">= 10"},
            AllRule(
                all=[
                    TagRule(tag="wants_audit"),
                    ScoreRule(score=Comparison(op=">=", number=10)),
                ]
            ),
        ),
        (
            {"answer": {"nps": ">= 9"}},
            AnswerRule.model_validate({"answer": {"nps": {"compare": {"op": ">=", "number": 9}}}}),
        ),
        ({"score": 60}, ScoreRule(score=Comparison(op=">=", number=60))),
    ],
    ids=["event-count", "event-name", "two-keys-mean-all", "answer-compare", "bare-number"],
)
def test_rules_parse(text: object, expected: object) -> None:
    assert RULE.validate_python(text) == expected


def test_answer_rule_without_operator_compares_text() -> None:
    rule = RULE.validate_python({"answer": {"company_size": "до 10"}})

    assert isinstance(rule, AnswerRule)
    assert rule.answer["company_size"].equals == "до 10"
    assert rule.answer["company_size"].compare is None


def test_rules_in_a_scenario_parse(scenario_dir: Path, edit: Edit) -> None:
    edit(
        "      - tag: wants_audit",
        '      - tag: wants_audit\n      - all: [case_read, "contact_shared >= 2"]',
    )

    qualify = load_scenario(scenario_dir).scenario.scoring.qualify

    assert isinstance(qualify, AnyRule)
    assert qualify.any[2] == AllRule(
        all=[
            EventRule(event=EventCount(name="case_read")),
            EventRule(event=EventCount(name="contact_shared", count=2)),
        ]
    )


def test_anchors_and_merge_keys_work(scenario_dir: Path, edit: Edit) -> None:
    edit("  email: {type: email,", "  email: &email {type: email,")
    edit(
        '  nps: {type: scale, text: "Оцените от 0 до 10"}',
        '  nps: {type: scale, text: "Оцените от 0 до 10"}\n'
        '  work_email: {<<: *email, text: "Рабочий e-mail"}\n'
        "  email_again: *email",
    )
    edit('      text: "Ваш гайд, {name}."', '      text: &thanks "Ваш гайд, {name}."')
    edit('      text: "Держите чек-лист: https://example.com/checklist"', "      text: *thanks")

    scenario = load_scenario(scenario_dir).scenario

    # A key written next to `<<:` overrides the merged one; that is not a duplicate key.
    assert scenario.questions["work_email"].type == "email"
    assert scenario.questions["work_email"].text == "Рабочий e-mail"
    assert scenario.questions["email_again"] == scenario.questions["email"]
    assert scenario.offers["quick"].deliver.text == "Ваш гайд, {name}."


def test_a_mistake_behind_an_anchor_is_reported_where_it_was_written(
    scenario_dir: Path, edit: Edit
) -> None:
    edit("  email: {type: email,", "  email: &email {type: mail,")
    edit(
        '  nps: {type: scale, text: "Оцените от 0 до 10"}',
        '  nps: {type: scale, text: "Оцените от 0 до 10"}\n'
        '  work_email: {<<: *email, text: "Рабочий e-mail"}',
    )

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:39:24: questions.email.type: "
        "should be 'name', 'phone', 'email', 'text', 'choice', 'scale', 'date' or 'slot'",
        "sc/funnel.yaml:39:24: questions.work_email.type: "
        "should be 'name', 'phone', 'email', 'text', 'choice', 'scale', 'date' or 'slot'",
    ]


# ---- the schema ----


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '  marketing: "Присылать',
            '  marketin: "Присылать',
            "sc/funnel.yaml:16:3: consent.marketin: unknown key 'marketin'; "
            "did you mean 'marketing'?",
        ),
        (
            "{id: remind, after: 1d,",
            "{id: remind, afer: 1d,",
            "sc/funnel.yaml:51:22: sequences.audit_followup.steps[0].afer: unknown key 'afer'; "
            "did you mean 'after'?",
        ),
        (
            "faq:\n",
            "faqs:\n",
            "sc/funnel.yaml:61:1: faqs: unknown key 'faqs'; did you mean 'faq'?",
        ),
        (
            "version: 1\n",
            "version: 1\ncolor: red\n",
            "sc/funnel.yaml:2:1: color: unknown key 'color'",
        ),
    ],
    ids=["nested", "in-a-list-in-a-sequence", "section", "nothing-close"],
)
def test_unknown_key_names_the_closest_known_one(
    scenario_dir: Path, edit: Edit, old: str, new: str, expected: str
) -> None:
    edit(old, new)

    assert problems(scenario_dir) == [expected]


def test_offer_button_takes_no_label(scenario_dir: Path, edit: Edit) -> None:
    edit("buttons: [{offer: audit}]", 'buttons: [{offer: audit, text: "Аудит"}]')

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:64:15: faq[0].buttons[0]: "
        "an offer: button shows the offer's title; give it no text: or url:"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("ask: [email]", "ask: email", "sc/funnel.yaml:27:10: offers.guide.ask: expected a list"),
        (
            'title: "Чек-лист"',
            'title: ["Чек-лист"]',
            "sc/funnel.yaml:33:12: offers.quick.title: expected text",
        ),
        (
            "then: {score: 40,",
            "then: {score: lots,",
            "sc/funnel.yaml:24:19: offers.audit.then.score: expected a whole number",
        ),
        (
            "then: {score: 10, start: guide_warmup}",
            "then: guide_warmup",
            "sc/funnel.yaml:31:11: offers.guide.then: expected a mapping of key: value lines",
        ),
    ],
    ids=["text-for-list", "list-for-text", "text-for-number", "text-for-mapping"],
)
def test_wrong_type(scenario_dir: Path, edit: Edit, old: str, new: str, expected: str) -> None:
    edit(old, new)

    assert problems(scenario_dir) == [expected]


def test_missing_required_key_points_at_its_owner(scenario_dir: Path, edit: Edit) -> None:
    edit('    deliver:\n      text: "Держите чек-лист: https://example.com/checklist"\n', "")
    edit("  policy_url: https://example.com/privacy\n", "")
    edit("{id: remind, after: 1d,", "{after: 1d,")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:13:1: consent: missing required key 'policy_url'",
        "sc/funnel.yaml:31:3: offers.quick: missing required key 'deliver'",
        "sc/funnel.yaml:48:9: sequences.audit_followup.steps[0]: missing required key 'id'",
    ]


def test_missing_section(scenario_dir: Path, edit: Edit) -> None:
    edit("version: 1\n", "")

    assert problems(scenario_dir) == ["sc/funnel.yaml:1:1: version: missing required section"]


def test_wrong_version(scenario_dir: Path, edit: Edit) -> None:
    edit("version: 1", "version: 2")

    assert problems(scenario_dir) == ["sc/funnel.yaml:1:10: version: should be 1"]


def test_bad_duration(scenario_dir: Path, edit: Edit) -> None:
    edit("{id: remind, after: 1d,", '{id: remind, after: "3 days",')

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:51:29: sequences.audit_followup.steps[0].after: bad duration '3 days': "
        "use a whole number and a unit m, h, d or w (30m, 1h, 2d, 1w)"
    ]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # YAML reads an unquoted 11:00 as the number 660 (minutes in base 60).
        ("11:00", 'write times in quotes, like at: "11:00"'),
        ('"25:00"', "bad time '25:00': use HH:MM, like \"11:00\""),
    ],
    ids=["unquoted", "no-such-hour"],
)
def test_bad_time(scenario_dir: Path, edit: Edit, at: str, expected: str) -> None:
    edit("{id: remind, after: 1d,", f"{{id: remind, after: 1d, at: {at},")

    assert problems(scenario_dir) == [
        f"sc/funnel.yaml:51:37: sequences.audit_followup.steps[0].at: {expected}"
    ]


@pytest.mark.parametrize("value", ["21-10", "21:00 to 10:00", "21:00-24:00"])
def test_bad_quiet_hours(scenario_dir: Path, edit: Edit, value: str) -> None:
    edit('"21:00-10:00"', f'"{value}"')

    assert problems(scenario_dir) == [
        f"sc/funnel.yaml:5:16: settings.quiet_hours: bad quiet hours {value!r}: "
        'use "HH:MM-HH:MM" in quotes, like "21:00-10:00"'
    ]


def test_unknown_time_zone(scenario_dir: Path, edit: Edit) -> None:
    edit("timezone: Europe/Moscow", "timezone: Europe/Moskow")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:4:13: settings.timezone: unknown time zone 'Europe/Moskow': "
        "use a name like Europe/Moscow"
    ]


def test_choice_question_without_options(scenario_dir: Path, edit: Edit) -> None:
    edit("  nps: {type: scale,", "  nps: {type: choice,")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:47:3: questions.nps: a choice question needs options:"
    ]


def test_invalid_rule(scenario_dir: Path, edit: Edit) -> None:
    edit("      - tag: wants_audit", "      - {blah: 1}")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:74:9: scoring.qualify.any[1]: unknown rule 'blah': a rule is one of "
        "any, all, not, score, tag, stage, event, answer, contact, source, offer, rfm, "
        'purchases, revenue, last_purchase, or an event name like "case_read" or '
        '"pricing_viewed >= 3"'
    ]


def test_bad_comparison(scenario_dir: Path, edit: Edit) -> None:
    edit('score: ">= 60"', 'score: "abc"')

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:73:16: scoring.qualify.any[0].score: bad comparison 'abc': "
        'use an operator and a number, like ">= 60"'
    ]


@pytest.mark.parametrize("bad_id", ["quick list", "быстро"], ids=["space", "cyrillic"])
def test_bad_offer_id(scenario_dir: Path, edit: Edit, bad_id: str) -> None:
    edit("  quick:\n", f"  {bad_id}:\n")
    edit("- offer: quick", f"- offer: {bad_id}")
    hint = f"bad id {bad_id!r}: use 1-32 latin letters, digits or _ (no spaces)"

    assert problems(scenario_dir) == [
        f"sc/funnel.yaml:11:14: start.buttons[2].offer: {hint}",
        f"sc/funnel.yaml:32:3: offers.{bad_id}: {hint}",
    ]


def test_bad_step_id(scenario_dir: Path, edit: Edit) -> None:
    edit("{id: remind,", "{id: напомнить,")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:51:14: sequences.audit_followup.steps[0].id: bad id 'напомнить': "
        "use 1-32 latin letters, digits or _ (no spaces)"
    ]


# ---- references between sections ----


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    - offer: quick",
            "    - offer: quik",
            "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'quik'; "
            "did you mean 'quick'?",
        ),
        (
            "    - offer: quick",
            "    - offer: webinar",
            "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'webinar' "
            "(known: audit, guide, quick)",
        ),
        (
            "ask: [email]",
            "ask: [emial]",
            "sc/funnel.yaml:27:11: offers.guide.ask[0]: unknown question 'emial'; "
            "did you mean 'email'?",
        ),
        (
            "start: guide_warmup}",
            "start: guide_warmu}",
            "sc/funnel.yaml:31:30: offers.guide.then.start: unknown sequence 'guide_warmu'; "
            "did you mean 'guide_warmup'?",
        ),
        (
            "{id: remind, after: 1d,",
            "{id: remind, promo: first_purchase, after: 1d,",
            "sc/funnel.yaml:51:29: sequences.audit_followup.steps[0].promo: "
            "unknown promo 'first_purchase'",
        ),
        (
            "      - tag: wants_audit",
            "      - tag: wants_audit\n      - case_rea",
            "sc/funnel.yaml:75:9: scoring.qualify.any[2]: unknown event 'case_rea'; "
            "did you mean 'case_read'?",
        ),
        (
            "stop_on: [qualified, purchase]",
            "stop_on: [qualified, purchse]",
            "sc/funnel.yaml:53:26: sequences.guide_warmup.stop_on[1]: "
            "unknown stage or event 'purchse'; did you mean 'purchase'?",
        ),
    ],
    ids=[
        "offer-typo",
        "offer",
        "question",
        "sequence",
        "promo",
        "event-in-qualify",
        "stop-on",
    ],
)
def test_unknown_reference(
    scenario_dir: Path, edit: Edit, old: str, new: str, expected: str
) -> None:
    edit(old, new)

    assert problems(scenario_dir) == [expected]


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (
            '["сколько стоит", "!!!", "стоимость"]',
            "sc/funnel.yaml:62:30: faq[0].match[1]: this phrase has no words to match",
        ),
        ('"—"', "sc/funnel.yaml:62:12: faq[0].match[0]: this phrase has no words to match"),
    ],
    ids=["in-a-list", "alone"],
)
def test_faq_phrase_without_words_can_never_match(
    scenario_dir: Path, edit: Edit, new: str, expected: str
) -> None:
    edit('["сколько стоит", "цена", "стоимость"]', new)

    assert problems(scenario_dir) == [expected]


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("{nme}", "unknown placeholder {nme}; did you mean {name}?"),
        ("{promo.nope}", "unknown placeholder {promo.nope}: no promo 'nope' in promos:"),
        (
            "{phone}",
            "unknown placeholder {phone} "
            "(known: {first_name}, {name}, {referral_link}, {policy_url}, {promo.<id>})",
        ),
    ],
)
def test_unknown_placeholder(
    scenario_dir: Path, edit: Edit, placeholder: str, expected: str
) -> None:
    edit("Спасибо, {name}!", f"Спасибо, {placeholder}!")

    assert problems(scenario_dir) == [
        f"sc/funnel.yaml:23:13: offers.audit.deliver.text: {expected}"
    ]


def test_promo_placeholder_with_a_wrong_part(scenario_dir: Path, edit: Edit) -> None:
    (scenario_dir / "promos.yaml").write_text(
        "promos:\n  first_purchase: {kind: personal, prefix: START, discount: 10%, valid: 14d}\n",
        encoding="utf-8",
    )
    edit("Спасибо, {name}!", "Спасибо, {promo.first_purchase.until}!")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:23:13: offers.audit.deliver.text: unknown placeholder "
        "{promo.first_purchase.until}: "
        "use {promo.first_purchase} or {promo.first_purchase.expires}"
    ]


def test_literal_braces_are_not_placeholders(scenario_dir: Path, edit: Edit) -> None:
    edit("Спасибо, {name}!", "Спасибо, {{name}}!")

    load_scenario(scenario_dir)


# ---- several files ----


def test_duplicate_id_across_files_names_both_places(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text(
        'offers:\n  guide:\n    title: "Другой гайд"\n    deliver: {text: "Держите"}\n',
        encoding="utf-8",
    )

    assert problems(scenario_dir) == [
        "sc/more.yaml:2:3: offers.guide: duplicate id, also defined at sc/funnel.yaml:25:3"
    ]


def test_ids_from_several_files_merge(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text(
        'offers:\n  webinar:\n    title: "Вебинар"\n    deliver: {text: "Ссылка"}\n'
        'faq:\n  - {match: "вебинар", text: "Раз в месяц", buttons: [{offer: webinar}]}\n',
        encoding="utf-8",
    )

    scenario = load_scenario(scenario_dir).scenario

    assert list(scenario.offers) == ["audit", "guide", "quick", "webinar"]
    assert [entry.text for entry in scenario.faq] == ["Внедрение от 30 000 ₽.", "Раз в месяц"]


def test_section_repeated_in_two_files(scenario_dir: Path) -> None:
    (scenario_dir / "more.yaml").write_text(
        'consent:\n  text: "Согласны?"\n  policy_url: https://example.com\n', encoding="utf-8"
    )

    assert problems(scenario_dir) == [
        "sc/more.yaml:1:1: consent: this section is already in sc/funnel.yaml:13:1; "
        "keep it in one file"
    ]


def test_problem_in_a_second_file_points_into_it(scenario_dir: Path) -> None:
    (scenario_dir / "faq.yaml").write_text(
        'faq:\n  - match: "цена"\n    text: "Смотрите {prise}"\n', encoding="utf-8"
    )

    assert problems(scenario_dir) == [
        # files merge in name order, so faq.yaml's entry comes first
        "sc/faq.yaml:3:11: faq[0].text: unknown placeholder {prise} "
        "(known: {first_name}, {name}, {referral_link}, {policy_url}, {promo.<id>})"
    ]


# ---- inside one file ----


def test_duplicate_step_id(scenario_dir: Path, edit: Edit) -> None:
    edit("- {id: nps, after: 7d", "- {id: check_in, after: 7d")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:60:14: sequences.guide_warmup.steps[1].id: "
        "duplicate step id 'check_in' (also step 1)"
    ]


def test_duplicate_key_in_one_mapping(scenario_dir: Path, edit: Edit) -> None:
    edit('  marketing: "Присылать', '  text: "Ещё раз"\n  marketing: "Присылать')

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:16:3: consent.text: this key is already given at line 14; keep one"
    ]


def test_key_that_is_not_a_word(scenario_dir: Path, edit: Edit) -> None:
    edit('  marketing: "Присылать', '  [a, b]: 1\n  marketing: "Присылать')

    assert problems(scenario_dir) == ["sc/funnel.yaml:16:3: consent: keys must be plain words"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  policy_url: https://example.com/privacy",
            "  policy_url: [https://example.com/privacy",
            # noticed on the next line; reported where the [ was opened
            "sc/funnel.yaml:15:15: YAML syntax: a [ is not closed with ] or a comma is missing; "
            "quote texts that have a colon",
        ),
        (
            "  policy_url: https://example.com/privacy",
            " policy_url: https://example.com/privacy",
            "sc/funnel.yaml:15:2: YAML syntax: the indentation does not match the lines above",
        ),
        (
            "  policy_url: https://example.com/privacy",
            "\tpolicy_url: https://example.com/privacy",
            "sc/funnel.yaml:15:1: YAML syntax: a tab character; indent with spaces",
        ),
        (
            '    title: "Чек-лист"',
            "    title: Чек-лист: 10 шагов",
            "sc/funnel.yaml:33:20: YAML syntax: a colon inside a text "
            '(put the text in quotes, like text: "Важно: ...") or a key indented too far',
        ),
        (
            'text: "Оцените нас", ask: nps}',
            "text: Внимание: скидка, ask: nps}",
            "sc/funnel.yaml:60:44: YAML syntax: a { is not closed with } or a comma is missing; "
            "quote texts that have a colon",
        ),
        (
            "      - tag: wants_audit",
            '      - tag: "wants_audit',
            # the end of the file is where it is noticed; the quote is where it is
            "sc/funnel.yaml:74:14: YAML syntax: a quote is not closed",
        ),
        (
            '    pitch: "Разберём ваши процессы за час."',
            "    pitch: Разберём ваши процессы\nза час.",
            # noticed at the next key; reported at the line that lacks the colon
            "sc/funnel.yaml:21:1: YAML syntax: "
            "this line is not key: value; if it goes on with a text, indent it under the key",
        ),
        (
            "  policy_url: https://example.com/privacy",
            "  policy_url: @example",
            "sc/funnel.yaml:15:15: YAML syntax: "
            "a text cannot start with '@'; put the text in quotes",
        ),
        (
            "  email: {type: email,",
            "  email: {<<: *contact, type: email,",
            "sc/funnel.yaml:39:15: YAML syntax: *contact refers to no &contact anchor above it",
        ),
    ],
    ids=[
        "unclosed-bracket",
        "indentation",
        "tab",
        "colon-in-text",
        "colon-in-flow-mapping",
        "unclosed-quote",
        "line-without-colon",
        "reserved-character",
        "undefined-anchor",
    ],
)
def test_yaml_syntax_error_position(
    scenario_dir: Path, edit: Edit, old: str, new: str, expected: str
) -> None:
    edit(old, new)

    assert problems(scenario_dir) == [expected]


def test_file_that_is_not_a_mapping(scenario_dir: Path) -> None:
    (scenario_dir / "notes.yaml").write_text("- one\n- two\n", encoding="utf-8")

    assert problems(scenario_dir) == [
        "sc/notes.yaml:1:1: a scenario file holds sections "
        "(version:, start:, offers:, ...), not a list or a text"
    ]


def test_empty_file_adds_nothing(scenario_dir: Path) -> None:
    (scenario_dir / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")

    assert len(load_scenario(scenario_dir).files) == 2


# ---- texts and files ----


def test_text_over_4096_characters(scenario_dir: Path, edit: Edit) -> None:
    edit('text: "Внедрение от 30 000 ₽."', f'text: "{"ы" * 4097}"')

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:63:11: faq[0].text: text is 4097 characters, over the limit of 4096"
    ]


def test_text_of_4096_characters_fits(scenario_dir: Path, edit: Edit) -> None:
    edit('text: "Внедрение от 30 000 ₽."', f'text: "{"ы" * 4096}"')

    load_scenario(scenario_dir)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (
            '{text: "Читать кейс"',
            '{text: "{label}"',
            "59:20: sequences.guide_warmup.steps[0].buttons[0].text",
        ),
        ('title: "Чек-лист"', 'title: "{label}"', "33:12: offers.quick.title"),
        ('{text: "Сайт"', '{text: "{label}"', "12:14: start.buttons[3].text"),
        ('button: "Отправить номер"', 'button: "{label}"', "38:65: questions.phone.button"),
    ],
    ids=["step-button", "offer-title", "menu-link", "share-contact"],
)
def test_button_text_over_40_characters(
    scenario_dir: Path, edit: Edit, old: str, new: str, where: str
) -> None:
    edit(old, new.replace("{label}", "к" * 41))

    assert problems(scenario_dir) == [
        f"sc/funnel.yaml:{where}: button text is 41 characters, over the limit of 40"
    ]


def test_button_text_of_40_characters_fits(scenario_dir: Path, edit: Edit) -> None:
    edit('title: "Чек-лист"', f'title: "{"к" * 40}"')

    load_scenario(scenario_dir)


def test_missing_deliver_file(scenario_dir: Path, edit: Edit) -> None:
    edit("file: files/guide.pdf", "file: files/gide.pdf")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:30:13: offers.guide.deliver.file: file 'files/gide.pdf' not found in sc"
    ]


def test_file_outside_the_folder(scenario_dir: Path, edit: Edit) -> None:
    Path("x.pdf").write_bytes(b"%PDF-1.4\n")  # it exists, but beside the scenario folder
    edit("file: files/guide.pdf", "file: ../x.pdf")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:30:13: offers.guide.deliver.file: "
        "file '../x.pdf' is outside the scenario folder"
    ]


# ---- the whole run ----


def test_all_problems_are_reported_at_once_sorted_by_file_and_line(scenario_dir: Path) -> None:
    (scenario_dir / "funnel.yaml").write_text(
        (scenario_dir / "funnel.yaml")
        .read_text(encoding="utf-8")
        .replace('  quiet_hours: "21:00-10:00"', '  quiet_hours: "21-10"')
        .replace('  marketing: "Присылать', '  marketin: "Присылать')
        .replace("{id: remind, after: 1d,", "{id: remind, after: 3days,"),
        encoding="utf-8",
    )
    (scenario_dir / "a_promos.yaml").write_text(
        "promos:\n  webinar: {kind: shared, discount: 15%}\n", encoding="utf-8"
    )

    assert problems(scenario_dir) == [
        "sc/a_promos.yaml:2:3: promos.webinar: "
        "a shared promo needs code: (the one code everybody types)",
        "sc/funnel.yaml:5:16: settings.quiet_hours: bad quiet hours '21-10': "
        'use "HH:MM-HH:MM" in quotes, like "21:00-10:00"',
        "sc/funnel.yaml:16:3: consent.marketin: unknown key 'marketin'; did you mean 'marketing'?",
        "sc/funnel.yaml:51:29: sequences.audit_followup.steps[0].after: "
        "bad duration '3days': use a whole number and a unit m, h, d or w (30m, 1h, 2d, 1w)",
    ]


def test_all_reference_problems_are_reported_at_once(scenario_dir: Path, edit: Edit) -> None:
    edit("    - offer: quick", "    - offer: quik")
    edit("Спасибо, {name}!", "Спасибо, {nme}!")
    edit("file: files/guide.pdf", "file: files/gide.pdf")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:11:14: start.buttons[2].offer: unknown offer 'quik'; "
        "did you mean 'quick'?",
        "sc/funnel.yaml:23:13: offers.audit.deliver.text: unknown placeholder {nme}; "
        "did you mean {name}?",
        "sc/funnel.yaml:30:13: offers.guide.deliver.file: file 'files/gide.pdf' not found in sc",
    ]


def test_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("sc").mkdir()
    (tmp_path / "sc" / "notes.txt").write_text("not a scenario", encoding="utf-8")

    assert problems(Path("sc")) == ["sc:1:1: в этой папке нет файлов *.yaml"]


def test_folder_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert problems(Path("nope")) == ["nope:1:1: такой папки сценария нет"]


def test_files_outside_the_working_directory_show_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario_dir: Path, edit: Edit
) -> None:
    edit("version: 1", "version: 2")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    shown = (tmp_path / "sc" / "funnel.yaml").resolve()
    assert problems(tmp_path / "sc") == [f"{shown}:1:10: version: should be 1"]


def test_codes_and_the_referral_link_work_in_an_immediate_reply_given_a_programme(
    scenario_dir: Path, edit: Edit
) -> None:
    (scenario_dir / "promos.yaml").write_text(
        "promos:\n  first_purchase: {kind: personal, prefix: START, discount: 10%, valid: 14d}\n",
        encoding="utf-8",
    )
    edit(
        "Напоминаем об аудите", "Ваш код {promo.first_purchase} до {promo.first_purchase.expires}"
    )
    edit(
        "Спасибо, {name}!",
        "Спасибо! Код {promo.first_purchase} до {promo.first_purchase.expires}, "
        "ссылка для друзей: {referral_link}",
    )

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:23:13: offers.audit.deliver.text: {referral_link} needs the referral "
        "programme: add referral:"
    ]

    (scenario_dir / "referral.yaml").write_text("referral: {max_rewards: 3}\n", encoding="utf-8")
    load_scenario(scenario_dir)  # no error now


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'button: "Отправить номер"',
            'button: "Номер, {first_name}"',
            "sc/funnel.yaml:38:65: questions.phone.button: {first_name}: this text is sent as "
            "written, without placeholders",
        ),
        (
            "consent:\n",
            'messages:\n  error: "Простите, {first_name}"\nconsent:\n',
            "sc/funnel.yaml:14:10: messages.error: {first_name}: this text is sent as written, "
            "without placeholders",
        ),
    ],
)
def test_texts_sent_as_written_take_no_placeholders(
    scenario_dir: Path, edit: Edit, old: str, new: str, expected: str
) -> None:
    edit(old, new)

    assert problems(scenario_dir) == [expected]


def test_points_for_an_event_that_never_happens_are_a_typo(scenario_dir: Path, edit: Edit) -> None:
    edit("case_read: 10", "case_raed: 10")

    assert problems(scenario_dir) == [
        "sc/funnel.yaml:67:16: scoring.events.case_raed: unknown event 'case_raed'; did you mean "
        "'case_read'? (events from outside the chat are declared under events:)"
    ]


@pytest.mark.parametrize(
    ("written", "op", "number"),
    [(60, ">=", 60.0), ('"60"', ">=", 60.0), ('"> 60"', ">", 60.0), ('"== 60"', "==", 60.0)],
)
def test_a_bare_score_means_at_least(
    scenario_dir: Path, edit: Edit, written: object, op: str, number: float
) -> None:
    edit('score: ">= 60"', f"score: {written}")

    rule = load_scenario(scenario_dir).scenario.scoring.qualify
    assert isinstance(rule, AnyRule)
    assert rule.any[0] == ScoreRule(score=Comparison(op=op, number=number))


def test_a_referral_reward_waits_for_a_funnel_stage(scenario_dir: Path) -> None:
    (scenario_dir / "referral.yaml").write_text(
        "referral: {reward_when: unsubscribed}\n", encoding="utf-8"
    )
    assert problems(scenario_dir) == [
        "sc/referral.yaml:1:25: referral.reward_when: the friend counts on reaching a funnel "
        "stage: one of engaged, contact, warming, qualified, handed_off, customer, advocate"
    ]


def test_an_alias_bomb_is_refused_not_expanded(
    scenario_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine levels of ten aliases each would be a billion values: refused before reading,
    from the size of what each alias names, long before memory or time run out."""
    lines = ['a0: &a0 ["ха"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    (scenario_dir / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    read: list[str] = []
    reader = source._Reader.read

    def reading(self: source._Reader, *args: Any) -> Any:
        read.append(self.file)
        return reader(self, *args)

    monkeypatch.setattr(source._Reader, "read", reading)

    found = problems(scenario_dir)
    assert len(found) == 1
    assert found[0].startswith("sc/bomb.yaml:5:")  # a5: the first alias that repeats 100,000
    assert "over 100,000 values once the aliases (*name) are written out" in found[0]
    # Sized from the aliases alone: not one of its values was read.
    assert [file for file in read if file.endswith("bomb.yaml")] == []


def test_a_value_that_contains_itself_is_refused(scenario_dir: Path) -> None:
    (scenario_dir / "loop.yaml").write_text("loop: &a [1, *a]\n", encoding="utf-8")

    [found] = problems(scenario_dir)
    assert found.startswith("sc/loop.yaml:1:7: over 100,000 values")


def test_values_nested_thousands_deep_are_a_plain_problem(scenario_dir: Path) -> None:
    (scenario_dir / "deep.yaml").write_text(
        "a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8"
    )

    assert problems(scenario_dir) == [
        "sc/deep.yaml:1:1: values are nested too deeply; a scenario nests a few levels"
    ]


def test_a_file_too_large_to_be_a_scenario_is_refused_unread(scenario_dir: Path) -> None:
    big = scenario_dir / "big.yaml"
    big.write_text("# " + "x" * 1_000_100 + "\n", encoding="utf-8")

    assert problems(scenario_dir) == [
        "sc/big.yaml:1:1: the file is over 1,000,000 bytes; a scenario file is far smaller"
    ]


def test_a_mapping_as_a_key_is_a_plain_problem(scenario_dir: Path, edit: Edit) -> None:
    edit("offers:", "? {a: 1}\n: x\noffers:")
    assert any("keys must be plain words" in problem for problem in problems(scenario_dir))
