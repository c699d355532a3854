"""Another process holding a SQLite file's write lock, as a second bot process or a backup
tool would, until it is told to let go."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    for statement in sys.argv[2:]:
        connection.execute(statement)
    print("locked", flush=True)
    sys.stdin.readline()  # hold the write lock until told
    connection.execute("COMMIT")
    """
)


async def hold_write_lock(path: Path, *statements: str) -> asyncio.subprocess.Process:
    """A process that has run `statements` in a write transaction on `path` and holds it."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(path),
        *statements,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert (await holder.stdout.readline()).strip() == b"locked"
    return holder


async def release(holder: asyncio.subprocess.Process) -> None:
    """Commit and end the holder."""
    assert holder.stdin is not None
    holder.stdin.write(b"go\n")
    await holder.stdin.drain()
    assert await holder.wait() == 0
