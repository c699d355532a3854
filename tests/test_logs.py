"""`LOG_FORMAT=json`: one valid JSON object a line, the lead id on the lines of that lead's
event and on no other, and nothing a prospect typed."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.engine.funnel import Funnel
from bot.logs import JsonFormatter, one_event
from bot.settings import SettingsError, load_settings
from tests.conftest import FIXTURE_SCENARIO, SHIPPED_SCENARIO
from tests.prospect import Prospect
from tests.test_cli import leadbot

FIELDS = {"time", "level", "logger", "message"}


class Lines(logging.Handler):
    """Keeps the formatted lines. Formatting happens in `emit`, in the logging call, as the
    file and stream handlers do, so the lead id is read where the line was logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def logged() -> Iterator[Lines]:
    root = logging.getLogger()
    handler, level = Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def one_line_of_json(line: str) -> dict[str, object]:
    assert len(line.splitlines()) == 1, line  # splitlines breaks at \x85 and \u2028 too
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def test_a_line_has_the_fields_and_the_time_in_utc(logged: Lines) -> None:
    logging.getLogger("bot.test").warning("lead %s qualified: score %d", 7, 95)
    (line,) = [one_line_of_json(text) for text in logged.lines]
    assert set(line) == FIELDS  # no lead is being handled: no lead_id
    assert line["level"] == "WARNING"
    assert line["logger"] == "bot.test"
    assert line["message"] == "lead 7 qualified: score 95"  # formatted, as the text log
    time = datetime.fromisoformat(str(line["time"]))
    assert time.utcoffset() == timedelta(0)
    assert abs(datetime.now(time.tzinfo) - time) < timedelta(minutes=1)


def test_the_exception_is_a_field_of_the_same_line(logged: Lines) -> None:
    try:
        raise RuntimeError('database "leads" is\nlocked')
    except RuntimeError:
        logging.getLogger("bot.test").exception("failed to handle text event of telegram:1")
    (line,) = [one_line_of_json(text) for text in logged.lines]
    assert line["message"] == "failed to handle text event of telegram:1"
    exception = str(line["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith('RuntimeError: database "leads" is\nlocked')


@pytest.mark.parametrize(
    "name",
    [
        'Анна "Аня" Петрова',
        'Анна\nПетрова\r\n{"level": "ERROR"}',
        "tab\there, nul\x00, escape\x1b[31m, backslash \\ end\\",
        "line\u2028separator\u2029paragraph\x85next-line",
        "эмодзи 🔥 and ' single quotes",
    ],
)
def test_whatever_a_message_holds_it_stays_one_line_of_json(logged: Lines, name: str) -> None:
    logging.getLogger("bot.test").info("name %r typed: %s", name, name)
    (line,) = logged.lines
    assert one_line_of_json(line)["message"] == f"name {name!r} typed: {name}"
    if "Анна" in name:  # Cyrillic stays readable, not \u0410-escaped
        assert "Анна" in line


async def handled(event: Awaitable[object]) -> None:
    """One event as the channels hand it over: inside `one_event` (the coroutine runs, and
    logs, when awaited)."""
    with one_event():
        await event


async def test_the_lead_id_is_on_the_lines_of_its_own_event_only(
    funnel: Funnel, logged: Lines
) -> None:
    test_log = logging.getLogger("tests.logs")
    anna, boris = Prospect(funnel, "1001"), Prospect(funnel, "2002", first_name="Борис")
    for prospect in (anna, boris):
        await handled(prospect.start("src_vkads-o_audit"))
        test_log.info("between events")
    # Both leave the audit's answers, in turn: the last one qualifies each lead.
    for text in ("Даю согласие", "Да, присылайте"):
        for prospect in (anna, boris):
            await handled(prospect.press(text))
    for prospect, name, phone in ((anna, "Анна", "+79991234567"), (boris, "Борис", "89997654321")):
        await handled(prospect.say(name))
        await handled(prospect.say(phone))
        test_log.info("between events")
    for prospect in (anna, boris):
        await handled(prospect.press("больше 50"))
        test_log.info("after %s's last event", prospect.external_id)

    lines = [one_line_of_json(line) for line in logged.lines]
    assert all(set(line) >= FIELDS for line in lines)
    qualified = {
        str(line["message"]).split()[1]: line.get("lead_id")
        for line in lines
        if str(line["message"]).endswith("qualified: score 95 >= 60")
    }
    assert qualified == {"1": 1, "2": 2}  # each on the line of its own lead's event
    outside = [line for line in lines if line["logger"] == "tests.logs"]
    assert len(outside) == 6
    assert all("lead_id" not in line for line in outside)  # never left over from an event


def test_the_chat_writes_json_lines_without_what_the_prospect_typed(tmp_path: Path) -> None:
    log = tmp_path / "chat.log"
    walk = (
        "/start src_vkads-o_audit\n1\n1\nАнна\n+7 999 123-45-67\n3\n"
        "/start o_guide\nanna.petrova@example.com\n/wait 1h\n/claim 1\n"
    )
    result = leadbot(
        ["chat", "--scenario", str(FIXTURE_SCENARIO), "--log", str(log)],
        tmp_path,
        walk,
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
    )
    assert result.returncode == 0, result.stderr
    assert "anna.petrova@example.com" in result.stdout  # the managers' card shows it ...
    text = log.read_text(encoding="utf-8")
    lines = [one_line_of_json(line) for line in text.splitlines()]
    assert all(set(line) >= FIELDS for line in lines)
    assert {"level": "INFO", "logger": "bot.scoring", "lead_id": 1}.items() <= next(
        line.items() for line in lines if "qualified" in str(line["message"])
    )
    assert any("lead_id" not in line for line in lines)  # startup, the reminders of /wait
    for typed in ("anna.petrova", "example.com", "999 123", "9991234567", "123-45-67"):
        assert typed not in text  # ... the log does not


def test_log_format_takes_text_or_json_in_any_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    assert load_settings().log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "bogus")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == "LOG_FORMAT: Input should be 'text' or 'json'"


def test_a_bogus_log_format_is_refused_in_one_line(tmp_path: Path) -> None:
    result = leadbot(["check", str(SHIPPED_SCENARIO)], tmp_path, LOG_FORMAT="bogus")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "leadbot: bad setting: LOG_FORMAT: Input should be 'text' or 'json'"
    ]
