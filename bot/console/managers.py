"""The managers' side of `leadbot chat`: their chat printed as a pane of `managers` lines,
and the commands with which the person at the terminal acts as a manager. The commands go
through `ManagerDesk`, as a press or a reply in the managers' Telegram chat does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bot.console.prospect import CHANNEL
from bot.handoff import CARD_ACTION, Manager, ManagerDesk
from bot.messages import Button

Rows = tuple[tuple[Button, ...], ...]

# What each card button is typed as in the console; the lead's number follows the verb.
BUTTON_COMMANDS = {
    "claim": "/claim {lead}",
    "nofit": "/nofit {lead}",
    "won": "/won {lead} <сумма>",
    "lost": "/lost {lead} <причина>",
}
MANAGER_COMMANDS = frozenset({"/claim", "/nofit", "/won", "/lost", "/answer", "/today"})


@dataclass(frozen=True)
class Post:
    reference: str
    text: str
    buttons: Rows
    expect_reply: bool


def pane_lines(head: str, text: str, buttons: Rows = (), hint: str | None = None) -> list[str]:
    """A message in the managers' pane: `head` before its first line, the rest indented
    under it, then its buttons as the commands that press them."""
    indent = " " * len(head)
    lines = [
        f"{head}{line}" if i == 0 else f"{indent}{line}".rstrip()
        for i, line in enumerate(text.splitlines() or [""])
    ]
    pressed = []
    for row in buttons:
        for button in row:
            matched = CARD_ACTION.match(button.action or "")
            if button.url:
                pressed.append(f"{button.text} -> {button.url}")
            elif matched:
                command = BUTTON_COMMANDS[matched.group(1)].format(lead=matched.group(2))
                pressed.append(f"[{button.text}: {command}]")
            else:
                pressed.append(f"[{button.text}]")
    if pressed:
        lines.append(indent + " ".join(pressed))
    if hint:
        lines.append(f"{indent}({hint})")
    return lines


class ConsoleManagersChat:
    """The managers' chat of the console (a `ManagersChat`): posts are numbered as shown, and
    printed in the pane with each later edit. A reference names this session as well as the
    number, so a database kept between sessions (`--db`) never meets the same one twice."""

    channel = CHANNEL

    def __init__(self, session: str | None = None) -> None:
        self.session = session or uuid.uuid4().hex[:8]
        self.posts: dict[int, Post] = {}
        self.pane: list[str] = []  # lines not printed yet
        self._numbers: dict[str, int] = {}
        self._replies = 0

    async def post_to_managers(
        self,
        text: str,
        buttons: Rows = (),
        *,
        expect_reply: bool = False,
    ) -> str:
        number = len(self.posts) + 1
        reference = f"{self.session}-{number}"
        self.posts[number] = Post(reference, text, buttons, expect_reply)
        self._numbers[reference] = number
        hint = f"ответ: /answer {number} <текст>" if expect_reply else None
        self.pane += pane_lines(f"managers #{number}: ", text, buttons, hint)
        return reference

    async def edit_in_managers(self, reference: str, text: str, buttons: Rows = ()) -> None:
        number = self._numbers.get(reference)
        if number is None:  # a card posted in an earlier session on the same database
            self.pane += pane_lines("managers (an earlier post) edited: ", text, buttons)
            return
        post = self.posts[number]
        if (post.text, post.buttons) == (text, buttons):
            return  # the card is refreshed after every press; unchanged, it is no news
        self.posts[number] = Post(reference, text, buttons, post.expect_reply)
        # A card is twenty lines and an edit changes two: the title says which post it is.
        before = set(post.text.splitlines())
        title, *rest = text.splitlines() or [""]
        changed = "\n".join([title, *(line for line in rest if line not in before)])
        self.pane += pane_lines(f"managers #{number} edited: ", changed, buttons)

    def say(self, answer: str) -> None:
        """What the bot tells the manager who pressed or replied (a toast in Telegram)."""
        self.pane += pane_lines("managers: ", answer)

    def reply_reference(self) -> str:
        """A reference of the manager's own message, unique like those of posts."""
        self._replies += 1
        return f"{self.session}-r{self._replies}"

    def take(self) -> list[str]:
        lines, self.pane = self.pane, []
        return lines


class ManagerCommands:
    """`/claim`, `/nofit`, `/won`, `/lost` and `/answer`, typed by the person at the console
    acting as one manager. What the desk answers goes to the managers' pane."""

    def __init__(self, desk: ManagerDesk, chat: ConsoleManagersChat, manager: Manager) -> None:
        self.desk = desk
        self.chat = chat
        self.manager = manager

    async def handle(self, command: str, argument: str) -> list[str]:
        """Do the command; lines for the conversation (a usage note), the rest in the pane."""
        if command == "/today":
            self.chat.say(await self.desk.today())
            return []
        first, _, rest = argument.partition(" ")
        number = first.lstrip("#")
        if not (number.isascii() and number.isdigit() and len(number) <= 9):
            what = "POST TEXT" if command == "/answer" else "LEAD"
            extra = {"/won": " [AMOUNT]", "/lost": " [REASON]"}.get(command, "")
            return [f"(usage: {command} {what}{extra})"]
        rest = rest.strip()
        if command == "/answer":
            return await self.answer(int(number), rest)
        verb = command.removeprefix("/")
        posted = len(self.chat.posts)
        self.chat.say(await self.desk.press(self.manager, f"h:{verb}:{int(number)}"))
        if verb in ("won", "lost") and rest:
            # The desk asked for the amount or the reason in a post: reply to it at once.
            asked = [n for n, post in self.chat.posts.items() if n > posted and post.expect_reply]
            if asked:
                await self.answer(asked[-1], rest)
        return []

    async def answer(self, number: int, text: str) -> list[str]:
        """A reply to post `number`: an amount, a reason, or words the prospect gets."""
        post = self.chat.posts.get(number)
        if post is None:
            return [f"(no post #{number} in the managers' chat)"]
        if not text:
            return [f"(usage: /answer {number} TEXT)"]
        reference = self.chat.reply_reference()
        answer = await self.desk.reply(self.manager, post.reference, reference, text)
        if answer:
            self.chat.say(answer)
        return []
