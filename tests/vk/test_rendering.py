"""VK rendering and reading without the network: keyboards, random_id, intent, and what a
private message means to the engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.messages import Button, Kind, Outgoing
from handlers.vk.payloads import PAYLOAD_LIMIT, action_of, pack_action, parse_payload
from handlers.vk.router import message_fields
from handlers.vk.sender import intent_for, keyboard, random_id

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_a_few_choices_are_inline_callback_buttons_and_links_open_links() -> None:
    message = Outgoing(
        "Выберите:",
        buttons=(
            (Button("Аудит", action="o:audit"),),
            (Button("Сайт", url="https://example.com"),),
        ),
    )
    board = json.loads(keyboard(message) or "")
    assert board["inline"] is True
    first, second = board["buttons"]
    assert first[0]["action"] == {
        "type": "callback",
        "label": "Аудит",
        "payload": '{"a":"o:audit"}',
    }
    assert second[0]["action"] == {
        "type": "open_link",
        "link": "https://example.com",
        "label": "Сайт",
    }
    assert keyboard(Outgoing("без кнопок")) is None


def test_the_0_to_10_scale_goes_under_the_input_field_as_one_time_text_buttons() -> None:
    numbers = [Button(str(n), action=f"a:nps:{n}") for n in range(11)]
    board = json.loads(
        keyboard(Outgoing("Оценка?", buttons=(tuple(numbers[:6]), tuple(numbers[6:])))) or ""
    )
    # VK's inline keyboard holds 10 buttons at most; 11 would be refused.
    assert board["inline"] is False
    assert board["one_time"] is True
    # And a row holds 5: the six of the first row continue on the next one.
    labels = [[b["action"]["label"] for b in row] for row in board["buttons"]]
    assert labels == [["0", "1", "2", "3", "4"], ["5"], ["6", "7", "8", "9", "10"]]
    assert all(b["action"]["type"] == "text" for row in board["buttons"] for b in row)


def test_random_id_is_the_same_for_a_retry_and_differs_between_rows() -> None:
    assert random_id("step:12:guide:day1") == random_id("step:12:guide:day1")
    assert random_id("step:12:guide:day1") != random_id("step:12:guide:day2")
    assert 0 < random_id("x") < 2**31
    assert random_id(None) == 0


@pytest.mark.parametrize(
    ("purpose", "last", "intent"),
    [
        ("advertising", NOW - timedelta(hours=23), None),
        ("advertising", NOW - timedelta(hours=25), "promo_newsletter"),
        ("support", NOW - timedelta(days=3), "customer_support"),
        ("notice", None, "non_promo_newsletter"),
    ],
)
def test_outside_24_hours_a_message_says_what_it_is(
    purpose: str, last: datetime | None, intent: str | None
) -> None:
    message = Outgoing("текст", purpose=purpose)  # type: ignore[arg-type]
    assert intent_for(message, last, NOW) == intent


def test_payloads_are_checked_like_any_input() -> None:
    assert action_of(parse_payload(pack_action("o:audit"))) == "o:audit"
    assert action_of(parse_payload({"a": "o:audit"})) == "o:audit"  # events carry objects
    for forged in ['{"a": 5}', "[1]", "not json", '{"a": "' + "x" * 65 + '"}', None, ""]:
        assert action_of(parse_payload(forged)) is None
    with pytest.raises(ValueError, match="payload"):
        pack_action("x" * PAYLOAD_LIMIT)


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (
            {"text": "Начать", "payload": '{"command":"start"}'},
            {"kind": Kind.START, "payload": None},
        ),
        (
            {"text": "привет", "ref": "src_vkads-o_guide"},
            {"kind": Kind.START, "payload": "src_vkads-o_guide"},
        ),
        ({"text": "/start ref_ABCD2345"}, {"kind": Kind.START, "payload": "ref_ABCD2345"}),
        (
            {"text": "", "ref": "ref_ABCD2345", "ref_source": "vkads"},
            {"kind": Kind.START, "payload": "ref_ABCD2345-src_vkads"},
        ),
        ({"text": "7", "payload": '{"a":"a:nps:7"}'}, {"kind": Kind.BUTTON, "payload": "a:nps:7"}),
        ({"text": "7", "payload": '{"evil":1}'}, {"kind": Kind.BUTTON, "payload": ""}),
        ({"text": "/stop"}, {"kind": Kind.STOP}),
        ({"text": "/promo"}, {"kind": Kind.PROMO}),
        ({"text": "/invite"}, {"kind": Kind.INVITE}),
        ({"text": "/booking"}, {"kind": Kind.BOOKING}),
        ({"text": "  anna@example.com "}, {"kind": Kind.TEXT, "text": "anna@example.com"}),
        ({"text": "", "attachments": [{"type": "sticker"}]}, {"kind": Kind.UNSUPPORTED}),
    ],
)
def test_what_a_private_message_is_for_the_engine(
    message: dict[str, object], fields: dict[str, object]
) -> None:
    assert message_fields(message) == fields
