"""The scenario the running bot uses now; a reload swaps it whole, between events."""

from __future__ import annotations

from bot.scenario.loader import LoadedScenario


class ActiveScenario:
    def __init__(self, loaded: LoadedScenario) -> None:
        self._loaded = loaded

    @property
    def current(self) -> LoadedScenario:
        return self._loaded

    def replace(self, loaded: LoadedScenario) -> None:
        self._loaded = loaded
