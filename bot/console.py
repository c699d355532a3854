"""`leadbot chat`: the terminal as a third transport, with a clock that /wait moves forward."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

from bot.clock import FakeClock
from bot.delivery import DeliveryWorker
from bot.durations import parse_duration
from bot.engine.funnel import Funnel
from bot.messages import Button, Incoming, Kind, Outgoing

CHANNEL = "console"
HELP = (
    "Type as the prospect would. A number presses that button; /start PAYLOAD starts with a "
    "deep link; /contact +79991234567 shares a phone; /sticker sends a sticker; /wait 2h moves "
    "the clock; /menu, /stop, /promo (your codes), /invite (your referral link); /quit ends."
)


def render_outgoing(message: Outgoing, number_from: int) -> tuple[list[str], list[Button]]:
    """Lines to print for one bot message, and the buttons it numbered (in order)."""
    lines = [
        f"bot: {line}" if i == 0 else f"     {line}"
        for i, line in enumerate(message.text.splitlines() or [""])
    ]
    numbered: list[Button] = []
    if message.file is not None:
        lines.append(f"     [file] {message.file.name}")
    for row in message.buttons:
        for button in row:
            if button.url:
                lines.append(f"     [link] {button.text} -> {button.url}")
            else:
                numbered.append(button)
                lines.append(f"     [{number_from + len(numbered) - 1}] {button.text}")
    if message.contact_request:
        lines.append(f"     [contact] {message.contact_request} (type /contact +7...)")
    return lines, numbered


class ConsoleTransport:
    """Where the delivery worker's messages to console leads go: kept until the chat prints
    them after `/wait`."""

    channel = CHANNEL

    def __init__(self) -> None:
        self.outbox: list[Outgoing] = []

    async def send(
        self,
        external_id: str,
        message: Outgoing,
        *,
        idempotency_key: str | None = None,
        last_message_at: datetime | None = None,
    ) -> None:
        self.outbox.append(message)


class ConsoleChat:
    """Turns typed lines into `Incoming` events and the engine's replies into text."""

    def __init__(
        self,
        funnel: Funnel,
        clock: FakeClock,
        *,
        external_id: str = "console",
        first_name: str = "Гость",
        worker: DeliveryWorker | None = None,
        transport: ConsoleTransport | None = None,
    ) -> None:
        self.funnel = funnel
        self.clock = clock
        self.external_id = external_id
        self.first_name = first_name
        self.buttons: list[Button] = []
        self.worker = worker
        self.transport = transport or ConsoleTransport()

    def _incoming(self, kind: Kind, **fields: object) -> Incoming:
        return Incoming(
            channel=CHANNEL,
            external_id=self.external_id,
            kind=kind,
            first_name=self.first_name,
            **fields,
        )  # type: ignore[arg-type]

    async def process(self, line: str) -> list[str] | None:
        """Output lines for one typed line; None means the chat is over."""
        line = line.rstrip("\r\n")
        command, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if command in ("/quit", "/exit"):
            return None
        if command == "/help":
            return [HELP]
        if command == "/wait":
            return await self.wait(argument)
        if command == "/start":
            incoming = self._incoming(Kind.START, payload=argument or None)
        elif command == "/menu":
            incoming = self._incoming(Kind.MENU)
        elif command == "/stop":
            incoming = self._incoming(Kind.STOP)
        elif command == "/promo":
            incoming = self._incoming(Kind.PROMO)
        elif command == "/invite":
            incoming = self._incoming(Kind.INVITE)
        elif command == "/contact":
            phone = shlex.split(argument)[0] if argument else ""
            incoming = self._incoming(Kind.CONTACT, phone=phone, contact_is_own=True)
        elif command == "/sticker":
            incoming = self._incoming(Kind.UNSUPPORTED)
        elif (
            line.strip().isascii()
            and line.strip().isdigit()
            and 1 <= int(line.strip()) <= len(self.buttons)
        ):
            button = self.buttons[int(line.strip()) - 1]
            incoming = self._incoming(Kind.BUTTON, payload=button.action)
        else:
            incoming = self._incoming(Kind.TEXT, text=line)
        reply = await self.funnel.handle(incoming)
        return self.show(reply.messages)

    def show(self, messages: list[Outgoing]) -> list[str]:
        output: list[str] = []
        numbered: list[Button] = []
        for message in messages:
            lines, buttons = render_outgoing(message, len(numbered) + 1)
            output += lines
            numbered += buttons
        if numbered:  # a reply without buttons leaves the previous ones pressable
            self.buttons = numbered
        return output

    async def wait(self, argument: str) -> list[str]:
        """Move the clock forward, stopping at each due message on the way, so a week of
        warm-up plays out in order (each step is queued when the one before is sent)."""
        try:
            delta = parse_duration(argument or "")
        except ValueError as exc:
            return [f"(/wait {exc})"]
        end = self.clock.now() + delta
        output: list[str] = []
        while self.worker is not None:
            await self.worker.drain()
            if self.transport.outbox:
                output.append(f"({self.clock.now().strftime('%Y-%m-%d %H:%M UTC')})")
                output += self.show(self.transport.outbox)
                self.transport.outbox.clear()
            due = await self.worker.next_due()
            if due is None or due > end:
                break
            self.clock.advance(max(due - self.clock.now(), timedelta(0)))
        self.clock.advance(max(end - self.clock.now(), timedelta(0)))
        moved = self.clock.now().strftime("%Y-%m-%d %H:%M UTC")
        return [*output, f"(clock moved {argument} forward, now {moved})"]
