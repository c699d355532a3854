"""The commands in plain words: «стоп» or «отпишите меня» for /stop, «удалите мои данные»
for /delete. People write these rather than a command (VK has no command menu at all), and
"I did not understand" to «отпишите меня» is the worst answer there is. The whole message
must be the request (politeness aside), so "стоп, а сколько стоит?" stays a question."""

from __future__ import annotations

import re

STOP = frozenset(
    {
        "стоп",
        "stop",
        "unsubscribe",
        "отписаться",
        "отписка",
        "отпишите",
        "отпишите меня",
        "отпишись",
        "отписаться от рассылки",
        "отпишите от рассылки",
        "отпишите меня от рассылки",
        "отпишите меня от рассылок",
        "уберите из рассылки",
        "уберите меня из рассылки",
        "не присылайте",
        "больше не присылайте",
        "не присылайте больше",
        "не пишите мне",
        "не пишите мне больше",
        "больше не пишите",
        "хватит",
        "хватит присылать",
        "хватит писать",
        "не надо присылать",
        "не нужна рассылка",
        "не хочу рассылку",
        "не хочу получать рассылку",
    }
)
DELETE = frozenset(
    {
        "удалите мои данные",
        "удалите все мои данные",
        "удалите данные",
        "удалить мои данные",
        "удалить данные",
        "удалите меня",
        "удалите меня из базы",
        "удалите мои данные из базы",
        "забудьте меня",
        "забудьте мои данные",
    }
)
_POLITE = frozenset({"пожалуйста", "please", "плиз", "спасибо"})
_WORDS = re.compile(r"[a-zа-я]+")


def _said(text: str) -> str:
    words = _WORDS.findall(text.lower().replace("ё", "е"))
    return " ".join(word for word in words if word not in _POLITE)


def asks_to_stop(text: str) -> bool:
    return _said(text) in STOP


def asks_to_delete(text: str) -> bool:
    return _said(text) in DELETE
