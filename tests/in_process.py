"""`leadbot COMMAND ARGS` run in the test's own process (fast, and its output captured), from
a folder with no .env and none of the bot's settings in the environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


Leadbot = Callable[..., Result]


def command_runner(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Leadbot:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("DATABASE_", "SCENARIO_", "TELEGRAM_", "VK_", "LOG_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    root = logging.getLogger()

    def run(*args: str) -> Result:
        # The command sets up logging for its process; pytest's own handlers stay.
        handlers, level = root.handlers[:], root.level
        try:
            code = main([command, *args])
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
