"""Reloading the scenario without a restart: on a change of its files, or on /reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bot.scenario.active import ActiveScenario
from bot.scenario.loader import LoadedScenario, ScenarioError, load_scenario
from bot.scenario.source import Problem
from bot.scenario.wording import Language, Say

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]
REPORT_LINES = 30  # a refused folder's problems shown in the managers' chat


def fingerprint(folder: Path) -> Fingerprint:
    """Names, sizes and modification times of everything in the folder (files it delivers
    included): cheap to take every few seconds, and any edit changes it."""
    entries = []
    for path in sorted(folder.rglob("*")):
        try:
            if path.is_file():
                stat = path.stat()
                entries.append((str(path.relative_to(folder)), stat.st_mtime_ns, stat.st_size))
        except OSError:  # removed while we looked: the next look sees it gone
            continue
    return tuple(entries)


class ScenarioReloader:
    """A folder that fails `leadbot check` is refused whole and the running scenario stays;
    the problems go to the log and to `on_refused` (the managers' chat)."""

    def __init__(
        self,
        active: ActiveScenario,
        *,
        on_refused: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.active = active
        self.on_refused = on_refused
        self._seen = fingerprint(active.current.folder)

    async def poll(self) -> None:
        """Reload if the files changed since the last look (the heartbeat calls this)."""
        current = await asyncio.to_thread(fingerprint, self.active.current.folder)
        if current != self._seen:
            self._seen = current
            await self.reload(notify=True)

    async def reload(self, *, notify: bool = False) -> tuple[bool, str]:
        """Load the folder again; (accepted, a report for people). `notify` sends a refusal
        to `on_refused` (a change noticed by itself; /reload answers with the report)."""
        folder = self.active.current.folder
        try:
            loaded = await asyncio.to_thread(load_scenario, folder)
        except ScenarioError as exc:
            said = Say("reload.refused", folder=folder, count=len(exc.problems))
            report = "\n".join(
                [
                    said.render(exc.language),
                    *_listed(exc.problems, exc.language),
                    *_warned(exc.warnings, exc.language),
                ]
            )
            log.error("scenario reload refused, the running scenario stays:\n%s", exc)
            if notify and self.on_refused is not None:
                try:
                    await self.on_refused(report)
                except Exception:  # the report is in the log anyway
                    log.exception("could not send the reload report")
            return False, report
        self.active.replace(loaded)
        s = loaded.scenario
        said = Say(
            "reload.accepted",
            folder=folder,
            offers=len(s.offers),
            sequences=len(s.sequences),
            files=len(loaded.files),
        )
        report = "\n".join(
            [said.render(loaded.language), *_warned(loaded.warnings, loaded.language)]
        )
        log.info("scenario reloaded from %s", folder)
        log_warnings(loaded)
        return True, report


def _listed(problems: Sequence[Problem], language: Language) -> list[str]:
    """The first REPORT_LINES problems, and how many more there are: a chat is not a log."""
    shown = [str(p) for p in problems[:REPORT_LINES]]
    more = len(problems) - len(shown)
    return [*shown, *([Say("reload.more", count=more).render(language)] if more > 0 else [])]


def _warned(warnings: Sequence[Problem], language: Language) -> list[str]:
    if not warnings:
        return []
    return [
        Say("reload.warnings", count=len(warnings)).render(language),
        *_listed(warnings, language),
    ]


def log_warnings(loaded: LoadedScenario) -> None:
    """What `leadbot check` warns about, in the log of a bot that runs the scenario anyway."""
    if loaded.warnings:
        log.warning(
            "scenario %s: %d warning(s) (see `leadbot check`):\n%s",
            loaded.folder,
            len(loaded.warnings),
            "\n".join(str(w) for w in loaded.warnings),
        )
