"""`leadbot chat`: the terminal as a third transport. The person at it is the prospect, the
managers and the world outside at once, with a clock that `/wait` moves forward."""

from __future__ import annotations

import asyncio
import shlex
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.clock import FakeClock
from bot.console.jobs import PeriodicJobs
from bot.console.managers import MANAGER_COMMANDS, ConsoleManagersChat, ManagerCommands
from bot.console.prospect import CHANNEL, ConsoleTransport, render_outgoing, save_file
from bot.delivery import DeliveryWorker
from bot.durations import parse_duration
from bot.engine.funnel import Funnel
from bot.handoff import Manager, ManagerDesk, parse_amount
from bot.logs import one_event
from bot.messages import COMMANDS, Button, Incoming, Kind, Outgoing
from bot.outside import LeadRef, OutsideEvents, Refused
from bot.scenario.reload import ScenarioReloader, fingerprint

HELP = """\
You are the prospect: type as they would; a number presses that button of the last reply.
  /start PAYLOAD          start by a deep link: /start src_vkads-o_audit
  /contact +79991234567   share your own phone;  /sticker  send a sticker
  /menu /stop /promo /invite /booking /mydata /delete   the bot's commands
You are the managers too: their chat is printed as `managers #N:` lines.
  /claim 1  /nofit 1  /won 1 150000  /lost 1 дорого   press a card's button (1: lead #1)
  /answer 3 TEXT          reply to post #3: to a question, the answer reaches the prospect
  /today                  the day's bookings of the slots: calendars
And the world outside:
  /event NAME [key=value ...]   an event from the site or CRM, as the events API takes it
  /purchase [AMOUNT]            a purchase, as the events API takes it
  /wait 2h                move the clock (30m 1h 2d 1w): what falls due is sent, and the
                          expiry and unclaimed-card reminders run, in order
/help shows this; /quit ends."""

# The messengers' commands, and a sticker to try what is not text.
PROSPECT_COMMANDS = {f"/{name}": kind for name, kind in COMMANDS.items()} | {
    "/sticker": Kind.UNSUPPORTED
}
SMALLEST_STEP = timedelta(seconds=1)  # `/wait` always moves on, whatever a row says


class ConsoleChat:
    """Turns typed lines into `Incoming` events, presses and replies of a manager and events
    from outside, and what the bot then sends, to both sides, into text."""

    def __init__(
        self,
        funnel: Funnel,
        clock: FakeClock,
        *,
        external_id: str = "console",
        first_name: str = "Гость",
        worker: DeliveryWorker | None = None,
        transport: ConsoleTransport | None = None,
        managers: ConsoleManagersChat | None = None,
        reloader: ScenarioReloader | None = None,
        files: Path | None = None,
        zone: str | None = None,
    ) -> None:
        """`worker` sends through `transport` and `managers` (give it both); `reloader`
        makes an edit of the scenario folder count from the next line typed; `files` is
        where a file the bot makes (/mydata) is saved; `zone` is the time zone times are
        shown in, when not the scenario's."""
        self.funnel = funnel
        self.clock = clock
        self.external_id = external_id
        self.first_name = first_name
        self.buttons: list[Button] = []
        self.worker = worker
        self.transport = transport or ConsoleTransport()
        self.managers = managers or ConsoleManagersChat()
        desk = ManagerDesk(funnel.db, funnel.scenarios, clock, {CHANNEL: self.managers})
        manager = Manager(CHANNEL, "1", "Менеджер")
        self.manager_commands = ManagerCommands(desk, self.managers, manager)
        self.outside = OutsideEvents(funnel)
        self.jobs = PeriodicJobs(funnel)
        self.reloader = reloader
        self.files = files
        self.zone = zone
        self._seen = fingerprint(funnel.scenarios.current.folder) if reloader else None

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
        output = await self.reload_if_changed()
        if command == "/help":
            return [*output, HELP]
        if command == "/wait":
            return [*output, *await self.wait(argument)]
        if command in MANAGER_COMMANDS:
            output += await self.manager_commands.handle(command, argument)
        elif command in ("/event", "/purchase"):
            output += await self.outside_event(command, argument)
        else:
            with one_event():  # this line's log carries the lead's id, the next one's not
                reply = await self.funnel.handle(self.incoming_for(line, command, argument))
            output += self.show(reply.messages)
        return [*output, *await self.deliver()]

    def incoming_for(self, line: str, command: str, argument: str) -> Incoming:
        if command == "/start":
            return self._incoming(Kind.START, payload=argument or None)
        if command in PROSPECT_COMMANDS:
            return self._incoming(PROSPECT_COMMANDS[command])
        if command == "/contact":
            phone = shlex.split(argument)[0] if argument else ""
            return self._incoming(Kind.CONTACT, phone=phone, contact_is_own=True)
        typed = line.strip()
        if typed.isascii() and typed.isdigit() and 1 <= int(typed) <= len(self.buttons):
            button = self.buttons[int(typed) - 1]
            return self._incoming(Kind.BUTTON, payload=button.action)
        return self._incoming(Kind.TEXT, text=line)

    def show(self, messages: list[Outgoing]) -> list[str]:
        output: list[str] = []
        numbered: list[Button] = []
        for message in messages:
            saved = save_file(message.file, self.files) if message.file else None
            lines, buttons = render_outgoing(message, len(numbered) + 1, saved=saved)
            output += lines
            numbered += buttons
        if numbered:  # a reply without buttons leaves the previous ones pressable
            self.buttons = numbered
        return output

    # ---- the world outside ----

    async def outside_event(self, command: str, argument: str) -> list[str]:
        """`/event NAME [key=value ...]` and `/purchase [AMOUNT]`, recorded for this
        prospect as the events API records them (scored, qualified, reacted to)."""
        try:
            words = shlex.split(argument)
        except ValueError as exc:
            return [f"({command}: {exc})"]
        if command == "/purchase":
            name, pairs = "purchase", [f"amount={w}" for w in words[:1]]
        elif not words:
            return ["(usage: /event NAME [key=value ...])"]
        else:
            name, pairs = words[0], words[1:]
        details: dict[str, str] = {}
        for pair in pairs:
            key, equals, value = pair.partition("=")
            if not equals or not key:
                return [f"({command}: {pair!r} is not key=value)"]
            details[key] = value
        amount: Decimal | None = None
        if "amount" in details:
            amount = parse_amount(details.pop("amount"))
            if amount is None:
                return [f"({command}: the amount is not a number)"]
        lead_id = await self.lead_id()
        if lead_id is None:
            return [f"({command}: this prospect is no lead (yet, or erased): /start first)"]
        try:
            recorded = await self.outside.record(
                LeadRef(lead_id=lead_id), name, amount=amount, details=details
            )
        except Refused as refused:
            return [f"({command}: {refused.reason})"]
        qualified = ", and it made the lead qualify" if recorded.qualified else ""
        return [
            f"(event {name} recorded for lead #{recorded.lead_id}: score {recorded.score}, "
            f"stage {recorded.stage}{qualified})"
        ]

    async def lead_id(self) -> int | None:
        async with self.funnel.db.unit_of_work() as uow:
            found = await uow.leads.find_by_identity(CHANNEL, self.external_id)
            return found[0].id if found else None

    # ---- time ----

    def shown_time(self, moment: datetime) -> str:
        """A moment as the scenario's clocks show it (quiet hours and step times are in it)."""
        zone = self.zone or self.funnel.scenarios.current.scenario.settings.timezone
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")

    async def deliver(self, *, stamped: bool = False) -> list[str]:
        """Send what is due now, and print it: to the prospect, then the managers' pane
        (under the time, when `stamped`)."""
        if self.worker is not None:
            await self.worker.drain()
        output = self.show(self.transport.outbox) + self.managers.take()
        self.transport.outbox.clear()
        if output and stamped:
            output.insert(0, f"({self.shown_time(self.clock.now())})")
        return output

    async def wait(self, argument: str) -> list[str]:
        """Move the clock forward, stopping at each moment something falls due: a message,
        an expiry reminder, a card nobody claimed. So a week plays out in order: each step of
        a chain is queued when the one before is sent, a reminder starts its chain."""
        try:
            delta = parse_duration(argument or "")
        except ValueError as exc:
            return [f"(/wait {exc})"]
        end = self.clock.now() + delta
        output: list[str] = []
        while True:
            await self.jobs.run()
            output += await self.deliver(stamped=True)
            due = [await self.jobs.next_due()]
            if self.worker is not None:
                due.append(await self.worker.next_due())
            moment = min((d for d in due if d is not None), default=None)
            if moment is None:
                break
            moment = max(moment, self.clock.now() + SMALLEST_STEP)
            if moment > end:
                break
            self.clock.advance(moment - self.clock.now())
        self.clock.advance(max(end - self.clock.now(), timedelta(0)))
        await self.jobs.run()
        output += await self.deliver(stamped=True)
        moved = self.shown_time(self.clock.now())
        return [*output, f"(clock moved {argument} forward, now {moved})"]

    # ---- the scenario edited ----

    async def reload_if_changed(self) -> list[str]:
        """As the running bot does every 2 seconds: an edited folder is loaded again, or
        refused whole with its problems while the old scenario keeps running."""
        if self.reloader is None:
            return []
        folder = self.funnel.scenarios.current.folder
        current = await asyncio.to_thread(fingerprint, folder)
        if current == self._seen:
            return []
        self._seen = current
        _, report = await self.reloader.reload()
        return [f"(reload) {line}" for line in report.splitlines()]
