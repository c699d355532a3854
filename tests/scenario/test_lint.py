"""`leadbot check` warnings: what loads and runs but leads nowhere. An event nothing reacts
to, and an offer whose lead can never reach the managers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.scenario.loader import ScenarioError, load_scenario
from tests.conftest import ROOT
from tests.scenario.conftest import Edit

QUICK = (
    "offers.quick: a lead who takes this offer never reaches the managers: scoring.qualify "
    "cannot hold for a lead who takes only this offer, and no handoff: true is on its way "
    "(the offer's then:, or a button of its chains)"
)
CASE_BUTTON = '- {text: "Читать кейс", event: case_read, url: "https://example.com/case"}'


def warnings(folder: Path) -> list[str]:
    """The warnings without their file positions: `path: message`."""
    return [w.message for w in load_scenario(folder).warnings]


def test_the_shipped_scenario_has_no_warnings() -> None:
    assert warnings(ROOT / "scenarios") == []


def test_an_offer_that_hands_over_or_can_qualify_is_not_warned_about(
    scenario_dir: Path, edit: Edit
) -> None:
    assert warnings(scenario_dir) == [QUICK]  # a checklist: no points, tags or chain
    edit(
        '      text: "Держите чек-лист: https://example.com/checklist"',
        '      text: "Держите чек-лист"\n    then: {tag: wants_audit}',
    )
    assert warnings(scenario_dir) == []  # its tag is a qualify rule


def test_without_a_qualify_rule_only_handoff_offers_reach_the_managers(
    scenario_dir: Path, edit: Edit
) -> None:
    edit('  qualify:\n    any:\n      - score: ">= 60"\n      - tag: wants_audit\n', "")
    edit(
        "    then: {score: 40, tag: wants_audit, start: audit_followup}",
        '    then: {score: 40, start: audit_followup, handoff: "позвонить"}',
    )

    found = warnings(scenario_dir)

    assert [w.split(":")[0] for w in found] == ["offers.guide", "offers.quick"]
    assert "there is no scoring.qualify rule" in found[0]


def test_a_chain_button_opening_a_handoff_offer_is_a_way_to_the_managers(
    scenario_dir: Path, edit: Edit
) -> None:
    edit('  qualify:\n    any:\n      - score: ">= 60"\n      - tag: wants_audit\n', "")
    edit(
        "    then: {score: 40, tag: wants_audit, start: audit_followup}",
        "    then: {score: 40, handoff: true}",
    )
    edit(CASE_BUTTON, CASE_BUTTON + '\n          - {text: "Хочу аудит", offer: audit}')

    assert [w.split(":")[0] for w in warnings(scenario_dir)] == ["offers.quick"]


def test_a_score_bound_counts_every_points_source_and_repeatable_events(
    scenario_dir: Path, edit: Edit
) -> None:
    edit('      - score: ">= 60"\n      - tag: wants_audit\n', '      - score: ">= 71"\n')
    # The guide: 10 for the offer, case_read 10 a press with no cap: any score is possible.
    # The audit: 40 + the biggest company_size option 30 + its tag enterprise 20 = 90.
    # The checklist: contact_shared 5 twice = 10.
    assert warnings(scenario_dir) == [QUICK]
    edit("    case_read: 10\n", "    case_read: {points: 10, max_times: 1}\n")
    # The guide now tops out at 10 + 10 + contact_shared 10 = 30.
    assert [w.split(":")[0] for w in warnings(scenario_dir)] == ["offers.guide", "offers.quick"]
    edit('      - score: ">= 71"\n', '      - score: ">= 30"\n')
    assert warnings(scenario_dir) == [QUICK]


def test_an_event_nothing_reacts_to_is_warned_about_where_it_is_recorded(
    scenario_dir: Path, edit: Edit
) -> None:
    edit(CASE_BUTTON, CASE_BUTTON + '\n          - {text: "Интересно", event: interested}')
    edit("faq:\n", "events:\n  webinar_attended: The webinar platform reports\nfaq:\n")
    edit(
        "    then: {score: 10, start: guide_warmup}", "    then: {score: 10, start: guide_warmup}"
    )

    loaded = load_scenario(scenario_dir)

    # In file order: the quick offer, the button, the declared event.
    assert [w.message.split(": ")[0] for w in loaded.warnings] == [
        "offers.quick",
        "sequences.guide_warmup.steps[0].buttons[1].event",
        "events.webinar_attended",
    ]
    interested = loaded.warnings[1].message
    assert "nothing reacts to event 'interested'" in interested
    assert "the prospect hears only messages.noted" in interested


@pytest.mark.parametrize(
    "fix",
    [
        '{text: "Интересно", event: interested, reply: "Пришлём подборку в пятницу"}',
        '{text: "Интересно", event: interested, handoff: "хочет подробности"}',
    ],
)
def test_a_reply_or_a_handoff_is_a_reaction(scenario_dir: Path, edit: Edit, fix: str) -> None:
    edit(CASE_BUTTON, CASE_BUTTON + "\n          - " + fix)
    assert warnings(scenario_dir) == [QUICK]


def test_points_or_a_rule_are_a_reaction(scenario_dir: Path, edit: Edit) -> None:
    edit(CASE_BUTTON, CASE_BUTTON + '\n          - {text: "Интересно", event: interested}')
    edit("faq:\n", "events:\n  webinar_attended: The webinar platform reports\nfaq:\n")
    edit("    case_read: 10\n", "    case_read: 10\n    interested: 5\n")
    edit("      - tag: wants_audit\n", "      - tag: wants_audit\n      - webinar_attended\n")
    # ... and an event from outside the chat in the qualify rule may come for any lead.
    assert warnings(scenario_dir) == []


@pytest.mark.parametrize(
    ("button", "message"),
    [
        (
            '{text: "Кейс", url: "https://example.com", handoff: true}',
            "a url: button opens the page and the bot hears nothing; handoff: and reply: "
            "need a button without url:",
        ),
        (
            '{text: "Позвоните", handoff: true}',
            "the press is recorded as an event: give the button event: (like callback_requested)",
        ),
        (
            '{text: "Аудит", offer: audit, reply: "Ок"}',
            "an offer: button opens the offer; give it no event:, url:, handoff: or reply:",
        ),
    ],
)
def test_a_button_that_cannot_reply_or_hand_over_is_refused(
    scenario_dir: Path, edit: Edit, button: str, message: str
) -> None:
    edit(CASE_BUTTON, CASE_BUTTON + "\n          - " + button)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(scenario_dir)
    [problem] = refused.value.problems
    assert problem.message.endswith(message), problem.message


@pytest.mark.parametrize("note", ['""', '"   "', '"' + "x" * 201 + '"', "3"])
def test_a_handoff_is_true_or_a_note_of_200_characters(
    scenario_dir: Path, edit: Edit, note: str
) -> None:
    edit(
        CASE_BUTTON,
        CASE_BUTTON + f'\n          - {{text: "Позвоните", event: call, handoff: {note}}}',
    )
    with pytest.raises(ScenarioError) as refused:
        load_scenario(scenario_dir)
    [problem] = refused.value.problems  # one problem, not one per type the value could be
    assert problem.message == (
        "sequences.guide_warmup.steps[0].buttons[1].handoff: "
        "give true, or a note for the managers of 1 to 200 characters"
    )
