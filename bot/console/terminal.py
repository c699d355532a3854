"""The lines typed into `leadbot chat`: read in the main thread, so that Ctrl-C interrupts
the prompt and readline restores the terminal as it should."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import TextIO

log = logging.getLogger(__name__)

PROMPT = "> "


class Terminal:
    """At a terminal, lines are edited and recalled with the arrow keys where Python has
    readline (Windows has none: plain input then). Piped lines are echoed after the prompt,
    so the output reads as a transcript of the session."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = self.stdin.isatty() and self.stdin is sys.stdin
        if self.interactive:
            with suppress(ImportError):  # loading it is what gives input() editing, history
                importlib.import_module("readline")

    def read(self) -> str | None:
        """The next line; None at the end of the input (Ctrl-D, or the pipe closed)."""
        if self.interactive:
            try:
                return input(PROMPT)
            except EOFError:
                self.write([""])
                return None
        line = self.stdin.readline()
        if not line:
            return None
        self.write([f"{PROMPT}{line.rstrip()}"])
        return line

    def talk(self, process: Callable[[str], list[str] | None]) -> None:
        """Read, process and print lines until the input ends or `process` says the chat
        is over (None). A line that fails is logged and told in one line, and the chat goes
        on: an afternoon's session is not lost to one bad line."""
        while (line := self.read()) is not None:
            try:
                output = process(line)
            except Exception as exc:
                log.exception("the line %r failed", line)
                output = [f"(that failed: {exc!r}; the log has the details)"]
            if output is None:
                return
            self.write(output)

    def write(self, lines: list[str]) -> None:
        if lines:
            print("\n".join(lines), file=self.stdout, flush=True)
