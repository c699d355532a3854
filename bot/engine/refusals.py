"""Telling a refusal to answer a question ("не хочу давать телефон", "пропустить") from an
answer, in Russian. The whole message must be a refusal: a refusal phrase with only words
about giving data around it, so that "не хочу терять заявки" stays an answer to "Опишите
задачу". A choice option's own text is matched before this (an option "Нет" is an answer)."""

from __future__ import annotations

import re

# Phrases that refuse or put off an answer, in lowercase with "е" for "ё". Matched as whole
# words, longest first, so "не хочу" is taken before "нет" could be looked for in it.
PHRASES = (
    "нет",
    "неа",
    "no",
    "не хочу",
    "не хотелось бы",
    "не желаю",
    "не буду",
    "не стану",
    "не скажу",
    "не дам",
    "не могу",
    "не готов",
    "не готова",
    "не знаю",
    "затрудняюсь",
    "не надо",
    "не нужно",
    "не обязательно",
    "необязательно",
    "не сейчас",
    "потом",
    "позже",
    "отказываюсь",
    "откажусь",
    "обойдусь",
    "обойдемся",
    "пропустить",
    "пропусти",
    "пропустим",
    "пропускаю",
    "пропуск",
    "skip",
    "дальше",
    "далее",
    "анонимно",
    "без телефона",
    "без номера",
    "без имени",
    "без почты",
    "без email",
    "без e mail",
    "без емейла",
    "без контактов",
    "без этого",
)

# Words that may stand beside a refusal without making the message an answer: whom and what
# it is about ("давать свой номер"), and politeness ("извините", "пока").
COMPANIONS = frozenset(
    (  # noqa: SIM905 - a list of words reads best as words
        # softeners and pronouns
        "я а ну же уж бы ли и но так просто вообще совсем пока сейчас лучше можно давайте "
        "давай спасибо пожалуйста извините простите вам вас вами это этого этот эту этим "
        "его ее их свой свою свое своего мой мою мое моего никакой никакого никакие ни "
        "никому никак ничего на этот вопрос вопросы не хочу буду хотелось бы "
        # what is refused
        "телефон телефона телефоны номер номера номерок мобильный мобильного контакт "
        "контакты контактов данные данных личные личных персональные персональных имя "
        "имени фамилию фамилия почту почты почта адрес адреса email e mail емейл емейла "
        "имейл мейл ответ ответа отвечать "
        # ways of giving it
        "давать дать говорить сказать оставлять оставить сообщать сообщить писать написать "
        "указывать указать ответить называть назвать делиться поделиться светить "
        "раскрывать отправлять отправить присылать прислать диктовать продиктовать"
    ).split()
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_PHRASES = sorted((tuple(p.split()) for p in PHRASES), key=len, reverse=True)
MAX_WORDS = 12  # a longer message says something: it is an answer or a question


def is_refusal(text: str) -> bool:
    """True when the message refuses or puts off the answer and says nothing else."""
    words = _WORD.findall(text.casefold().replace("ё", "е"))
    if not words or len(words) > MAX_WORDS:
        return False
    refused, rest, at = False, [], 0
    while at < len(words):
        phrase = next((p for p in _PHRASES if tuple(words[at : at + len(p)]) == p), None)
        if phrase is None:
            rest.append(words[at])
            at += 1
        else:
            refused = True
            at += len(phrase)
    return refused and all(word in COMPANIONS for word in rest)
