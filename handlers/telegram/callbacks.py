"""Button data: the engine's action inside an aiogram callback-data factory (64 bytes max)."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData

CALLBACK_LIMIT = 64  # bytes, Telegram's limit for callback_data


class Press(CallbackData, prefix="p", sep="|"):
    action: str


def pack_action(action: str) -> str:
    packed = Press(action=action).pack()
    if len(packed.encode()) > CALLBACK_LIMIT:
        raise ValueError(f"button action {action!r} does not fit Telegram's 64 bytes")
    return packed
