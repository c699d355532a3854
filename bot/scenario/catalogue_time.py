"""The `leadbot check` texts about time: chains that repeat, time triggers (dates, silence)
and booking calendars (`slots:`); part of `bot.scenario.catalogue.CATALOGUE`."""

from __future__ import annotations

TIME_TEXTS: dict[str, tuple[str, str]] = {
    # ---- chains that repeat and time triggers ----
    "broadcast.every": (
        "every: takes whole days (1d, 1w, 2w) with at: the first time, or "
        '{{weekday: thu, at: "11:00"}}, not {value!r}',
        "every: — это целые дни (1d, 1w, 2w) вместе с at: первым разом, или "
        '{{weekday: чт, at: "11:00"}}, а не {value!r}',
    ),
    "broadcast.weekday": (
        "unknown weekday {value!r}: write mon..sun or пн..вс",
        "непонятный день недели {value!r}: пишите пн..вс или mon..sun",
    ),
    "broadcast.every_needs_at": (
        'every: with a period needs at: the first time, like "2026-12-03 11:00"',
        'every: с периодом нужен at: первый раз, например "2026-12-03 11:00"',
    ),
    "question.slot_calendar": (
        "a slot question names its calendar (calendar: <id from slots:>), and only it does",
        "вопросу type: slot нужен календарь (calendar: <id из slots:>), а другим вопросам — нет",
    ),
    "step.before_needs_slot": (
        "before: counts from a booked time: the chain needs start_on: {{slot: <calendar>}}",
        "before: отсчитывается от времени записи: цепочке нужен start_on: {{slot: <календарь>}}",
    ),
    "ref.calendar": ("unknown calendar {name!r}{more}", "неизвестный календарь {name!r}{more}"),
    "check.slot_in_step": (
        "a slot question is asked in an offer (ask:), not by a chain's step",
        "вопрос type: slot задаётся в оффере (ask:), а не шагом цепочки",
    ),
    "sequence.repeat_needed": (
        "max_runs: and min_gap: only apply to a chain that repeats: add repeat: true",
        "max_runs: и min_gap: нужны только цепочке, которая повторяется: добавьте repeat: true",
    ),
    "start_on.before_needs_date": (
        "before: and at: count from a date, so they need date:",
        "before: и at: отсчитываются от даты, поэтому нужен date:",
    ),
    "start_on.at_whole_days": (
        "with at: the time before the date is whole days (1d, 3d, 1w), not {before}",
        "вместе с at: срок до даты должен быть в целых днях (1d, 3d, 1w), а не {before}",
    ),
    "start_on.inactive_short": (
        "inactive: is at least 1h; a lead is not gone after a few minutes of silence",
        "inactive: не меньше 1h: несколько минут тишины — ещё не уход",
    ),
    "start_on.timed_here": (
        "a date or inactivity starts only a chain; here use event: or stage:",
        "дата или неактивность запускают только цепочку; здесь нужен event: или stage:",
    ),
    "lint.silence_outlasted": (
        "this chain for the silent goes on after the lead writes again: add stop_on: [returned]",
        "эта цепочка для замолчавших продолжится, даже когда человек снова напишет: "
        "добавьте stop_on: [returned]",
    ),
    "ref.date_question": (
        "date: names a question of type: date, and {name!r} is none{more}",
        "в date: нужен вопрос с type: date, а {name!r} не такой{more}",
    ),
    # ---- slots: calendars ----
    # A booking calendar of the `slots:` section (bot/scenario/slots.py).
    "slots.title": (
        "give the calendar a title:, like Консультация",
        "укажите название календаря в title:, например Консультация",
    ),
    "slots.duration": (
        "a slot lasts from 1m to 1d, not {value}: like duration: 60m",
        "слот длится от 1m до 1d, а указано {value}: например, duration: 60m",
    ),
    "slots.every": (
        "slots start every 1m to 1d, not every {value}: like every: 30m "
        "(left out, it is the duration:)",
        "слоты начинаются с шагом от 1m до 1d, а указано every: {value}: например, every: 30m "
        "(если не указать, шаг равен duration:)",
    ),
    "slots.capacity": (
        "capacity: {value} is less than 1: give how many people book one slot, "
        "1 for a meeting, 8 for a group",
        "capacity: {value} меньше 1: укажите, сколько человек записывается на один слот: "
        "1 — встреча один на один, 8 — группа",
    ),
    "slots.ahead": (
        "slots are offered 1m to 365d ahead, not {value}: like ahead: 14d",
        "слоты предлагаются на срок от 1m до 365d вперёд, а указано ahead: {value}: "
        "например, ahead: 14d",
    ),
    "slots.notice": (
        "notice: {notice} is not shorter than ahead: {ahead}, so no slot could ever be booked: "
        "like notice: 2h, ahead: 14d",
        "notice: {notice} не меньше ahead: {ahead}, так что записаться не получится никогда: "
        "например, notice: 2h, ahead: 14d",
    ),
    "slots.no_hours": (
        "give the hours of at least one manager or room, like hours: {{anna: {{mon-fri: "
        '"10:00-18:00"}}}}',
        "в hours: нужны часы хотя бы одного менеджера или зала, например hours: {{anna: "
        '{{пн-пт: "10:00-18:00"}}}}',
    ),
    "slots.resource": (
        "bad name {value!r} of a manager or a room: use 1-32 latin letters, digits or _, "
        "like anna or room_1",
        "неподходящее имя {value!r} менеджера или зала: нужны 1–32 латинские буквы, цифры "
        "или _, например anna или room_1",
    ),
    "slots.week": (
        'give the days with their hours, like mon-fri: "10:00-18:00"',
        'нужны строки «дни: часы», например пн-пт: "10:00-18:00"',
    ),
    "slots.day": (
        "unknown day {value!r}: write mon..sun or пн..вс, a range with a hyphen (mon-fri), "
        "several days with commas (tue, thu)",
        "непонятный день {value!r}: пишите mon..sun или пн..вс, диапазон через дефис (пн-пт), "
        "несколько дней через запятую (вт, чт)",
    ),
    "slots.day_twice": (
        "{day} is named twice ({keys}): give each day one line of hours, several intervals "
        'with commas, like mon: "10:00-13:00, 14:00-18:00"',
        "день {day} назван дважды ({keys}): у каждого дня одна строка с часами, несколько "
        'промежутков пишите через запятую, например пн: "10:00-13:00, 14:00-18:00"',
    ),
    "slots.interval": (
        'bad hours {value!r}: use "HH:MM-HH:MM" in quotes, several with commas, '
        'like "10:00-13:00, 14:00-18:00"',
        'непонятные часы {value!r}: нужно "ЧЧ:ММ-ЧЧ:ММ" в кавычках, несколько — через '
        'запятую, например "10:00-13:00, 14:00-18:00"',
    ),
    "slots.interval_order": (
        'the hours {value!r} do not end after they start: like "10:00-18:00"; until midnight '
        'is "18:00-24:00", and hours after midnight belong to the next day',
        'в часах {value!r} конец не позже начала: нужно, например, "10:00-18:00"; до полуночи '
        '— "18:00-24:00", а часы после полуночи запишите следующему дню',
    ),
    "slots.overlap": (
        "the hours {first} and {second} overlap: join them into one interval or part them, "
        'like "10:00-13:00, 14:00-18:00"',
        "часы {first} и {second} пересекаются: объедините их в один промежуток или разведите, "
        'например "10:00-13:00, 14:00-18:00"',
    ),
    "slots.no_slot": (
        "{resource!r} has no hours as long as a slot ({duration}), so nobody can book them: "
        "lengthen the hours or shorten duration:",
        "в часах {resource!r} нет ни одного промежутка длиной хотя бы в слот ({duration}), "
        "так что туда не записаться: удлините часы или сократите duration:",
    ),
    "slots.closed": (
        'bad closed date {value!r}: use "2026-12-31" or a range "2027-01-01..2027-01-08"',
        'непонятная дата {value!r} в closed: нужно "2026-12-31" или диапазон '
        '"2027-01-01..2027-01-08"',
    ),
    "slots.closed_order": (
        "the range {value!r} ends before it starts: the earlier date goes first, "
        'like "2027-01-01..2027-01-08"',
        "диапазон {value!r} кончается раньше, чем начинается: сначала ранняя дата, например "
        '"2027-01-01..2027-01-08"',
    ),
}
