"""Every text of `leadbot check` and of the reload report, in English and Russian, keyed by
message id. The checks name a message by its id (`bot.scenario.wording.Say`); the language is
the scenario's own. Russian is written for a marketer, not translated word for word."""

from __future__ import annotations

from bot.scenario.catalogue_time import TIME_TEXTS

# id: (English, Russian). Values go in as `{name}` (`{name!r}` quotes a name as the marketer
# wrote it); `{n:file|files}` writes the number with the word in the form that number takes
# (Russian has three: `{n:файл|файла|файлов}`); `{n:,}` groups the digits of a big number.
CATALOGUE: dict[str, tuple[str, str]] = {
    # ---- the folder and its files ----
    "folder.missing": ("no such scenario folder", "такой папки сценария нет"),
    "folder.no_yaml": ("no *.yaml files in this folder", "в этой папке нет файлов *.yaml"),
    "file.too_big": (
        "the file is over {limit:,} bytes; a scenario file is far smaller",
        "файл больше {limit:,} байт; файл сценария намного меньше",
    ),
    "file.unreadable": ("cannot read: {error}", "не удаётся прочитать файл: {error}"),
    "file.not_utf8": (
        "not UTF-8 text: save the file in the UTF-8 encoding",
        "файл не в кодировке UTF-8: сохраните его в UTF-8",
    ),
    "file.too_deep": (
        "values are nested too deeply; a scenario nests a few levels",
        "слишком глубокая вложенность; в сценарии вложено лишь несколько уровней",
    ),
    "file.alias_bomb": (
        "over {limit:,} values once the aliases (*name) are written out: an alias repeats a "
        "large part, or aliases repeat each other",
        "больше {limit:,} значений, если раскрыть ссылки (*имя): ссылка повторяет большой "
        "кусок, или ссылки повторяют друг друга",
    ),
    "file.not_sections": (
        "a scenario file holds sections (version:, start:, offers:, ...), not a list or a text",
        "в файле сценария должны быть разделы (version:, start:, offers:, ...), "
        "а не список или текст",
    ),
    "merge.duplicate_id": (
        "duplicate id, also defined at {first}",
        "этот id уже есть в {first}",
    ),
    "merge.section_twice": (
        "this section is already in {first}; keep it in one file",
        "этот раздел уже есть в {first}; оставьте его в одном файле",
    ),
    # Files in the folder that the bot does not read (warnings).
    "ignored.rename": (
        "not read: only files ending in .yaml are; rename it to {name}",
        "этот файл не читается: бот читает только файлы с окончанием .yaml; "
        "переименуйте его в {name}",
    ),
    "ignored.copy": (
        "not read: only files ending in .yaml are; if it is a backup copy, move it out of the "
        "folder",
        "этот файл не читается: бот читает только файлы с окончанием .yaml; "
        "если это резервная копия, уберите её из папки",
    ),
    "ignored.nested": (
        "not read: only the *.yaml files right in {folder} are, not those in folders inside it",
        "этот файл не читается: бот читает только файлы *.yaml прямо в папке {folder}, "
        "а не во вложенных папках",
    ),
    "ignored.other": (
        "not read and not sent: the scenario is the *.yaml files, and no file: names this one",
        "этот файл не читается и не отправляется: сценарий — это файлы *.yaml, "
        "и ни один file: его не называет",
    ),
    # ---- YAML syntax ----
    "yaml": ("YAML syntax: {what}", "ошибка в записи YAML: {what}"),
    "yaml.tab": (
        "a tab character; indent with spaces",
        "символ табуляции; отступы делайте пробелами",
    ),
    "yaml.colon": (
        'a colon inside a text (put the text in quotes, like text: "Важно: ...") '
        "or a key indented too far",
        'двоеточие внутри текста (возьмите текст в кавычки, например text: "Важно: ...") '
        "или лишний отступ у ключа",
    ),
    "yaml.quote": ("a quote is not closed", "кавычка открыта, но не закрыта"),
    "yaml.bracket": (
        "a [ is not closed with ] or a comma is missing; quote texts that have a colon",
        "скобка [ не закрыта скобкой ] или не хватает запятой; "
        "текст с двоеточием возьмите в кавычки",
    ),
    "yaml.brace": (
        "a {{ is not closed with }} or a comma is missing; quote texts that have a colon",
        "скобка {{ не закрыта скобкой }} или не хватает запятой; "
        "текст с двоеточием возьмите в кавычки",
    ),
    "yaml.alias": (
        "*{name} refers to no &{name} anchor above it",
        "*{name} ссылается на якорь &{name}, а выше такого нет",
    ),
    "yaml.not_key_value": (
        "this line is not key: value; if it goes on with a text, indent it under the key",
        "строка не в виде «ключ: значение»; если она продолжает текст, "
        "сдвиньте её отступом под ключ",
    ),
    "yaml.unclosed_at_end": (
        "the file ends before a [ or {{ is closed",
        "файл кончился, а скобка [ или {{ не закрыта",
    ),
    "yaml.indentation": (
        "the indentation does not match the lines above",
        "отступ не совпадает с отступами строк выше",
    ),
    "yaml.bad_start": (
        "a text cannot start with {character}; put the text in quotes",
        "текст не может начинаться с {character}; возьмите текст в кавычки",
    ),
    "yaml.other": ("{raw}", "{raw}"),  # PyYAML's own words, for what it rarely says
    "yaml.key_not_word": ("keys must be plain words", "ключ должен быть простым словом"),
    "yaml.key_twice": (
        "this key is already given at line {line}; keep one",
        "этот ключ уже есть в строке {line}; оставьте один",
    ),
    # ---- the schema ----
    "schema.unknown_key": ("unknown key {key!r}{hint}", "неизвестный ключ {key!r}{hint}"),
    "schema.missing_section": ("missing required section", "нет обязательного раздела"),
    "schema.missing_key": ("missing required key {key!r}", "нет обязательного ключа {key!r}"),
    "schema.text": ("expected text", "нужен текст"),
    "schema.whole_number": ("expected a whole number", "нужно целое число"),
    "schema.number": ("expected a number", "нужно число"),
    "schema.bool": ("expected true or false", "нужно true или false"),
    "schema.mapping": (
        "expected a mapping of key: value lines",
        "нужны строки вида «ключ: значение»",
    ),
    "schema.list": ("expected a list", "нужен список"),
    "schema.date": ("expected a date like 2026-12-31", "нужна дата вида 2026-12-31"),
    "schema.empty": ("must not be empty", "не может быть пустым"),
    "schema.one_of": ("should be {expected}", "допустимо только {expected}"),
    "schema.one_of_many": ("should be {others} or {last}", "допустимо только {others} или {last}"),
    "schema.at_least": (
        "should be greater than or equal to {limit}",
        "должно быть не меньше {limit}",
    ),
    "schema.at_most_chars": (
        "should have at most {limit:character|characters}",
        "не длиннее {limit:символа|символов|символов}",
    ),
    "schema.bad_id": (
        "bad id {value!r}: use 1-32 latin letters, digits or _ (no spaces)",
        "неподходящий id {value!r}: нужны 1–32 латинские буквы, цифры или _ (без пробелов)",
    ),
    "schema.bad_prefix": (
        "bad prefix {value!r}: use 1-12 capital latin letters or digits",
        "неподходящий префикс {value!r}: нужны 1–12 заглавных латинских букв или цифр",
    ),
    "schema.bad_code": (
        "bad code {value!r}: use 3-32 latin letters, digits, _ or -",
        "неподходящий код {value!r}: нужны 3–32 латинские буквы, цифры, _ или -",
    ),
    "schema.unknown_rule": (
        "unknown rule {name!r}: {kinds}",
        "неизвестное правило {name!r}: {kinds}",
    ),
    "schema.rule_kinds": (
        "a rule is one of any, all, not, score, tag, stage, event, answer, contact, source, "
        "offer, rfm, purchases, revenue, last_purchase, or an event name like "
        '"case_read" or "pricing_viewed >= 3"',
        "правило — это одно из any, all, not, score, tag, stage, event, answer, contact, "
        "source, offer, rfm, purchases, revenue, last_purchase или имя события, например "
        '"case_read" или "pricing_viewed >= 3"',
    ),
    "schema.other": ("{text}", "неверное значение: {text}"),  # pydantic's words, rarely seen
    # The schema's own validators (bot/scenario/model.py, fields.py, settings.py, ...).
    "value.duration": (
        "bad duration {value!r}: use a whole number and a unit m, h, d or w (30m, 1h, 2d, 1w)",
        "непонятный срок {value!r}: нужно целое число и буква m, h, d или w (30m, 1h, 2d, 1w)",
    ),
    "value.time_quotes": (
        'write times in quotes, like at: "11:00"',
        'время пишите в кавычках, например at: "11:00"',
    ),
    "value.time": (
        'bad time {value!r}: use HH:MM, like "11:00"',
        'непонятное время {value!r}: нужно ЧЧ:ММ, например "11:00"',
    ),
    "value.zone": (
        "unknown time zone {value!r}: use a name like Europe/Moscow",
        "неизвестный часовой пояс {value!r}: нужно название вроде Europe/Moscow",
    ),
    "value.quiet_hours": (
        'bad quiet hours {value!r}: use "HH:MM-HH:MM" in quotes, like "21:00-10:00"',
        'непонятные тихие часы {value!r}: нужно "ЧЧ:ММ-ЧЧ:ММ" в кавычках, например "21:00-10:00"',
    ),
    "value.window": (
        "the window needs a length, like 1w or 7d",
        "у окна должна быть длина, например 1w или 7d",
    ),
    "value.comparison": (
        'bad comparison {value!r}: use an operator and a number, like ">= 60"',
        'непонятное сравнение {value!r}: нужны знак и число, например ">= 60"',
    ),
    "value.event_condition": (
        'bad event condition {value!r}: use a name or "name >= 3"',
        'непонятное условие {value!r}: нужно имя события или "имя >= 3"',
    ),
    "value.recency": (
        "last_purchase takes one of within: or over: with a duration, like {{within: 90d}}",
        "в last_purchase нужно что-то одно: within: или over: с длительностью, "
        "например {{within: 90d}}",
    ),
    "value.rfm_segment": (
        "unknown RFM segment {name!r}{more}",
        "неизвестный RFM-сегмент {name!r}{more}",
    ),
    "value.rfm_order": (
        "the RFM thresholds go up: recent < lapsing < lost, like {{recent: 30d, lapsing: 90d, "
        "lost: 180d}}",
        "пороги RFM идут по возрастанию: recent < lapsing < lost, например {{recent: 30d, "
        "lapsing: 90d, lost: 180d}}",
    ),
    "value.moment_zone": (
        "give a local time without a zone: each lead gets it in their own",
        "укажите местное время без часового пояса: каждый лид получит сообщение по своему "
        "местному времени",
    ),
    "value.moment": (
        'bad moment {value!r}: use "YYYY-MM-DD HH:MM" in quotes, like "2026-12-01 11:00"',
        'непонятные дата и время {value!r}: нужно "ГГГГ-ММ-ДД ЧЧ:ММ" в кавычках, '
        'например "2026-12-01 11:00"',
    ),
    "offer_button.label": (
        "an offer: button shows the offer's title; give it no text: or url:",
        "кнопка offer: показывает название оффера; text: и url: ей не нужны",
    ),
    "deliver.file_or_url": (
        "give either file: (a path in the scenario folder) or url:, not both",
        "укажите что-то одно: file: (путь в папке сценария) или url:",
    ),
    "question.needs_options": (
        "a choice question needs options:",
        "вопросу с выбором нужны варианты в options:",
    ),
    "question.options_only_choice": (
        "options: only go with type: choice, not {type}",
        "options: бывают только у type: choice, а здесь type: {type}",
    ),
    "question.button_only_phone": (
        "button: only goes with type: phone (the share-contact button)",
        "button: бывает только у type: phone (это кнопка, которая отправляет номер)",
    ),
    # A step button's own checks: StepButton raises them as plain English texts, which
    # bot/scenario/schema_errors.py finds here word for word.
    "button.url_hears_nothing": (
        "a url: button opens the page and the bot hears nothing; "
        "handoff: and reply: need a button without url:",
        "кнопка с url: открывает страницу, и бот о нажатии не узнаёт; "
        "для handoff: и reply: нужна кнопка без url:",
    ),
    "button.needs_event": (
        "the press is recorded as an event: give the button event: (like callback_requested)",
        "нажатие записывается как событие: дайте кнопке event: (например, callback_requested)",
    ),
    "button.handoff_value": (
        "give true, or a note for the managers of 1 to {limit} characters",
        "укажите true или заметку для менеджеров длиной от 1 до {limit} символов",
    ),
    "button.same_label": (
        "another button records event {event!r} with the same label at {other}, but answers "
        "differently; the bot tells such buttons apart by the label: give one another label",
        "другая кнопка с той же надписью тоже записывает событие {event!r} ({other}), но "
        "отвечает иначе; бот различает такие кнопки по надписи — измените надпись одной из них",
    ),
    "button.does_nothing": (
        "a button needs event:, url: or offer:",
        "кнопке нужен event:, url: или offer:",
    ),
    "button.offer_only": (
        "an offer: button opens the offer; give it no event:, url:, handoff: or reply:",
        "кнопка offer: открывает оффер; event:, url:, handoff: и reply: ей не нужны",
    ),
    "step.says_nothing": ("a step needs text:, ask: or file:", "шагу нужен text:, ask: или file:"),
    "step.variants_need_text": (
        "variants: are other versions of text:, so the step needs text:",
        "variants: — это другие версии text:, поэтому шагу нужен text:",
    ),
    "step.variant_a": (
        'variant "a" is the step\'s own text: name the others b, c, ...',
        'вариант "a" — это сам text: шага; остальные назовите b, c, ...',
    ),
    "step.weights_keys": (
        "weights: needs a share for each variant and no other: {names} (given: {given})",
        "в weights: нужна доля для каждого варианта и только для них: {names} "
        "(а указано: {given})",
    ),
    "step.weights_no_variants": (
        "weights: split the step's variants, and it has none: add variants: or remove weights:",
        "weights: делит лидов между вариантами шага, а вариантов нет: добавьте variants: "
        "или уберите weights:",
    ),
    "step.auto_needs_variants": (
        "auto: true picks the best of the variants, and the step has none: add variants:",
        "auto: true выбирает лучший из вариантов, а у шага их нет: добавьте variants:",
    ),
    "step.confidence": (
        "confidence: {value} is out of range: give a share from 0.8 to 0.999, like 0.95",
        "confidence: {value} вне допустимого: нужна доля от 0.8 до 0.999, например 0.95",
    ),
    "step.goal_where": (
        "a step's goal: takes event: or stage:, without where:",
        "в goal: шага укажите только event: или stage:, без where:",
    ),
    "start_on.one": (
        "start_on takes one of event:, stage:, date: (with event: for a date in its details) "
        "or inactive:",
        "в start_on нужно что-то одно: event:, stage:, date: (вместе с event:, если дата в "
        "подробностях события) или inactive:",
    ),
    "start_on.where": (
        "where: filters an event's details, so it needs event:",
        "where: отбирает по подробностям события, поэтому нужен event:",
    ),
    "promo.shared_code": (
        "a shared promo needs code: (the one code everybody types)",
        "общему промокоду нужен code: — один код, который вводят все",
    ),
    "promo.personal_code": (
        "a personal promo generates its codes: give prefix:, not code:",
        "персональный промокод создаёт коды сам: укажите prefix:, а не code:",
    ),
    "promo.valid_or_until": (
        "give either valid: (a duration) or until: (a date), not both",
        "укажите что-то одно: valid: (срок) или until: (дату)",
    ),
    "promo.remind_never": (
        "remind_before: needs valid: or until:, or the code never expires",
        "для remind_before: нужен valid: или until:, иначе код не истекает",
    ),
    "referral.stage": (
        "the friend counts on reaching a funnel stage: one of {stages}",
        "друг засчитывается, когда доходит до стадии воронки: одной из {stages}",
    ),
    # ---- references, texts and files (bot/scenario/checks.py) ----
    "ref.offer": ("unknown offer {name!r}{more}", "неизвестный оффер {name!r}{more}"),
    "ref.question": ("unknown question {name!r}{more}", "неизвестный вопрос {name!r}{more}"),
    "ref.sequence": ("unknown sequence {name!r}{more}", "неизвестная цепочка {name!r}{more}"),
    "ref.promo": ("unknown promo {name!r}{more}", "неизвестный промокод {name!r}{more}"),
    "ref.event": ("unknown event {name!r}{more}", "неизвестное событие {name!r}{more}"),
    # Points for an event: events from outside the chat are known only once declared.
    "ref.scored_event": (
        "unknown event {name!r}{more} (events from outside the chat are declared under events:)",
        "неизвестное событие {name!r}{more} (события извне чата объявляют в разделе events:)",
    ),
    "ref.stage_or_event": (
        "unknown stage or event {name!r}{more}",
        "нет такой стадии или события: {name!r}{more}",
    ),
    "ref.did_you_mean": ("; did you mean {name!r}?", "; может быть, {name!r}?"),
    "ref.known": (" (known: {names})", " (есть: {names})"),
    "check.asked_twice": ("a question is asked twice", "один и тот же вопрос задан дважды"),
    "check.step_twice": (
        "duplicate step id {id!r} (also step {number})",
        "id шага {id!r} повторяется (он же у шага {number})",
    ),
    "check.no_words": (
        "this phrase has no words to match",
        "в этой фразе нет слов, по которым можно искать",
    ),
    "check.shared_reward": (
        "a reward is a personal code: a shared campaign code would thank nobody",
        "награда — это персональный код: общий код акции никого лично не поблагодарит",
    ),
    "placeholder.needs_referral": (
        "{{referral_link}} needs the referral programme: add referral:",
        "для {{referral_link}} нужна реферальная программа: добавьте раздел referral:",
    ),
    "placeholder.no_promo": (
        "unknown placeholder {{{name}}}: no promo {promo!r} in promos:",
        "неизвестная переменная {{{name}}}: в promos: нет промокода {promo!r}",
    ),
    "placeholder.promo_part": (
        "unknown placeholder {{{name}}}: use {{promo.{promo}}} or {{promo.{promo}.expires}}",
        "неизвестная переменная {{{name}}}: есть только {{promo.{promo}}} "
        "и {{promo.{promo}.expires}}",
    ),
    "placeholder.did_you_mean": (
        "unknown placeholder {{{name}}}; did you mean {{{close}}}?",
        "неизвестная переменная {{{name}}}; может быть, {{{close}}}?",
    ),
    "placeholder.unknown": (
        "unknown placeholder {{{name}}} (known: {names}, {{promo.<id>}})",
        "неизвестная переменная {{{name}}} (есть: {names}, {{promo.<id>}})",
    ),
    "placeholder.as_written": (
        "{{{name}}}: this text is sent as written, without placeholders",
        "{{{name}}}: этот текст отправляется как есть, без переменных",
    ),
    "length.text": (
        "text is {length} characters, over the limit of {limit}",
        "текст на {length:символ|символа|символов}, больше предела в {limit}",
    ),
    "length.button": (
        "button text is {length} characters, over the limit of {limit}",
        "текст кнопки на {length:символ|символа|символов}, больше предела в {limit}",
    ),
    "file.outside": (
        "file {name!r} is outside the scenario folder",
        "файл {name!r} лежит вне папки сценария",
    ),
    "file.not_found": ("file {name!r} not found in {folder}", "такой файл не найден: {name!r}"),
    # ---- warnings: what loads and runs but leads nowhere (bot/scenario/lint.py) ----
    "lint.idle_button": (
        "nothing reacts to event {name!r}: it scores no points and no rule, chain or promo "
        "reads it, so the prospect hears only messages.noted; give the button reply:, "
        "handoff: true or points under scoring.events",
        "на событие {name!r} ничего не реагирует: баллов за него нет, и его не читает ни "
        "правило, ни цепочка, ни промокод, так что клиент услышит только messages.noted; "
        "дайте кнопке reply:, handoff: true или баллы в scoring.events",
    ),
    "lint.idle_declared": (
        "nothing reacts to event {name!r}: no points under scoring.events, and no rule, chain "
        "or promo reads it",
        "на событие {name!r} ничего не реагирует: баллов в scoring.events нет, и его не "
        "читает ни правило, ни цепочка, ни промокод",
    ),
    "lint.goal_never_recorded": (
        "the goal event {name!r} of this A/B test is never recorded: no button, chain or "
        "events: entry makes it, so no variant can win; use an event a button or the events "
        "API records, or leave goal: out (a press of the step's buttons)",
        "событие-цель {name!r} этого A/B-теста никто не записывает: его нет ни у кнопок, ни в "
        "разделе events:, поэтому ни один вариант не сможет победить; укажите событие, которое "
        "записывает кнопка или API событий, или уберите goal: (тогда цель — нажатие кнопок шага)",
    ),
    "lint.goal_no_buttons": (
        "this A/B test's goal is a press of the step's buttons, and the step has no event: or "
        "url: button; give it one, or a goal: (an event or a stage)",
        "цель этого A/B-теста — нажатие кнопок шага, а у шага нет кнопок с event: или url:; "
        "добавьте кнопку или укажите goal: (событие или стадию)",
    ),
    "lint.offer_alone": (
        "a lead who takes this offer never reaches the managers: {why}, and no handoff: true "
        "is on its way (the offer's then:, or a button of its chains)",
        "лид, который возьмёт этот оффер, не дойдёт до менеджеров: {why}, и на его пути нет "
        "handoff: true (ни в then: оффера, ни в кнопках его цепочек)",
    ),
    "lint.qualify_cannot_hold": (
        "scoring.qualify cannot hold for a lead who takes only this offer",
        "правило scoring.qualify не выполнится для лида, который взял только этот оффер",
    ),
    "lint.no_qualify": ("there is no scoring.qualify rule", "правила scoring.qualify нет"),
    # ---- `leadbot check` ----
    "cli.ok": (
        "{folder}: OK: {files:file|files}, {offers:offer|offers}, {questions:question|questions}, "
        "{sequences:sequence|sequences} ({steps:step|steps}), {promos:promo|promos}, "
        "{faq:FAQ entry|FAQ entries}{warnings}",
        "{folder}: ошибок нет: {files:файл|файла|файлов}, {offers:оффер|оффера|офферов}, "
        "{questions:вопрос|вопроса|вопросов}, {sequences:цепочка|цепочки|цепочек} "
        "({steps:шаг|шага|шагов}), {promos:промокод|промокода|промокодов}, "
        "{faq:ответ FAQ|ответа FAQ|ответов FAQ}{warnings}",
    ),
    "cli.warning_count": (
        ", {count:warning|warnings}",
        ", {count:предупреждение|предупреждения|предупреждений}",
    ),
    "cli.warning": ("warning: {text}", "предупреждение: {text}"),
    "cli.problems": (
        "{count} problem(s) in {folder}",
        "{count:ошибка|ошибки|ошибок} в папке {folder}",
    ),
    # ---- the reload report in the managers' chat (bot/scenario/reload.py) ----
    "reload.refused": (
        "The scenario {folder} is refused ({count:problem|problems}); the old one keeps running:",
        "Сценарий {folder} не принят (ошибок: {count}), работает прежний:",
    ),
    "reload.more": ("... and {count} more", "... и ещё {count}"),
    "reload.accepted": (
        "The scenario {folder} is updated: {offers:offer|offers}, "
        "{sequences:sequence|sequences}, {files:file|files}.",
        "Сценарий {folder} обновлён: {offers:оффер|оффера|офферов}, "
        "{sequences:цепочка|цепочки|цепочек}, {files:файл|файла|файлов}.",
    ),
    "reload.warnings": ("Warnings ({count}):", "Предупреждения ({count}):"),
}
CATALOGUE |= TIME_TEXTS
