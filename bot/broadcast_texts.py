"""What `leadbot broadcast` tells the marketer who runs it, in the language of the scenario
(Russian): counts, the preview, the send window, progress, and what is wrong with a segment.
Pure functions from values to lines, so the wording is pinned by tests in one place."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import ValidationError

from bot.broadcasts import Audience, Forecast, SampleLead, UnknownName
from bot.scenario.conditions import RULE_KINDS
from bot.scenario.model import StepButton
from bot.scenario.settings import ScenarioSettings
from bot.scenario.source import format_path
from bot.scenario.wording import Say
from storage.broadcast_runs import CANCELLED_BY_COMMAND, Progress
from storage.models import BroadcastRun

BAR_WIDTH = 20
ZONES_SHOWN = 6  # time zones listed one by one in a dry run; the rest are summed up
# Queued messages this long past due mean no bot is sending (or it is far behind).
OVERDUE = timedelta(minutes=5)

UNKNOWN = {
    "offer": "неизвестный оффер",
    "source": "неизвестный источник",
    "tag": "неизвестный тег",
    "event": "неизвестное событие",
    "question": "неизвестный вопрос",
}
NONE_KNOWN = {
    "offer": "в сценарии нет офферов",
    "source": "ни один лид не пришёл по ссылке с источником, и правила сценария их не называют",
    "tag": "сценарий не ставит тегов, и ни у одного лида их нет",
    "event": "таких событий нет",
    "question": "в сценарии нет вопросов",
}
EXCLUDED = {
    "no_consent": "нет согласия на рекламу",
    "unsubscribed": "отписались",
    "blocked": "заблокировали бота",
    "had_it": "уже получили или ждут эту рассылку",
}
# Why a row of a broadcast did not go out, as the delivery worker records it (last_error).
REASONS = {
    CANCELLED_BY_COMMAND: "отменено командой --cancel",
    "no advertising consent": "нет согласия на рекламу",
    "unsubscribed, blocked or erased": "отписался, заблокировал бота или удалил данные",
    "blocked": "заблокировал бота",
    "broadcast removed from the scenario": "рассылку убрали из сценария",
    "lead gone": "лида больше нет",
    "merged: the person has this one already": "у человека уже есть эта рассылка (объединение)",
    "a gate closed before it was sent (stop, block, chain, erasure)": (
        "отписался, заблокировал бота или удалил данные перед самой отправкой"
    ),
}
RULES_HELP = Say("schema.rule_kinds").render("ru")  # as `leadbot check` says it


def plural(number: int, one: str, few: str, many: str) -> str:
    """`number` with the Russian form of the word it takes: 1 лид, 2 лида, 5 лидов."""
    tens, units = number % 100, number % 10
    if units == 1 and tens != 11:
        word = one
    elif 2 <= units <= 4 and not 12 <= tens <= 14:
        word = few
    else:
        word = many
    return f"{number} {word}"


def _of(number: int, one: str, many: str) -> str:
    """`number` with the genitive the word takes after "для" or "не больше": 1 лида, 5 лидов."""
    return f"{number} {one if number % 10 == 1 and number % 100 != 11 else many}"


def leads(number: int) -> str:
    return plural(number, "лид", "лида", "лидов")


def messages(number: int) -> str:
    return plural(number, "сообщение", "сообщения", "сообщений")


# ---- what is wrong with a segment ----


def unknown_name(where: str, unknown: UnknownName) -> str:
    text = f"{where}: {UNKNOWN[unknown.kind]} {unknown.name!r}"
    if unknown.suggestion is not None:
        return f"{text} — возможно, имелось в виду {unknown.suggestion!r}?"
    if not unknown.known:
        return f"{text} ({NONE_KNOWN[unknown.kind]})"
    listed = ", ".join(unknown.known[:12]) + (", ..." if len(unknown.known) > 12 else "")
    return f"{text} (известны: {listed})"


def segment_syntax(where: str, error: Exception) -> str:
    """A segment that is not a rule, in one line: the first thing wrong with it."""
    if isinstance(error, yaml.YAMLError):
        return f"{where}: не читается как YAML: {_yaml_problem(error)}"
    if isinstance(error, ValidationError):
        errors = error.errors()
        more = len(errors) - 1
        tail = f" (и ещё {plural(more, 'ошибка', 'ошибки', 'ошибок')})" if more else ""
        return _rule_problem(where, errors[0]) + tail
    return f"{where}: {error}"


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = str(getattr(error, "problem", None) or error).strip()
    if "<stream end>" in problem and "'}'" in problem:
        problem = "не хватает закрывающей }"
    elif "<stream end>" in problem and "']'" in problem:
        problem = "не хватает закрывающей ]"
    elif problem == "mapping values are not allowed here":
        problem = "лишнее двоеточие (текст с двоеточием возьмите в кавычки)"
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (символ {mark.column + 1})" if mark is not None else problem


def _rule_problem(where: str, error: Any) -> str:
    kind, value = error["type"], error.get("input")
    path = _path(error["loc"])
    place = f"{where}: {format_path(path)}" if path else where
    if kind == "rule":
        return f"{where}: {_not_a_rule(value)}"
    if kind == "string_pattern_mismatch":
        return f"{place}: {value!r} — не имя: 1–32 латинские буквы, цифры или _, без пробелов"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(str(value), allowed, n=1)
        what = "неизвестная стадия" if path and path[-1] == "stage" else "не подходит значение"
        if close:
            return f"{place}: {what} {value!r} — возможно, имелось в виду {close[0]!r}?"
        return f"{place}: {what} {value!r} (можно: {', '.join(allowed)})"
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        worded = getattr(cause, "say", None)  # the scenario's own wording (a `Say`), if any
        if worded is not None:
            return f"{place}: {worded.render('ru')}"
        message = str(cause or error["msg"])
        if message.startswith("bad comparison"):
            return f'{place}: {value!r} — нужно число или сравнение, например ">= 60"'
        if message.startswith("bad event condition"):
            return f'{place}: {value!r} — нужно имя события или "имя >= 3"'
        return f"{place}: {message}"
    text = {
        "too_short": "пустой список",
        "list_type": "нужен список правил, например [{tag: a}, {tag: b}]",
        "string_type": f"нужен текст, а не {value!r}",
        "dict_type": "нужна пара ключ: значение, например {вопрос: ответ}",
        "model_type": "нужна пара ключ: значение",
    }.get(kind, str(error["msg"]))
    return f"{place}: {text}"


def _not_a_rule(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        key = str(next(iter(value)))
        close = difflib.get_close_matches(key, RULE_KINDS, n=1)
        if close:
            return f"неизвестное правило {key!r} — возможно, имелось в виду {close[0]!r}?"
        return f"неизвестное правило {key!r}: {RULES_HELP}"
    return f"не правило: {value!r}; {RULES_HELP}"


def _path(loc: Sequence[Any]) -> tuple[Any, ...]:
    """Pydantic's location without the tags it repeats: ('not', 'not', 'stage', 'stage')
    is `not.stage` in the segment."""
    path: list[Any] = []
    for part in loc:
        if not path or part != path[-1]:
            path.append(part)
    return tuple(path)


# ---- a dry run ----


def audience_lines(crowd: Audience, had_it: int) -> list[str]:
    reach = len(crowd.reachable) - had_it
    lines = [f"Под сегмент подходят: {leads(crowd.matched)}. Получат: {leads(reach)}."]
    excluded = {**crowd.excluded, "had_it": had_it}
    if crowd.matched - reach:
        lines.append(f"Не получат: {leads(crowd.matched - reach)}:")
        lines += [f"  {EXCLUDED[why]} — {n}" for why, n in excluded.items() if n]
    return lines


def preview_lines(
    text: str,
    values: dict[str, str],
    buttons: Sequence[StepButton],
    file: str | None,
    sample: SampleLead | None,
) -> list[str]:
    """The message as the sample lead would get it; codes and links are shown as what they
    are, since each lead's own is made only when the message goes out."""
    if sample is None:
        lines = ["Пример сообщения (в сегменте нет лидов, подстановки не заполнены):"]
    else:
        who = ", ".join(part for part in (sample.first_name, sample.channel) if part)
        lines = [f"Пример сообщения для лида #{sample.id}" + (f" ({who}):" if who else ":")]
    lines += [f"  │ {line}" for line in _filled(text, values).splitlines() or [""]]
    for button in buttons:
        lines.append(f"  │ [{button.text}] → {_button_does(button)}")
    if file:
        lines.append(f"  │ [файл] {file}")
    return lines


def _filled(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name in values:
            return values[name]
        if name == "referral_link":
            return "‹ссылка для друзей›"
        parts = name.split(".")
        if parts[0] == "promo" and len(parts) == 3:
            return f"‹срок промокода {parts[1]}›"
        if parts[0] == "promo":
            return f"‹промокод {parts[1]}›"
        return match.group(0)  # no value: shown as written

    return re.sub(r"\{\{|\}\}|\{([^{}]*)\}", value, text)


def _button_does(button: StepButton) -> str:
    if button.url:
        return f"ссылка {button.url}" + (f", событие {button.event}" if button.event else "")
    if button.offer:
        return f"оффер {button.offer}"
    does = f"событие {button.event}"
    return does + (", к менеджерам" if button.handoff else "")


def window_lines(
    window: Forecast,
    settings: ScenarioSettings,
    at: datetime | None,
    now: datetime,
    limits: dict[str, float],
) -> list[str]:
    """When the messages would go out: for each time zone, and what quiet hours and the
    advertising limit change."""
    if not window.dues:
        return ["Отправлять некому."]
    when = f"{at:%Y-%m-%d %H:%M} по местному времени каждого лида" if at else "сразу"
    if at is not None and all(zone.due <= now for zone in window.zones):
        when += " (это время уже прошло: сразу)"
    quiet = settings.quiet_hours
    quiet_text = f"; тихие часы {quiet[0]:%H:%M}–{quiet[1]:%H:%M}" if quiet else ""
    lines = [f"Когда: {when}{quiet_text}."]
    for zone in window.zones[:ZONES_SHOWN]:
        local = zone.due.astimezone(ZoneInfo(zone.zone))
        moment = "сразу" if zone.due <= now else f"{local:%Y-%m-%d %H:%M} ({zone.due:%H:%M} UTC)"
        note = ", после тихих часов" if zone.after_quiet_hours else ""
        lines.append(f"  {zone.zone} — {leads(zone.leads)}: {moment}{note}")
    rest = window.zones[ZONES_SHOWN:]
    if rest:
        zones = plural(len(rest), "пояс", "пояса", "поясов")
        lines.append(f"  ещё {zones} — {leads(sum(z.leads for z in rest))}")
    limit = settings.ad_limit
    if limit is not None:
        rule = f"Лимит рекламы (не больше {_of(limit.max, 'сообщения', 'сообщений')} за "
        rule += f"{_span(limit.per.total_seconds())})"
        if window.held:
            latest = max(window.held.values())
            until = "до" if len(window.held) == 1 else "самое позднее до"
            lines.append(
                f"{rule} отложит отправку для {_of(len(window.held), 'лида', 'лидов')} — "
                f"{until} {latest:%Y-%m-%d %H:%M} UTC."
            )
        else:
            lines.append(f"{rule} никого не задерживает.")
    first, last = window.first, window.last
    if first is not None and last is not None and last > first:
        lines.append(f"Первые уйдут {_moment(first, now)}, последние — {_moment(last, now)}.")
    pace = _pace(window.channels, limits)
    if pace:
        lines.append(pace)
    return lines


def _moment(moment: datetime, now: datetime) -> str:
    return "сразу" if moment <= now else f"{moment:%Y-%m-%d %H:%M} UTC"


def _span(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86_400)
    if not rest:
        return "неделю" if days == 7 else plural(days, "день", "дня", "дней")
    if seconds % 3600:
        return plural(int(seconds // 60), "минуту", "минуты", "минут")
    return plural(int(seconds // 3600), "час", "часа", "часов")


def _pace(channels: dict[str, int], limits: dict[str, float]) -> str | None:
    """How long the platforms' limits make the sending itself take, if that is minutes."""
    slowest = max(
        (
            (count / limits[channel], channel)
            for channel, count in channels.items()
            if channel in limits
        ),
        default=None,
    )
    if slowest is None or slowest[0] < 60:
        return None
    seconds, channel = slowest
    return (
        f"Сама отправка займёт не меньше {round(seconds / 60)} мин: "
        f"{channel} пропускает {limits[channel]:g} сообщений в секунду."
    )


# ---- progress ----


def bar(progress: Progress, total: int) -> str:
    """`[████▒▒░░░░]`: sent, then what will not go out, then what waits."""
    if not total:
        return "[" + "░" * BAR_WIDTH + "]"
    sent = progress.count("sent")
    stopped = progress.count("failed", "cancelled", "skipped")
    full = round(BAR_WIDTH * sent / total)
    crossed = round(BAR_WIDTH * (sent + stopped) / total) - full
    return "[" + "█" * full + "▒" * crossed + "░" * (BAR_WIDTH - full - crossed) + "]"


def run_lines(
    run: BroadcastRun, progress: Progress, now: datetime, *, detailed: bool = False
) -> list[str]:
    """A run's header and progress line; `detailed` adds why rows did not go out."""
    total = sum(progress.counts.values())
    done = total - progress.count("pending", "sending")
    percent = round(100 * done / total) if total else 100
    header = f"{run.id}  поставлена {run.created_at:%Y-%m-%d %H:%M} UTC"
    if run.at:
        header += f", на {run.at} по времени лида"
    if run.cancelled_at:
        header += f", отменена {run.cancelled_at:%Y-%m-%d %H:%M} UTC"
    counts = [
        f"отправлено {progress.count('sent')}",
        f"ждут {progress.count('pending', 'sending')}",
        f"не доставлено {progress.count('failed', 'skipped')}",
        f"отменено {progress.count('cancelled')}",
    ]
    lines = [header, f"  {bar(progress, total)} {percent:3d}%  {' · '.join(counts)}  из {total}"]
    due = progress.next_due
    if due is not None and due > now:
        lines.append(f"  следующие уйдут не раньше {due:%Y-%m-%d %H:%M} UTC")
    elif due is not None and now - due > OVERDUE:
        lines.append(f"  срок отправки наступил в {due:%Y-%m-%d %H:%M} UTC: работает ли бот?")
    if detailed:
        if run.segment:
            lines.append(f"  сегмент: {run.segment}")
        if run.text:
            lines.append(f"  текст: {run.text}")
        for (status, error), number in sorted(progress.reasons.items(), key=lambda r: -r[1]):
            lines.append(f"  {REASONS.get(error, error or status)} — {number}")
    return lines
