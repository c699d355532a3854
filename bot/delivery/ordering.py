"""Each chat's messages leave in the order their rows were claimed (by due, then id), even when
one of them has to wait: every row is a delivery of its own, and without this a row given
back for a retry-after would be overtaken by the rows queued behind it (a manager's answers
reaching the prospect shuffled).

A chat's rows in this process form a line: a row books its slot only once the row before it
is out (or decided). A row given back (a retry-after, a slot too far ahead) takes the rows
behind it along, with the same due, and rows arriving for the chat before it is claimed again
go back too: claimed again together, they keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

ChatKey = tuple[str, str]  # (channel, the chat's external id)


@dataclass
class Turn:
    """A row's place in its chat's line."""

    chat: ChatKey
    row_id: int
    previous: asyncio.Future[None] | None
    done: asyncio.Future[None]


class ChatLines:
    """The lines of every chat with rows in this process."""

    SWEEP_AT = 1024  # given-back marks kept before the stale ones are dropped

    def __init__(self, forget_after: timedelta) -> None:
        # A row given back and never claimed here again (another process took it, or it was
        # cancelled) holds its chat back no longer than this past its due.
        self.forget_after = forget_after
        self._tails: dict[ChatKey, asyncio.Future[None]] = {}
        self._given_back: dict[ChatKey, tuple[int, datetime]] = {}

    def join(self, chat: ChatKey, row_id: int) -> Turn:
        """Take the last place in the chat's line."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self._tails.get(chat)
        self._tails[chat] = done
        return Turn(chat, row_id, previous, done)

    async def wait(self, turn: Turn, now: Callable[[], datetime]) -> datetime | None:
        """Until the rows ahead are out or decided. None: this row may go; a due: a row ahead
        was given back until then, and this one must go back with it."""
        if turn.previous is not None:
            await asyncio.shield(turn.previous)
        given = self._given_back.get(turn.chat)
        if given is None:
            return None
        row_id, due = given
        if row_id == turn.row_id or now() > due + self.forget_after:
            del self._given_back[turn.chat]  # back in the line, ahead of those that waited
            return None
        return due

    def leave(self, turn: Turn, given_back_until: datetime | None, now: datetime) -> None:
        """The row is out or decided (`given_back_until`: back to the queue until then); the
        next in line may go."""
        marked = self._given_back.get(turn.chat)
        if given_back_until is not None and (
            marked is None or now > marked[1] + self.forget_after
        ):
            if len(self._given_back) >= self.SWEEP_AT:
                self._sweep(now)
            self._given_back[turn.chat] = (turn.row_id, given_back_until)
        if not turn.done.done():
            turn.done.set_result(None)
        if self._tails.get(turn.chat) is turn.done:
            del self._tails[turn.chat]

    def _sweep(self, now: datetime) -> None:
        self._given_back = {
            chat: (row_id, due)
            for chat, (row_id, due) in self._given_back.items()
            if now <= due + self.forget_after
        }
