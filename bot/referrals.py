"""The referral programme: a lead's referral code and links, the friend who came by a link,
the friend who turned out to be somebody already known, and the referrer's reward.

A friend is attributed only when its first message ever carries `ref_<code>` (no
re-attribution of somebody who wrote before). The friend's phones and e-mails are checked
against every other lead when it leaves one and again before a reward: the referrer's own
second account, or anybody known before, makes the referral void and it is never rewarded.
The reward is a fresh `reward_promo` code per friend who reaches `reward_when`, at most
`max_rewards` per referrer; the referrer becomes an `advocate` either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot import promos, stages
from bot.render import render
from bot.rule_facts import times
from bot.scenario.model import Scenario
from bot.sequences import lead_channel
from storage.models import Lead, Referral
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

REFERRAL_LINK = "referral_link"  # the placeholder that shows the lead's own link
REWARD = "referral_reward"  # outbox kind: the reward, granted and sent by the worker
# 8 characters of the promo alphabet (~40 bits): short enough for a link anybody forwards,
# too many to find a stranger's code by trying. No "-": deep-link parts are joined by it.
CODE_LENGTH = 8
ATTEMPTS = 5


@dataclass
class ReferralLinks:
    """Where referral links point. The Telegram bot's username is learnt from getMe when
    the bot starts; the VK community's from the settings."""

    telegram_bot: str | None = None
    vk_group: str | None = None

    def link(self, channel: str, code: str) -> str:
        """The link for a person who writes to us in `channel`; another messenger's link
        when this one has none; the command to type when no link is known (the console)."""
        links = {
            "telegram": self.telegram_bot and f"https://t.me/{self.telegram_bot}?start=ref_{code}",
            "vk": self.vk_group and f"https://vk.me/{self.vk_group}?ref=ref_{code}",
        }
        return links.get(channel) or links["telegram"] or links["vk"] or f"/start ref_{code}"


@dataclass(frozen=True)
class Counts:
    friends: int  # came by the link (void ones not counted)
    qualified: int  # reached `reward_when`


@dataclass
class Reward:
    """What a friend's progress did to its referrer: the thank-you to send (None without a
    code), and the events and stage for the caller to react to (chains that start on
    `referral_rewarded` or on the stage `advocate`)."""

    text: str | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reached: set[str] = field(default_factory=set)


async def code_of(uow: UnitOfWork, lead: Lead) -> str:
    """The lead's referral code, made at first use. The caller holds the lead's lock."""
    if lead.referral_code:
        return lead.referral_code
    for _ in range(ATTEMPTS):
        code = promos.random_chars(CODE_LENGTH)
        if await _referrer(uow, code) is None:
            lead.referral_code = code
            return code
    raise RuntimeError(f"no free referral code after {ATTEMPTS} attempts")


async def attribute(
    uow: UnitOfWork, s: Scenario, friend: Lead, code: str, now: datetime
) -> Lead | None:
    """A brand-new lead came by `code`: the referrer, or None when the code is nobody's,
    the friend's own, or the programme is off."""
    if s.referral is None:
        return None
    referrer = await _referrer(uow, code.upper())
    if referrer is None or referrer.id == friend.id or referrer.erased_at is not None:
        return None
    if await uow.session.get(Referral, friend.id) is not None:
        return None
    uow.session.add(Referral(friend_id=friend.id, referrer_id=referrer.id, joined_at=now))
    return referrer


async def counts(uow: UnitOfWork, referrer_id: int) -> Counts:
    query = select(func.count(), func.count(Referral.qualified_at)).where(
        Referral.referrer_id == referrer_id, Referral.void_at.is_(None)
    )
    friends, qualified = (await uow.session.execute(query)).one()
    return Counts(int(friends), int(qualified))


async def react(
    uow: UnitOfWork,
    s: Scenario,
    friend: Lead,
    now: datetime,
    recorded: list[tuple[str, dict[str, Any]]],
) -> None:
    """After the friend's events (the caller holds its lock): void the referral if a new
    contact shows the friend is somebody known; once the friend reaches `reward_when`, mark
    it (once: the friend's lock is held) and queue the referrer's reward. The reward is
    granted by the delivery worker under the referrer's own lock (`grant`): taking a second
    lead's lock here would invert the worker's order of locks and could deadlock."""
    if s.referral is None:
        return
    # A friend's referral is made with its `referral_joined` event: most leads, who came by
    # no link, are told apart by what they keep, without reading the referrals.
    if not await times(uow, friend, "referral_joined"):
        return
    referral = await uow.session.get(Referral, friend.id)
    if referral is None or referral.void_at is not None or referral.qualified_at is not None:
        return
    due = stages.RANK[friend.funnel_stage] >= stages.RANK[s.referral.reward_when]
    contact = any(name == "contact_shared" for name, _ in recorded)
    if not (due or contact):
        return
    known = await _known_elsewhere(uow, friend.id, referral.referrer_id)
    if known is not None:
        referral.void_at, referral.void_reason = now, known
        uow.events.add(friend.id, "referral_void", now=now, payload={"reason": known})
        log.info("referral of lead %s is void: %s", friend.id, known)
        return
    if not due:
        return
    referral.qualified_at = now
    await uow.outbox.enqueue(
        idempotency_key=f"{REWARD}:{friend.id}",
        channel=await lead_channel(uow, referral.referrer_id),
        kind=REWARD,
        due_at=now,
        now=now,
        lead_id=referral.referrer_id,
        payload={"friend": friend.id},
    )


async def grant(
    uow: UnitOfWork, s: Scenario, referrer: Lead, friend_id: int, now: datetime
) -> Reward | None:
    """The referrer's reward for a friend who counted (the caller holds the referrer's lock):
    the stage `advocate`, a fresh `reward_promo` code within `max_rewards`, the event
    `referral_rewarded`, and the thank-you text (None without a code)."""
    referral = await uow.session.get(Referral, friend_id)
    if referral is None or referral.void_at is not None or referrer.erased_at is not None:
        return None
    reward = Reward()
    if stages.advance(
        referrer, "advocate", reason=f"friend #{friend_id}", now=now, events=uow.events
    ):
        reward.reached.add("advocate")
    details: dict[str, Any] = {"friend": friend_id}
    code = await _reward_code(uow, s, referrer, now) if s.referral is not None else None
    if code is not None:
        referral.reward_code = code.code
        details |= {"promo": code.promo, "code": code.code}
        reward.text = render(s.messages.referral_reward, promos.code_values(s, code))
    uow.events.add(referrer.id, "referral_rewarded", now=now, payload=details)
    reward.events.append(("referral_rewarded", details))
    return reward


async def _reward_code(
    uow: UnitOfWork, s: Scenario, referrer: Lead, now: datetime
) -> promos.PromoCode | None:
    assert s.referral is not None
    promo_id = s.referral.reward_promo
    if promo_id is None or promo_id not in s.promos:
        return None
    rewarded = select(func.count()).where(
        Referral.referrer_id == referrer.id, Referral.reward_code.is_not(None)
    )
    if int((await uow.session.execute(rewarded)).scalar_one()) >= s.referral.max_rewards:
        log.info("referrer %s had its %d rewards", referrer.id, s.referral.max_rewards)
        return None
    try:
        return await promos.issue(uow, s, referrer, promo_id, now, fresh=True)
    except promos.NoCode as no_code:
        log.warning("referrer %s gets no reward code: %s", referrer.id, no_code)
        return None


async def _referrer(uow: UnitOfWork, code: str) -> Lead | None:
    query = select(Lead).where(Lead.referral_code == code)
    return (await uow.session.execute(query)).scalar_one_or_none()


async def _known_elsewhere(uow: UnitOfWork, friend_id: int, referrer_id: int) -> str | None:
    """Why the friend is not new: a phone or e-mail another lead has; None when it is new."""
    for contact in await uow.leads.contacts(friend_id):
        found = await uow.leads.find_by_contact(contact.kind, contact.value)
        others = [i for i in found if i != friend_id]
        if referrer_id in others:
            return f"self-referral: the referrer's {contact.kind}"
        if others:
            return f"known before: the {contact.kind} of lead #{others[0]}"
    return None
