"""The session parses replies without building their type again for each one."""

from __future__ import annotations

import gc
import weakref

from aiogram.methods.base import Response
from aiogram.types import Message

from handlers.telegram.session import HeldResponseTypes, TolerantSession
from tests.telegram.conftest import Harness


async def test_the_type_of_a_reply_outlives_a_collection(telegram: Harness) -> None:
    prospect = telegram.prospect()
    await prospect.text("/start")
    built = weakref.ref(Response[Message])
    gc.collect()  # without the session holding it, pydantic's cache lets the class go
    assert built() is not None
    await prospect.text("/menu")
    assert Response[Message] is built()  # the next reply parsed with the same class


def test_the_running_bot_holds_reply_types_too() -> None:
    assert issubclass(TolerantSession, HeldResponseTypes)
