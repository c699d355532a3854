"""Managers' chats the messenger moved to a new id, kept so that a restart with the old id in
the settings still finds the managers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatMigration


async def moved_to(session: AsyncSession, channel: str, chat: str) -> str | None:
    """The chat `chat` of `channel` became, or None when it did not move."""
    row = await session.get(ChatMigration, (channel, chat))
    return row.to_chat if row is not None else None


async def record_move(
    session: AsyncSession, channel: str, from_chat: str, to_chat: str, now: datetime
) -> None:
    """`from_chat` is `to_chat` now (committed by the caller's unit of work)."""
    row = await session.get(ChatMigration, (channel, from_chat))
    if row is None:
        session.add(
            ChatMigration(channel=channel, from_chat=from_chat, to_chat=to_chat, migrated_at=now)
        )
    else:
        row.to_chat, row.migrated_at = to_chat, now
