"""A text too long for one message reaches the person whole, in order, as several messages
cut where a reader would pause, with the buttons (and a file) under the last one."""

from __future__ import annotations

from bot.messages import (
    SIZES,
    Button,
    FileRef,
    Outgoing,
    fitted,
    fitted_all,
    split_text,
    utf16_length,
)

MENU = ((Button("В меню", action="menu"),),)
TELEGRAM, VK = SIZES["telegram"], SIZES["vk"]


def paragraphs(count: int, length: int) -> list[str]:
    """Numbered paragraphs of whole sentences, each about `length` characters."""
    sentence = "Настройте воронку продаж и карточку сделки под свой процесс. "
    return [
        f"Шаг {n}. " + (sentence * (length // len(sentence) + 1))[:length].rsplit(" ", 1)[0]
        for n in range(1, count + 1)
    ]


def words(text: str) -> list[str]:
    return text.split()


def test_a_long_text_is_cut_between_paragraphs_and_the_buttons_come_last() -> None:
    parts = paragraphs(6, 1500)
    text = "\n\n".join(parts)
    assert len(text) > 4096

    messages = fitted(Outgoing(text, buttons=MENU), TELEGRAM)

    assert len(messages) == 3
    assert all(utf16_length(m.text) <= 4096 for m in messages)
    # Whole paragraphs, two to a message, in order: nothing lost, nothing repeated.
    assert [m.text for m in messages] == ["\n\n".join(parts[i : i + 2]) for i in (0, 2, 4)]
    assert [m.buttons for m in messages] == [(), (), MENU]


def test_without_paragraphs_a_text_is_cut_after_a_sentence_never_inside_a_word() -> None:
    text = " ".join(paragraphs(4, 1500))  # one paragraph, one line

    parts = split_text(text, 4096)

    assert len(parts) == 2
    assert parts[0].endswith(".")
    assert words(" ".join(parts)) == words(text)


def test_one_word_longer_than_the_limit_is_the_only_thing_cut() -> None:
    link = "https://example.com/" + "a" * 5000
    text = f"Ваша ссылка: {link} — откройте её."

    parts = split_text(text, 4096)

    assert parts[0] == "Ваша ссылка:"
    assert "".join(parts[1:-1]) + parts[-1].split()[0] == link
    assert all(utf16_length(part) <= 4096 for part in parts)


def test_a_word_that_fits_a_message_of_its_own_is_not_cut() -> None:
    word = "б" * 4095
    assert split_text(f"Ссылка: {word} и всё.", 4096) == ["Ссылка:", word, "и всё."]


def test_emoji_count_twice_as_telegram_counts_them_and_are_never_broken() -> None:
    text = "🙂" * 3000  # 3000 characters, 6000 UTF-16 code units

    parts = split_text(text, 4096)

    assert [utf16_length(part) for part in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_a_text_that_fits_goes_as_it_is() -> None:
    message = Outgoing("Короткий текст\n\n", buttons=MENU, file=FileRef(path="/guide.pdf"))
    assert fitted(message, TELEGRAM) == [message]
    assert fitted(Outgoing("x" * 10_000), None) == [Outgoing("x" * 10_000)]  # the console


def test_a_file_goes_last_with_the_buttons_and_with_the_last_part_when_it_fits() -> None:
    guide = FileRef(path="/guide.pdf")
    parts = paragraphs(3, 1500)
    text = "\n\n".join(parts)
    message = Outgoing(text, buttons=MENU, file=guide, purpose="advertising")

    # Telegram shows 1024 characters under a file: the text first, then the file alone.
    telegram = fitted(message, TELEGRAM)
    assert [(m.text, m.file, m.buttons) for m in telegram] == [
        ("\n\n".join(parts[:2]), None, ()),
        (parts[2], None, ()),
        ("", guide, MENU),
    ]
    # VK shows a whole message with a document: the last part goes with it.
    vk = fitted(message, VK)
    assert [(m.text, m.file, m.buttons) for m in vk] == [
        ("\n\n".join(parts[:2]), None, ()),
        (parts[2], guide, MENU),
    ]
    assert {m.purpose for m in telegram + vk} == {"advertising"}


def test_vk_keeps_room_for_the_link_of_a_file_given_by_url() -> None:
    link = FileRef(url="https://example.com/" + "g" * 100 + ".pdf")
    text = "\n\n".join(paragraphs(3, 1350))  # fits 4096, but not with the link under it
    assert utf16_length(text) <= 4096

    [first, last] = fitted(Outgoing(text, file=link), VK)

    assert last.file == link
    assert utf16_length(last.text) + 1 + len(link.url or "") <= 4096
    assert words(first.text + " " + last.text) == words(text)


def test_a_contact_request_stays_with_the_last_part_of_each_message() -> None:
    long = "\n\n".join(paragraphs(4, 1500))
    ask = Outgoing("Оставьте номер", contact_request="Отправить номер")

    sent = fitted_all([Outgoing(long), ask], TELEGRAM)

    assert [m.contact_request for m in sent] == [None, None, "Отправить номер"]
    assert sent[-1] == ask
