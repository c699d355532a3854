"""Waiting for the process to be told to stop (SIGINT, SIGTERM), for every channel's runner."""

from __future__ import annotations

import asyncio
import signal
from contextlib import suppress


async def wait_for_signal(task: asyncio.Task[None] | None = None) -> None:
    """Until SIGINT or SIGTERM (or until `task` ends, which is an error: it is raised)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    waiting: set[asyncio.Task[object]] = {waiter}
    if task is not None:
        waiting.add(task)  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task is not None and task in done:
        task.result()
