"""`leadbot chat`: the terminal as a third transport beside Telegram and VK. `chat` holds the
conversation, `prospect` and `managers` the two sides of it, `jobs` the periodic jobs that
`/wait` runs, `terminal` the typed lines."""

from bot.console.chat import HELP, ConsoleChat
from bot.console.managers import ConsoleManagersChat
from bot.console.prospect import CHANNEL, ConsoleTransport, render_outgoing

__all__ = [
    "CHANNEL",
    "HELP",
    "ConsoleChat",
    "ConsoleManagersChat",
    "ConsoleTransport",
    "render_outgoing",
]
