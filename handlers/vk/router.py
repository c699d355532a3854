"""vkbottle labelers: VK's `message_new` and `message_event` in, the engine's replies out.

Private messages reach the prospect flow; the managers' conversation (`MANAGERS_VK_PEER_ID`)
gets card buttons, replies to the bot's posts and the managers' commands, as in Telegram;
other conversations are ignored. Every callback press is answered.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from functools import partial
from typing import Any

from vkbottle.bot import BotLabeler
from vkbottle_types.events import GroupEventType

from bot.engine.funnel import Funnel, StorageUnavailable
from bot.flood import FloodGate
from bot.handoff import Manager, ManagerDesk
from bot.logs import one_event
from bot.messages import COMMANDS, SIZES, Incoming, Kind, Outgoing, fitted_all
from bot.redemption import Redemptions, managers_text, parse_redeem
from bot.scenario.reload import ScenarioReloader
from bot.transport import Blocked, Refused, RetryLater, TemporaryFailure, send_waiting
from handlers.vk.payloads import START_COMMAND, action_of, parse_payload
from handlers.vk.sender import CHANNEL, VkSender, reference, reply_key

log = logging.getLogger(__name__)

# The events of the Callback API request being handled that could not be stored: vkbottle
# swallows a handler's exception, so the request learns it here.
UNSTORED: ContextVar[list[Incoming] | None] = ContextVar("vk_unstored", default=None)

CONVERSATIONS = 2_000_000_000  # peer ids from here on are group conversations
TYPED_COMMANDS = {f"/{name}": kind for name, kind in COMMANDS.items()}
START_WORDS = {"/start", "start", "начать", "старт"}
NAMES_KEPT = 10_000  # first names looked up, kept per process
# A reply waits out VK's "too many requests" (1 s), not its flood control (a minute): the
# person, and VK's Callback API request, are waiting.
REPLY_WAIT_LIMIT = 5.0


class VkHandlers:
    """What the bot does with each VK update; `labeler()` wires it into vkbottle."""

    def __init__(
        self,
        funnel: Funnel,
        sender: VkSender,
        desk: ManagerDesk,
        redemptions: Redemptions,
        reloader: ScenarioReloader | None = None,
        flood: FloodGate | None = None,
    ) -> None:
        self.funnel = funnel
        self.flood = flood or FloodGate()
        self.sender = sender
        self.desk = desk
        self.redemptions = redemptions
        self.reloader = reloader
        self._names: dict[int, str | None] = {}

    def labeler(self) -> BotLabeler:
        labeler = BotLabeler()
        labeler.raw_event(GroupEventType.MESSAGE_NEW, dict)(self.on_message)
        labeler.raw_event(GroupEventType.MESSAGE_EVENT, dict)(self.on_event)
        labeler.raw_event(GroupEventType.MESSAGE_DENY, dict)(self.on_deny)
        return labeler

    async def on_deny(self, update: dict[str, Any]) -> None:
        """The person forbade the community's messages: stop at once, as a block does; a
        message they write later lets the bot answer again."""
        user_id = (update.get("object") or {}).get("user_id")
        if isinstance(user_id, int):
            await self.funnel.mark_blocked(CHANNEL, str(user_id))

    # ---- prospects ----

    async def on_message(self, update: dict[str, Any]) -> None:
        message = (update.get("object") or {}).get("message") or {}
        peer, sender_id = message.get("peer_id"), message.get("from_id")
        if not isinstance(peer, int) or not isinstance(sender_id, int) or sender_id <= 0:
            return  # a community or a malformed update: nobody to answer
        if peer == self.sender.managers_peer_id:
            await self.on_managers_message(update, message)
            return
        if peer >= CONVERSATIONS:
            return  # another conversation the bot was added to
        verdict = self.flood.check(f"{CHANNEL}:{sender_id}")
        if not verdict.allowed:
            log.info("throttled VK user %s", sender_id)
            if verdict.warn:
                await self._slow_down(sender_id, update_id_of(update))
            return
        incoming = await self.incoming(update, sender_id, **message_fields(message))
        await self.deliver(incoming, update_id_of(update))

    async def on_event(self, update: dict[str, Any]) -> None:
        event = update.get("object") or {}
        user_id, peer, event_id = event.get("user_id"), event.get("peer_id"), event.get("event_id")
        if not isinstance(user_id, int) or not isinstance(peer, int) or not event_id:
            return
        payload = parse_payload(event.get("payload"))
        action = action_of(payload)
        if peer == self.sender.managers_peer_id:
            answer = "Эта кнопка устарела."
            if action and action.startswith("h:"):
                answer = await self.desk.press(await self.manager(user_id), action)
            await self._answer(event_id, user_id, peer, answer)
            return
        snackbar = None
        try:
            if peer >= CONVERSATIONS:
                return
            verdict = self.flood.check(f"{CHANNEL}:{user_id}")
            if not verdict.allowed:
                log.info("throttled VK user %s", user_id)
                if verdict.warn:
                    snackbar = self.funnel.scenarios.current.scenario.messages.slow_down
                return
            if action is None:
                log.info("forged or stale VK payload %r from %s", str(payload)[:64], user_id)
            incoming = await self.incoming(update, user_id, kind=Kind.BUTTON, payload=action or "")
            await self.deliver(incoming, update_id_of(update))
        finally:
            await self._answer(event_id, user_id, peer, snackbar)  # the spinner stops anyway

    async def incoming(self, update: dict[str, Any], user_id: int, **fields: Any) -> Incoming:
        update_id = update_id_of(update)
        return Incoming(
            channel=CHANNEL,
            external_id=str(user_id),
            first_name=await self.first_name(user_id),
            event_key=f"{CHANNEL}:{update_id}" if update_id else None,
            **fields,
        )

    async def deliver(self, event: Incoming, update_id: str | None = None) -> list[Outgoing]:
        """Hand the event to the engine (which commits), then send its replies, each keyed by
        the update and its place in the reply: vkbottle sends a request again when VK's
        answer is lost on the way back, and VK drops that repeat, or any other send of the
        same reply to the same update, instead of delivering it twice. A text too long for
        one message goes as several, each keyed by its own place."""
        with one_event():  # the lines logged until the replies are sent carry the lead's id
            return await self._deliver(event, update_id)

    async def _deliver(self, event: Incoming, update_id: str | None) -> list[Outgoing]:
        try:
            reply = await self.funnel.handle_until_stored(event)
        except StorageUnavailable:
            if (unstored := UNSTORED.get()) is not None:
                unstored.append(event)  # the Callback API answers so that VK sends it again
            raise
        now = self.funnel.clock.now()
        pacer = self.sender.pacer
        try:
            for number, message in enumerate(fitted_all(reply.messages, SIZES[CHANNEL])):
                key = reply_key(update_id, number) if update_id else None
                await send_waiting(
                    partial(
                        self.sender.send,
                        event.external_id,
                        message,
                        idempotency_key=key,
                        last_message_at=now,
                    ),
                    sleep=self.funnel.sleep,
                    wait_limit=REPLY_WAIT_LIMIT,
                    # The key makes VK drop a repeat of a send whose answer was lost.
                    again_after_failure=1.0,
                    paced=None if pacer is None else (pacer, CHANNEL, event.external_id),
                )
        except Blocked:
            await self.funnel.mark_blocked(CHANNEL, event.external_id)
        except (RetryLater, TemporaryFailure, Refused) as exc:
            log.warning("VK reply to %s not sent: %s", event.external_id, exc)
        return reply.messages

    async def first_name(self, user_id: int) -> str | None:
        if user_id not in self._names:
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            self._names[user_id] = await self.sender.first_name(user_id)
        return self._names[user_id]

    # ---- the managers' conversation ----

    async def manager(self, user_id: int) -> Manager:
        return Manager(CHANNEL, str(user_id), await self.first_name(user_id) or f"id{user_id}")

    async def on_managers_message(self, update: dict[str, Any], message: dict[str, Any]) -> None:
        text = (message.get("text") or "").strip()
        update_id = update_id_of(update)
        manager = await self.manager(message["from_id"])
        command, _, args = text.partition(" ")
        answer: str | None = None
        attachment: str | None = None
        if command == "/redeem":
            readings = parse_redeem(args)
            if readings is None:
                answer = "Напишите /redeem КОД или /redeem КОД СУММА."
            else:
                key = f"{CHANNEL}:{update_id}" if update_id else None
                outcome = await self.redemptions.redeem_reading(
                    readings, source=manager.key, by=f"{manager.key} {manager.name}", key=key
                )
                answer = managers_text(outcome)
        elif command == "/lead":
            answer = await self._lead(args)
        elif command == "/today":
            answer = await self.desk.today()
        elif command == "/stats":
            answer, attachment = await self._stats()
        elif command == "/reload" and self.reloader is not None:
            answer = (await self.reloader.reload())[1][:4000]
        elif (replied := message.get("reply_message")) and text:
            number = replied.get("conversation_message_id")
            if number is not None:
                peer = message["peer_id"]
                own = reference(peer, message.get("conversation_message_id") or 0)
                answer = await self.desk.reply(manager, reference(peer, number), own, text)
        if answer:
            # Keyed like a prospect's reply: nothing de-duplicates a managers' update (only
            # /redeem's redemption is keyed), so VK is what stops a second answer to it.
            key = reply_key(update_id, 0) if update_id else None
            try:
                await self.sender.post_to_managers(
                    answer, idempotency_key=key, attachment=attachment
                )
            except (RetryLater, TemporaryFailure, Blocked) as exc:
                log.warning("answer in the VK managers' chat not sent: %s", exc)

    async def _stats(self) -> tuple[str, str | None]:
        """`/stats` as one VK message: the key figures and the text, with the funnel's
        picture attached; the text alone when the picture cannot be drawn or uploaded."""
        stats = await self.desk.stats()
        text = f"{stats.caption}\n\n{stats.text}"
        if len(text) > SIZES[CHANNEL].text:
            text = stats.text  # the summary fits one message; the key figures are in it too
        if stats.picture is None:
            return text, None
        try:
            return text, await self.sender.managers_photo(stats.picture, "funnel.png")
        except Exception as exc:  # a picture is a nicety: the figures go without it
            log.warning("the /stats picture was not uploaded to VK: %r", exc)
            return text, None

    async def _lead(self, query: str) -> str:
        if not query.strip():
            return "Напишите /lead и номер лида, телефон или e-mail."
        card = await self.desk.card_for(query, phone_region=self.funnel.phone_region)
        if card is None:
            return f"Лид «{query[:64]}» не найден."
        lead_id, text, buttons = card
        # Not keyed: handled twice, the update would get the first card's number back from
        # VK, and `remember` refuses a reference it holds already (a second card is harmless).
        reference = await self.sender.post_to_managers(text, buttons)
        if reference is not None:
            await self.desk.remember(CHANNEL, reference, lead_id, "card")
        return ""

    async def _slow_down(self, user_id: int, update_id: str | None) -> None:
        text = self.funnel.scenarios.current.scenario.messages.slow_down
        key = reply_key(update_id, 0) if update_id else None
        try:
            await self.sender.send(str(user_id), Outgoing(text), idempotency_key=key)
        except (RetryLater, TemporaryFailure, Blocked) as exc:
            log.info("VK slow-down to %s not sent: %s", user_id, exc)

    async def _answer(self, event_id: str, user_id: int, peer: int, text: str | None) -> None:
        try:
            await self.sender.answer_event(event_id, user_id, peer, snackbar=text)
        except (RetryLater, TemporaryFailure, Blocked) as exc:
            log.info("VK event %s not answered: %s", event_id, exc)


def update_id_of(update: dict[str, Any]) -> str | None:
    """VK's id of an update (`event_id` beside its `type`), the same each time VK sends it;
    not the `event_id` inside a `message_event`, which names the press to answer."""
    value = update.get("event_id")
    return str(value) if value else None


def message_fields(message: dict[str, Any]) -> dict[str, Any]:
    """What a private message is for the engine: a start (VK's "Начать" button, a deep
    link's `ref` on the first message, /start), a button of a keyboard under the input
    field, a command, text, or something that is not text."""
    text = (message.get("text") or "").strip()
    payload = parse_payload(message.get("payload"))
    ref, ref_source = message.get("ref"), message.get("ref_source")
    if isinstance(ref, str) and ref:
        # `ref_source` (a second link parameter) is a source unless the payload names one.
        if isinstance(ref_source, str) and ref_source and "src_" not in ref:
            ref = f"{ref}-src_{ref_source}"
        return {"kind": Kind.START, "payload": ref[:64]}
    command, _, argument = text.partition(" ")
    if payload == START_COMMAND or command.lower() in START_WORDS:
        return {"kind": Kind.START, "payload": argument.strip() or None}
    if payload is not None:
        return {"kind": Kind.BUTTON, "payload": action_of(payload) or ""}
    if command.lower() in TYPED_COMMANDS:
        return {"kind": TYPED_COMMANDS[command.lower()]}
    if text:
        return {"kind": Kind.TEXT, "text": text}
    return {"kind": Kind.UNSUPPORTED}
