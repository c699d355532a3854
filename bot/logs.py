"""JSON log lines (`LOG_FORMAT=json`) for a log collector, carrying the id of the lead whose
event is being handled.

A JSON line says no more than the text line does: the time, level, logger, the formatted
message and the traceback; the lead id is the one field added, an internal number that
names nobody. What a message may hold is decided where it is logged (the project logs ids
and channels, never what a prospect typed), so the formatter neither adds the record's other
attributes nor the `extra=` a caller passes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

# The lead of the event being handled. A ContextVar, the one module-level state here,
# because the lead is learnt deep inside the engine (`Turn`) and the log lines that should
# carry it come from any module, with no lead at hand: passing it down every call would
# touch them all. Each asyncio task has its own copy, so concurrent events of different
# leads (webhooks, aiogram's task per update) never see each other's id.
LEAD_ID: ContextVar[int | None] = ContextVar("leadbot_lead_id", default=None)

# Characters `str.splitlines()` and some collectors break a line at, which `json.dumps`
# leaves raw when it keeps non-ASCII text readable (it escapes only those below U+0020).
_LINE_BREAKS = (("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


@contextmanager
def one_event() -> Iterator[None]:
    """Around the handling of one incoming event (the engine, then sending its replies): no
    lead is known at first; `about_lead` names it once the engine finds it. Whatever was
    known before (an outer event, nothing) is back afterwards, so a loop that handles one
    event after another in one task (the terminal chat) never logs a previous lead's id."""
    token = LEAD_ID.set(None)
    try:
        yield
    finally:
        LEAD_ID.reset(token)


def about_lead(lead_id: int) -> None:
    """From here to the end of the event (`one_event`), log lines carry this lead id."""
    LEAD_ID.set(lead_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and
    `exception` / `stack` and `lead_id` when there are such."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # cached as the base does
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Read while the record is formatted: the file and stream handlers in use format in
        # the logging call itself, so in the context of the event that logged it.
        lead_id = LEAD_ID.get()
        if lead_id is not None:
            line["lead_id"] = lead_id
        # Non-ASCII stays readable (Cyrillic names); quotes and control characters, newlines
        # included, are escaped by json, the rarer line breaks by hand: one record, one line.
        text = json.dumps(line, ensure_ascii=False)
        for raw, escaped in _LINE_BREAKS:
            text = text.replace(raw, escaped)
        return text
