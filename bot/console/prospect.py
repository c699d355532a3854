"""The prospect's side of `leadbot chat`: the bot's messages as lines of text, and the
transport the delivery worker sends the console's leads through."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from bot.messages import Button, FileRef, Outgoing

log = logging.getLogger(__name__)

CHANNEL = "console"


def render_outgoing(
    message: Outgoing, number_from: int, *, saved: Path | None = None
) -> tuple[list[str], list[Button]]:
    """Lines to print for one bot message, and the buttons it numbered (in order). `saved`
    is where a file made on the fly (/mydata) was written for the reader to open."""
    lines = [
        f"bot: {line}" if i == 0 else f"     {line}"
        for i, line in enumerate(message.text.splitlines() or [""])
    ]
    numbered: list[Button] = []
    if message.file is not None:
        where = f" -> {saved}" if saved is not None else ""
        lines.append(f"     [file] {message.file.name}{where}")
    for row in message.buttons:
        for button in row:
            if button.url:
                lines.append(f"     [link] {button.text} -> {button.url}")
            else:
                numbered.append(button)
                lines.append(f"     [{number_from + len(numbered) - 1}] {button.text}")
    if message.contact_request:
        lines.append(f"     [contact] {message.contact_request} (type /contact +7...)")
    return lines, numbered


def save_file(file: FileRef, folder: Path | None) -> Path | None:
    """Write a file the bot made on the fly (it has no path of its own) into `folder`, so
    the person at the terminal can open it; None when there is nothing to write."""
    if folder is None or file.data is None:
        return None
    target = folder / Path(file.name).name  # a name, never a path out of the folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.data)
    except OSError:  # the chat goes on without the copy
        log.exception("could not save %s", target)
        return None
    return target


class ConsoleTransport:
    """Where the delivery worker's messages to console leads go: kept until the chat prints
    them (after each line typed, and at each moment `/wait` stops)."""

    channel = CHANNEL

    def __init__(self) -> None:
        self.outbox: list[Outgoing] = []

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        self.outbox.append(message)
