"""The system texts prospects read (`messages:` in a scenario), each with a Russian default."""

from __future__ import annotations

from bot.scenario.fields import Strict


class Messages(Strict):
    """System texts, each with a Russian default; a scenario overrides only what it wants."""

    # No "press the button": VK has no share-contact button; Telegram shows it under the
    # question, which is asked again right after this.
    invalid_phone: str = "Не получилось разобрать номер. Напишите его в формате +7 999 123-45-67."
    invalid_email: str = "Похоже, в адресе опечатка. Напишите e-mail в виде name@company.ru."
    invalid_name: str = "Напишите, пожалуйста, имя буквами — как к вам обращаться?"
    choose_slot: str = "Выберите время кнопкой ниже."
    slot_zone: str = "Время — {zone}."
    slot_more: str = "Другое время ▸"
    no_slots: str = (
        "Свободного времени на ближайшие дни нет — менеджер свяжется с вами и подберёт удобное."
    )
    slot_taken: str = "Это время только что заняли. Выберите, пожалуйста, другое:"
    slot_booked: str = (
        "Записали вас: {when}. Напомним заранее. Перенести или отменить запись — /booking."
    )
    slot_already: str = "Вы уже записаны на {when}."
    slot_moved: str = "Перенесли: теперь вы записаны на {when}."
    slot_cancelled: str = "Запись на {when} отменена. Захотите записаться снова — откройте меню."
    booking_move: str = "Перенести"
    booking_cancel: str = "Отменить запись"
    your_booking: str = "Ваша запись: {what}."
    no_booking: str = "У вас нет записей. Записаться можно из меню."
    invalid_date: str = "Не получилось понять дату. Напишите её так: 12.05 или 12 мая 1990."
    invalid_number: str = "Выберите число от 0 до 10 кнопкой или напишите его цифрой."
    choose_option: str = "Выберите, пожалуйста, один из вариантов кнопкой ниже."
    too_long: str = "Сообщение слишком длинное. Напишите, пожалуйста, короче."
    not_text: str = "Я понимаю только текст и кнопки. Ответьте, пожалуйста, текстом."
    foreign_contact: str = "Можно отправить только свой номер. Нажмите кнопку или напишите номер."
    stale_button: str = "Эта кнопка уже устарела. Вот актуальное меню:"
    consent_declined: str = (
        "Понимаем. Без согласия мы не можем сохранить ваши контакты, но вы можете вернуться "
        "в любой момент."
    )
    unsubscribed: str = (
        "Готово: больше не будем присылать рассылки. Бот по-прежнему к вашим услугам."
    )
    fallback: str = "Не совсем поняли вопрос. Выберите, что вас интересует:"
    greeting: str = "Здравствуйте! Выберите, что вас интересует, или напишите свой вопрос:"
    you_are_welcome: str = "Пожалуйста! Если появятся вопросы — пишите, ответим здесь же."
    forwarded: str = "Передали ваш вопрос менеджеру — ответим здесь же, в этом чате."
    error: str = "Простите, у нас что-то сломалось. Попробуйте ещё раз через минуту."
    menu: str = "В меню"
    slow_down: str = "Вы пишете очень быстро. Подождите пару секунд, пожалуйста."
    my_data: str = "Всё, что мы о вас храним, — в этом файле."
    delete_confirm: str = (
        "Удалить все ваши данные: контакты, ответы и согласия? Это нельзя отменить."
    )
    delete_yes: str = "Да, удалить"
    delete_no: str = "Отмена"
    # Not "нажмите /start": VK has no such command. Any message starts afresh.
    deleted: str = "Готово: ваши данные удалены. Если захотите вернуться — просто напишите нам."
    delete_cancelled: str = "Хорошо, ничего не удаляем."
    noted: str = "Отметили, спасибо!"
    # A handoff: button without its own reply: (the request went to the managers).
    handed_over: str = (
        "Передали вашу просьбу менеджеру — он свяжется с вами в рабочее время. "
        "Написать ему можно прямо здесь, в этом чате."
    )
    promo_ended: str = "(акция уже завершилась)"
    promo_used_up: str = "(вы уже воспользовались этим предложением)"
    thanks: str = "Спасибо за ответ!"
    # /promo: a heading and one line per live code ({code}, {discount}, {until}).
    promo_list: str = "Ваши промокоды:"
    promo_line: str = "🎟 {code} — {discount}, действует {until}"
    promo_none: str = "Сейчас у вас нет действующих промокодов."
    # /invite: the link ({referral_link}); then, once somebody came by it, `invite_counts`
    # ({friends}: came by the link, {qualified}: reached `referral.reward_when`).
    invite: str = (
        "Приглашайте коллег по своей ссылке — им подарок при первом обращении, "
        "а вам бонус за каждого, кто к нам обратится:\n{referral_link}"
    )
    invite_counts: str = "По вашей ссылке пришли: {friends}. Бонусов заработано: {qualified}."
    invite_off: str = "Сейчас реферальная программа не действует."
    # To the invited friend on arrival and to the referrer when the friend counts.
    referral_welcome: str = (
        "Вас пригласил друг, и для вас есть подарок: {discount}. Код {code} ({until})."
    )
    referral_reward: str = (
        "🎉 Ваш друг по приглашению обратился к нам — спасибо! "
        "Ваш подарок: {discount}. Код {code} ({until})."
    )
    # Inside an offer's question (docs/scenario.md): the skip button's label, the word after a
    # skip, refusals of a required question (sent with the start buttons), a stale button.
    skip: str = "Пропустить"
    skipped: str = "Хорошо, пропустим этот вопрос."
    refused_phone: str = (
        "Понимаем. Телефон нужен, чтобы специалист связался с вами и договорился о времени, — "
        "без него записать вас не получится. Выберите другое ниже или напишите вопрос в чат."
    )
    refused_email: str = (
        "Понимаем. E-mail нужен, чтобы прислать материалы, — без него не получится. "
        "Выберите другое ниже или напишите вопрос в чат."
    )
    refused_name: str = (
        "Понимаем. Нам нужно знать, как к вам обращаться, чтобы записать вас. "
        "Выберите другое ниже или напишите вопрос в чат."
    )
    refused_required: str = (
        "Понимаем. Без ответа на этот вопрос мы не сможем продолжить. "
        "Выберите другое ниже или напишите вопрос в чат."
    )
    stale_question: str = "Эта кнопка уже устарела. Вернёмся к вопросу:"
