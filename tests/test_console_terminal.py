"""`leadbot chat` at the terminal: the managers' pane as printed, piped lines echoed, a line
that fails told in one line, and the log kept out of the conversation."""

from __future__ import annotations

import io
from pathlib import Path

from bot.console.managers import ConsoleManagersChat
from bot.console.terminal import Terminal
from bot.messages import Button
from tests.conftest import FIXTURE_SCENARIO
from tests.test_cli import leadbot

CARD_BUTTONS = ((Button("✋ Взял", action="h:claim:7"), Button("🚫 Не наш клиент", "h:nofit:7")),)


async def test_the_pane_numbers_posts_and_shows_an_edit_by_what_changed() -> None:
    pane = ConsoleManagersChat(session="s1")
    reference = await pane.post_to_managers("🔥 Лид #7 — Анна\nБаллы: 60\n🟢 Ждёт", CARD_BUTTONS)
    asked = await pane.post_to_managers("💰 Сумма сделки по лиду #7?", expect_reply=True)
    assert (reference, asked) == ("s1-1", "s1-2")
    assert pane.take() == [
        "managers #1: 🔥 Лид #7 — Анна",
        "             Баллы: 60",
        "             🟢 Ждёт",
        "             [✋ Взял: /claim 7] [🚫 Не наш клиент: /nofit 7]",
        "managers #2: 💰 Сумма сделки по лиду #7?",
        "             (ответ: /answer 2 <текст>)",
    ]
    claimed = ((Button("✅ Сделка", action="h:won:7"), Button("❌ Отказ", action="h:lost:7")),)
    await pane.edit_in_managers(reference, "🔥 Лид #7 — Анна\nБаллы: 60\n🤝 Взял: Иван", claimed)
    await pane.edit_in_managers(reference, "🔥 Лид #7 — Анна\nБаллы: 60\n🤝 Взял: Иван", claimed)
    await pane.edit_in_managers("old-3", "🔥 Лид #2 — Олег")
    assert pane.take() == [
        "managers #1 edited: 🔥 Лид #7 — Анна",
        "                    🤝 Взял: Иван",
        "                    [✅ Сделка: /won 7 <сумма>] [❌ Отказ: /lost 7 <причина>]",
        "managers (an earlier post) edited: 🔥 Лид #2 — Олег",
    ]
    assert pane.take() == []


def test_piped_lines_are_echoed_and_a_failing_line_does_not_end_the_chat() -> None:
    shown = io.StringIO()
    terminal = Terminal(io.StringIO("привет\nломается\n/quit\nне прочитано\n"), shown)
    assert not terminal.interactive

    def process(line: str) -> list[str] | None:
        if line.startswith("/quit"):
            return None
        if line.startswith("ломается"):
            raise RuntimeError("database is locked")
        return [f"bot: {line.strip()}"]

    terminal.talk(process)
    assert shown.getvalue().splitlines() == [
        "> привет",
        "bot: привет",
        "> ломается",
        "(that failed: RuntimeError('database is locked'); the log has the details)",
        "> /quit",
    ]


def test_a_piped_session_shows_the_managers_pane_and_logs_to_the_file(tmp_path: Path) -> None:
    log = tmp_path / "chat.log"
    walk = "/start src_vkads-o_audit\n1\n1\nАнна\n/contact +79991234567\n3\n/wait 1h\n/claim 1\n"
    result = leadbot(
        ["chat", "--scenario", str(FIXTURE_SCENARIO), "--log", str(log)],
        tmp_path,
        walk,
        LOG_LEVEL="DEBUG",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "managers #2: 🔥 Лид #1 — Анна" in out
    assert "[✋ Взял: /claim 1] [🚫 Не наш клиент: /nofit 1]" in out
    assert "managers: Лид #1 ваш." in out
    assert " MSK)\nmanagers #3: ⏰ Лида никто не взял уже 30 мин" in out
    assert result.stderr == ""
    assert " DEBUG " not in out
    logged = log.read_text(encoding="utf-8")
    assert "INFO bot.scoring: lead 1 qualified: score 95 >= 60" in logged
