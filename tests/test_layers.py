"""The house plan's layers, read from the source: every import (lazy ones and those for type
checking included) points down, a channel never imports another channel or the root, and a
Telegram-only bot never loads vkbottle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "storage")
# Lowest first. A module belongs to the longest prefix named here; the rest of `bot` is
# the domain (rules, scoring, handoff, promos, ...).
LAYERS: list[tuple[str, ...]] = [
    ("storage", "handlers"),  # `handlers` alone is the package's empty __init__
    (
        "bot.settings",
        "bot.clock",
        "bot.durations",
        "bot.scenario",
        "bot.messages",
        "bot.render",
        "bot.stages",
        "bot.pacing",  # imported by the channels' replies (bot.transport) and the worker
        "bot.transport",
        "bot.answers",
        "bot.dates",  # pure: what people type as a date, read by bot.answers
        "bot.names",
        "bot.stems",
        "bot.consent",
        "bot.logs",  # imported by the engine, the channels and the CLI: it imports none
    ),
    ("bot",),
    ("bot.engine",),
    ("bot.delivery", "bot.heartbeat", "bot.redemption", "bot.outside", "bot.console"),
    ("handlers.telegram", "handlers.vk", "handlers.web"),
    (
        "bot.app",
        "bot.cli",
        "bot.broadcast_command",
        "bot.analytics.report_command",
        "bot.analytics.spend_command",
        "bot.analytics.export_command",
    ),
]
CHANNELS = ("handlers.telegram", "handlers.vk", "handlers.web")
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                package = module.split(".")[: -node.level or None]
                base = ".".join([*package, *([base] if base else [])])
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] in PACKAGES}


def prefix_of(module: str, prefixes: tuple[str, ...]) -> str | None:
    matching = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(matching, key=len, default=None)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        prefix = prefix_of(module, prefixes)
        if prefix is not None and (best is None or len(prefix) > best[0]):
            best = (len(prefix), index)
    return None if best is None else best[1]


def known_module(name: str, modules: dict[str, Path]) -> str | None:
    """`from bot.engine import offers` names a module; `from bot.app import App` does not."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_every_import_points_down_the_layers() -> None:
    modules = sources()
    upward = []
    for module, path in modules.items():
        own = layer_of(module)
        assert own is not None, f"{module} is in no layer of this test"
        for name in imports_of(path, module):
            target = known_module(name, modules)
            if target is None or target == module:
                continue
            if (layer_of(target) or 0) > own:
                upward.append(f"{module} -> {target}")
    upward = sorted(set(upward))
    assert upward == []


def test_a_channel_imports_no_other_channel_nor_the_root() -> None:
    modules = sources()
    crossing = []
    for module, path in modules.items():
        channel = prefix_of(module, CHANNELS)
        if channel is None:
            continue
        for name in imports_of(path, module):
            target = known_module(name, modules) or name
            other = prefix_of(target, CHANNELS)
            if (other is not None and other != channel) or prefix_of(target, LAYERS[-1]):
                crossing.append(f"{module} -> {target}")
    assert crossing == []


def test_the_layers_see_a_planted_upward_import(tmp_path: Path) -> None:
    """The check itself: an import of the engine from a primitive is caught."""
    planted = tmp_path / "stages.py"
    planted.write_text("from bot.engine.funnel import Funnel\nfrom . import render\n")
    names = imports_of(planted, "bot.stages")
    assert names == {"bot.engine.funnel", "bot.engine.funnel.Funnel", "bot", "bot.render"}
    target = known_module("bot.engine.funnel.Funnel", sources())
    assert target == "bot.engine.funnel"
    assert layer_of(target) > layer_of("bot.stages")  # type: ignore[operator]


def test_no_file_in_bot_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "bot").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_a_telegram_bot_never_loads_vkbottle() -> None:
    """vkbottle takes seconds to import: only a bot with VK configured pays for it."""
    probe = (
        "import sys, bot.cli, bot.app, handlers.telegram.channel, handlers.web.api; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('vkbottle', 'handlers')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = ast.literal_eval(out)
    assert not any(
        name.startswith("vkbottle") or name.startswith("handlers.vk") for name in loaded
    )
    assert "handlers.telegram.channel" in loaded
