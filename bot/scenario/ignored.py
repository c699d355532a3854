"""Files in a scenario folder that the bot does not read: a `.yml`, a backup copy, a YAML file
in a folder inside, a stray document. Only warnings, as the scenario loads without them; but
an offer written in offers.yml is an offer the bot has never heard of."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from bot.scenario.wording import Say

_YAML_LIKE = re.compile(r"\.ya?ml(?![a-z0-9])", re.IGNORECASE)  # .yml, .YAML, .yaml~, .yaml.bak
_SYSTEM = frozenset({"thumbs.db", "desktop.ini"})  # what Windows leaves in any folder


def ignored_files(
    folder: Path, read: Iterable[Path], named: Iterable[str] | None
) -> Iterator[tuple[Path, Say]]:
    """Each file the bot leaves unread, with what to do about it. `named`: the files the
    scenario names under `file:`; None when a file that is not YAML may name any more."""
    read_ones = {path.resolve() for path in read}
    sent = None if named is None else {(folder / name).resolve() for name in named}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.resolve() in read_ones:
            continue  # hidden: an editor's swap file, .git, .DS_Store
        if entry.is_dir():
            for nested in _yaml_inside(entry):
                yield nested, Say("ignored.nested", folder=folder.name or str(folder))
        elif _YAML_LIKE.search(entry.name):
            yield entry, _unread_yaml(entry)
        elif (
            sent is not None and entry.resolve() not in sent and entry.name.lower() not in _SYSTEM
        ):
            yield entry, Say("ignored.other")


def _unread_yaml(file: Path) -> Say:
    if file.suffix.lower() in (".yml", ".yaml"):
        fixed = file.with_suffix(".yaml")
        # With that file there too, this is an old copy of it, not a misnamed file.
        if not fixed.exists() or fixed.samefile(file):
            return Say("ignored.rename", name=fixed.name)
    return Say("ignored.copy")


def _yaml_inside(folder: Path) -> Iterator[Path]:
    for top, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if _YAML_LIKE.search(name) and not name.startswith("."):
                yield Path(top) / name
