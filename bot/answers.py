"""Checking and normalising what prospects type in answer to a question."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from bot.dates import LooseDate, parse_date
from bot.messages import Button
from bot.names import person_name
from bot.scenario.model import Question

CONTACT_TYPES = ("phone", "email")  # question types whose answer is also a contact


class InvalidAnswer(Exception):
    """The answer does not fit the question; `message` names the text to show (messages.*)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ParsedAnswer:
    value: str
    score: int = 0
    tag: str | None = None
    zone: str | None = None
    date: LooseDate | None = None  # a `date` question's answer, for the chains counting from it


def normalize_phone(text: str, region: str) -> str:
    """E.164 (`+79991234567`) or `InvalidAnswer`. A leading 8 or none means `region`."""
    cleaned = text.strip()
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        raise InvalidAnswer("invalid_phone") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidAnswer("invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(text: str) -> str:
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise InvalidAnswer("invalid_email") from None


def parse_answer(
    question: Question, text: str, *, phone_region: str, today: date | None = None
) -> ParsedAnswer:
    """`today` (the lead's) reads "сегодня" and two-digit years in a `date` answer."""
    text = text.strip()
    match question.type:
        case "slot":
            raise InvalidAnswer("choose_slot")  # a time is pressed: the free ones change
        case "date":
            when = parse_date(text, today or date.today())
            if when is None:
                raise InvalidAnswer("invalid_date")
            return ParsedAnswer(when.shown(), date=when)
        case "phone":
            return ParsedAnswer(normalize_phone(text, phone_region))
        case "email":
            return ParsedAnswer(normalize_email(text))
        case "name":
            name = person_name(text)
            if name is None:
                raise InvalidAnswer("invalid_name")
            return ParsedAnswer(name)
        case "choice":
            wanted = text.casefold()
            for option in question.options:
                if option.text.casefold() == wanted:
                    return ParsedAnswer(option.text, option.score, option.tag, option.zone)
            raise InvalidAnswer("choose_option")
        case "scale":
            if text.isascii() and text.isdigit() and 0 <= int(text) <= 10:
                return ParsedAnswer(str(int(text)))
            raise InvalidAnswer("invalid_number")
        case _:
            if not text:
                raise InvalidAnswer("not_text")
            return ParsedAnswer(text)


def choice_answer(question: Question, index: int) -> ParsedAnswer:
    """The answer a choice or scale button stands for; `InvalidAnswer` if forged."""
    if question.type == "choice" and 0 <= index < len(question.options):
        option = question.options[index]
        return ParsedAnswer(option.text, option.score, option.tag, option.zone)
    if question.type == "scale" and 0 <= index <= 10:
        return ParsedAnswer(str(index))
    raise InvalidAnswer("stale_button")


def question_buttons(question_id: str, question: Question) -> tuple[tuple[Button, ...], ...]:
    """The buttons of a choice or scale question; presses come back as `a:<question>:<n>`
    and `choice_answer` reads them."""
    if question.type == "choice":
        return tuple(
            (Button(o.text, action=f"a:{question_id}:{i}"),)
            for i, o in enumerate(question.options)
        )
    if question.type == "scale":
        numbers = [Button(str(n), action=f"a:{question_id}:{n}") for n in range(11)]
        return (tuple(numbers[:6]), tuple(numbers[6:]))
    return ()


def question_markup(
    question_id: str, question: Question
) -> tuple[tuple[tuple[Button, ...], ...], str | None]:
    """The buttons of a question and, for a phone, the share-contact button's label."""
    contact_request = (question.button or "📱") if question.type == "phone" else None
    return question_buttons(question_id, question), contact_request
