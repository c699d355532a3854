"""The managers' Telegram chat, whose id Telegram may change. A group upgraded to a supergroup
(its owner opened the history to new members, say) gets a new -100... id: every call naming the
old id is answered 400 "group chat was upgraded to a supergroup chat" with
`migrate_to_chat_id`, and the bot gets a service message about it in each chat. The bot
follows: posts go to the supergroup from then on, presses and replies there are the managers',
and the move is kept in the database so that a restart with the old MANAGERS_TELEGRAM_CHAT_ID
still finds the managers."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from bot.clock import Clock, SystemClock
from storage import chat_migrations
from storage.database import Database

log = logging.getLogger(__name__)
CHANNEL = "telegram"


class ManagersChatId:
    """Where the managers are now: the configured chat, or the supergroup it became."""

    def __init__(
        self, configured: int | None, db: Database | None = None, clock: Clock | None = None
    ) -> None:
        self.configured = configured
        self.current = configured
        self._db = db
        self._clock = clock or SystemClock()

    def holds(self, chat_id: int) -> bool:
        """Whether `chat_id` is the managers' chat as it is now."""
        return self.current is not None and chat_id == self.current

    async def restore(self) -> None:
        """Follow a move recorded before this start (the admin is reminded of the setting)."""
        if self.configured is None or self._db is None:
            return
        async with self._db.reading() as session:
            moved = await chat_migrations.moved_to(session, CHANNEL, str(self.configured))
        if moved is not None and int(moved) != self.current:
            self.current = int(moved)
            _tell_the_admin(self.configured, self.current)

    async def moved(self, old: int, new: int) -> None:
        """Telegram says the group `old` is the supergroup `new` now. A report about another
        chat, or about a move already followed, changes nothing."""
        if self.current != old or new == old:
            return
        self.current = new
        _tell_the_admin(old, new)
        if self._db is None or self.configured is None:
            return
        try:
            async with self._db.unit_of_work() as uow:
                await chat_migrations.record_move(
                    uow.session, CHANNEL, str(self.configured), str(new), self._clock.now()
                )
                await uow.commit()
        except IntegrityError:  # another process of the bot recorded the same move first
            log.info("the move of the managers' chat to %s was recorded already", new)


def _tell_the_admin(old: int, new: int) -> None:
    log.warning(
        "the managers' Telegram group %s was upgraded to the supergroup %s: the bot posts "
        "there now; set MANAGERS_TELEGRAM_CHAT_ID=%s",
        old,
        new,
        new,
    )
