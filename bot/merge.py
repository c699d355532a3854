"""One person, two messengers: a lead who proves in one messenger a phone or e-mail that a
lead of another messenger left becomes one lead with it (ARCHITECTURE.md, rule 2).

When two leads merge. A contact stored now (the hook is in the engine, where a contact is
stored) merges the current lead with each other lead holding the same contact (a phone as
E.164, an e-mail in any letter case) when both of these hold:

- the contact is *verified in this very event*: the messenger vouched that it is the sender's
  own (Telegram's shared own contact). The other lead's copy may be typed or verified;
- the two leads' messenger accounts are all in *different channels* ("telegram", "vk",
  "console" are three). A second account in the same messenger is never merged: that is how
  the referral programme recognises somebody inviting himself (bot/referrals.py).

A typed contact merges nothing, whatever the other side holds. Against account takeover: a
merged lead answers every account it has with the person's data (/mydata, /promo codes, the
warm-up chain, a manager's replies go to the account used last), so typing somebody's phone,
easy to know, must not open their lead; the typist gets a lead of their own and sees nothing
of the other (the refusal is only logged: an event would tell them via /mydata that the
phone is known). What this does not stop: somebody who types a victim's phone in VK *before*
the victim ever shares it in Telegram is merged with the victim then (a "pre-hijacked"
account). Closing that needs a proof from both sides (a code sent to the verified chat and
typed in the other), which no messenger gives a bot today. As VK has no verified contact,
VK and Telegram merge when the Telegram side shares its contact after the VK side typed the
number; the other way round they stay two leads. E-mails are never verified yet, so they
merge only when a future channel vouches for one.

What a merge does. The survivor is the older lead (the smaller id); the other becomes an
empty tombstone: its row stays for the funnel counts of the day it came (stage, source,
offer, created_at), `erased_at` marks it, everything personal goes over to the survivor, and
the survivor's event `merged` (details: {"lead": <the other id>}) records which one it was.
Identities, events, stage moves, consents, promo codes and their uses, posts in the
managers' chats and outbox rows are re-pointed. Answers: the survivor's wins where both
answered, the other's is added where only it did. Contacts, tags: the union, a verified copy
wins. Consents: the newest active one of a kind stays, older ones are withdrawn as replaced;
advertising follows the person's last word (a /stop in one messenger after a yes in the
other means no). Handoffs: the more advanced one is kept (open < claimed < lost, not_fit <
won). Referrals: the other's referrals as a referrer go over; its own referral as a friend is
void (the survivor, older, was known before it came; so is a referral between the two).
Tracked links go over unless the survivor has a link for the same URL and event (the old
token then keeps redirecting, unrecorded). Warm-up chains: a chain both are in runs once,
from the one further along; steps the person got in either messenger count as sent (the
other's rows take the survivor's idempotency keys), so no step is sent twice and pending
duplicates are cancelled; a chain that one side finished or stopped (for anything but a
block in that messenger) stays so. Queued broadcasts, lead cards and CRM exports the person
would get twice are cancelled. Score: the sum, less what the same thing gave twice (a
question both answered, a tag both got, an offer's bonus, events over their `max_times`).
Stage: the further funnel stage; blocked only if both were, unsubscribed by the last word,
lost if the kept handoff is. Name, source, offer and time zone: the survivor's unless it has
none; what the bot waits for: the current conversation's. The managers' chats get a notice,
and a card again under the kept number when the handoff came from the other lead.

Locks. It runs in the transaction of the event that revealed the match; the engine holds the
current lead's lock. Everybody else (the delivery worker, expiring codes) locks leads in
ascending id order, so waiting here for a second lead could close a cycle. The second lead
is therefore only *tried* (NOWAIT); when another transaction holds it, `LockOrder` rolls the
event back and the engine handles it again taking every lead's lock in id order first (then
waiting is safe). A queued merge row for the worker was the alternative; it would leave the
person two leads, with two conversations, until the worker ran.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from bot import merge_queue, scoring, stages
from bot.consent import MARKETING
from bot.handoff import post_about_lead
from bot.scenario.model import Scenario
from storage.models import Answer, Booking, Consent, Handoff, Lead, LeadDate, Referral, Tag
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# How far a handoff got: the more advanced one is kept.
HANDOFF_RANK = {"open": 0, "claimed": 1, "lost": 2, "not_fit": 2, "won": 3}


class LockOrder(Exception):
    """The lead to merge with is locked by another transaction: handle the event again,
    taking the locks of `lead_id` and the current lead in id order first."""

    def __init__(self, lead_id: int) -> None:
        super().__init__(f"lead {lead_id} is busy; retry locking it in id order")
        self.lead_id = lead_id


async def on_contact(
    uow: UnitOfWork,
    s: Scenario,
    lead: Lead,
    kind: str,
    value: str,
    *,
    verified: bool,
    now: datetime,
    managers: tuple[str, ...] = (),
) -> Lead | None:
    """`lead` (locked) stored this contact in this event: merge the leads of other messengers
    that hold it, if the contact is verified now (see the module's rule). The lead that is
    the person now (locked), or None when nothing was merged. Raises `LockOrder`."""
    if lead.erased_at is not None:
        return None
    others = [i for i in await uow.leads.find_by_contact(kind, value) if i != lead.id]
    if others and not verified:
        log.info(
            "lead %s typed the %s of leads %s: a typed contact merges nothing",
            lead.id,
            kind,
            others,
        )
        return None
    merged: Lead | None = None
    current = lead
    for other_id in others:
        if not await _other_messenger(uow, current.id, other_id):
            log.info(
                "leads %s and %s share a %s in one messenger: not merged",
                current.id,
                other_id,
                kind,
            )
            continue
        if not await uow.leads.try_lock(other_id):
            raise LockOrder(other_id)
        other = await uow.leads.get(other_id, lock=True)
        # Checked again under the lock: a merge may have taken it meanwhile.
        if other is None or other.erased_at is not None:
            continue
        if not await _other_messenger(uow, current.id, other_id):
            continue
        survivor, gone = (current, other) if current.id < other.id else (other, current)
        await merge_leads(
            uow, s, survivor, gone, now=now, awaiting=current.awaiting, managers=managers
        )
        log.info("lead %s merged into lead %s by a verified %s", gone.id, survivor.id, kind)
        current = merged = survivor
    return merged


async def _other_messenger(uow: UnitOfWork, lead_id: int, other_id: int) -> bool:
    """Whether the other lead has messenger accounts, all in channels this one has none in."""
    ours = {i.channel for i in await uow.leads.identities(lead_id)}
    theirs = {i.channel for i in await uow.leads.identities(other_id)}
    return bool(theirs) and not ours & theirs


async def merge_leads(
    uow: UnitOfWork,
    s: Scenario,
    survivor: Lead,
    gone: Lead,
    *,
    now: datetime,
    awaiting: dict[str, Any] | None = None,
    managers: tuple[str, ...] = (),
) -> None:
    """Make `gone` part of `survivor` (both locked; survivor the older) and leave `gone` an
    empty tombstone; `awaiting` is what the bot waits for from the person now."""
    await uow.session.flush()  # this event's rows are in the database before they move
    answers = await uow.leads.answers(survivor.id), await uow.leads.answers(gone.id)
    tags = await uow.leads.tags(survivor.id), await uow.leads.tags(gone.id)
    twice = await _counted_twice(uow, s, survivor.id, gone.id, answers, tags)

    await uow.leads.move_rows(gone.id, survivor.id)
    _merge_fields(survivor, gone, awaiting=awaiting, score=survivor.score + gone.score - twice)
    await _merge_answers(uow, survivor.id, *answers)
    await _merge_tags(uow, survivor.id, gone.id, tags[0])
    await _merge_dates(uow, survivor.id, gone.id)
    await _merge_bookings(uow, survivor.id, gone.id, now)
    await _merge_contacts(uow, survivor.id, gone.id)
    unsubscribed_at = await _merge_consents(uow, survivor, gone, now)
    handoff_moved = await _merge_handoffs(uow, survivor.id, gone.id)
    lost = await _lost(uow, survivor.id)
    await _merge_referrals(uow, survivor.id, gone.id, now)
    await _merge_links(uow, survivor.id, gone.id)
    await merge_queue.merge_outbox(uow, s, survivor, gone, now)

    _merge_stages(uow, survivor, gone, unsubscribed_at=unsubscribed_at, lost=lost, now=now)
    code = gone.referral_code
    _empty(gone, now)
    if survivor.referral_code is None and code is not None:
        await uow.session.flush()  # the code is unique: free it before it moves
        survivor.referral_code = code
    uow.events.add(survivor.id, "merged", now=now, payload={"lead": gone.id})
    await post_about_lead(
        uow,
        survivor.id,
        f"🔗 Лид #{gone.id} — тот же человек, что и лид #{survivor.id} (тот же контакт "
        f"в другом мессенджере): теперь это один лид #{survivor.id}.",
        purpose="notice",
        key=f"merged:{gone.id}",
        managers=managers,
        now=now,
    )
    if handoff_moved:
        # The gone lead's card names a number that is no more: post it under the kept one.
        for row in await uow.outbox.pending_for_lead(survivor.id):
            if row.kind == scoring.CARD and row.idempotency_key.startswith(f"card:{gone.id}:"):
                merge_queue.cancel(row, "merged: the card is posted under the kept lead's number")
        await scoring.queue_cards(uow, survivor.id, "card", managers, now)
    # Both leads' rows moved by statements and in objects: what follows reads them again.
    await uow.session.flush()
    uow.leads.forget()


# ---- what is counted once ----


async def _counted_twice(
    uow: UnitOfWork,
    s: Scenario,
    survivor_id: int,
    gone_id: int,
    answers: tuple[dict[str, Answer], dict[str, Answer]],
    tags: tuple[set[str], set[str]],
) -> int:
    """Points both leads got for the same thing, which the person earns once: the gone
    lead's answer to a question both answered (the survivor's stays), a tag both have, an
    offer's `then.score` (given at the first delivery), events beyond their `max_times`."""
    twice = sum(answers[1][q].score for q in answers[0].keys() & answers[1].keys())
    twice += sum(s.scoring.tags.get(tag, 0) for tag in tags[0] & tags[1])
    offers = [
        await uow.events.detail_values(lead_id, "magnet_delivered", "offer")
        for lead_id in (survivor_id, gone_id)
    ]
    twice += sum(s.offers[o].then.score for o in offers[0] & offers[1] if o in s.offers)
    for name, rule in s.scoring.events.items():
        if rule.max_times is None:
            continue
        a = await uow.events.count(survivor_id, name)
        b = await uow.events.count(gone_id, name)
        m = rule.max_times
        twice += rule.points * (min(a, m) + min(b, m) - min(a + b, m))
    return twice


# ---- rows keyed by the lead ----


async def _merge_answers(
    uow: UnitOfWork, survivor_id: int, ours: dict[str, Answer], theirs: dict[str, Answer]
) -> None:
    for question, answer in theirs.items():
        if question not in ours:
            uow.session.add(
                Answer(
                    lead_id=survivor_id,
                    question=question,
                    value=answer.value,
                    score=answer.score,
                    created_at=answer.created_at,
                )
            )
        await uow.session.delete(answer)
    await uow.session.flush()


async def _merge_dates(uow: UnitOfWork, survivor_id: int, gone_id: int) -> None:
    """The gone lead's dates the survivor lacks move over (the survivor's own win, as with
    answers); the rest go."""
    ours = select(LeadDate.name).where(LeadDate.lead_id == survivor_id)
    await uow.session.execute(
        update(LeadDate)
        .where(LeadDate.lead_id == gone_id, LeadDate.name.not_in(ours))
        .values(lead_id=survivor_id)
    )
    await uow.session.execute(delete(LeadDate).where(LeadDate.lead_id == gone_id))


async def _merge_bookings(uow: UnitOfWork, survivor_id: int, gone_id: int, now: datetime) -> None:
    # One person, one diary: what either account booked stands for the survivor, but one
    # place per calendar (a booking is one per calendar): the survivor's, the other freed.
    await uow.bookings.release_all(gone_id, "cancelled", now, beside=survivor_id)
    await uow.session.execute(
        update(Booking).where(Booking.lead_id == gone_id).values(lead_id=survivor_id)
    )


async def _merge_tags(uow: UnitOfWork, survivor_id: int, gone_id: int, ours: set[str]) -> None:
    query = select(Tag).where(Tag.lead_id == gone_id)
    for row in (await uow.session.execute(query)).scalars().all():
        if row.tag not in ours:
            uow.session.add(Tag(lead_id=survivor_id, tag=row.tag, created_at=row.created_at))
        await uow.session.delete(row)
    await uow.session.flush()


async def _merge_contacts(uow: UnitOfWork, survivor_id: int, gone_id: int) -> None:
    """The union; where both have a contact (an e-mail in any case), a verified copy wins."""
    ours = list(await uow.leads.contacts(survivor_id))
    for contact in await uow.leads.contacts(gone_id):
        same = next((c for c in ours if _same_contact(c.kind, c.value, contact.value)), None)
        if same is None:
            contact.lead_id = survivor_id
            ours.append(contact)
        else:
            same.verified = same.verified or contact.verified
            await uow.session.delete(contact)
    await uow.session.flush()


def _same_contact(kind: str, value: str, other: str) -> bool:
    return value.lower() == other.lower() if kind == "email" else value == other


async def _merge_consents(
    uow: UnitOfWork, survivor: Lead, gone: Lead, now: datetime
) -> datetime | None:
    """One active consent per kind (the newest; older ones are withdrawn as replaced, as a
    new text version replaces an old one). Advertising follows the person's last word: a
    /stop in either messenger later than the newest yes withdraws it. When the person is
    unsubscribed, since when; else None. Consents were moved to the survivor already."""
    newest: dict[str, Consent] = {}
    active = [c for c in await uow.leads.consents(survivor.id) if c.withdrawn_at is None]
    for consent in sorted(active, key=lambda c: (c.given_at, c.id), reverse=True):
        if consent.kind in newest:
            consent.withdrawn_at = now
        else:
            newest[consent.kind] = consent
    stops = [t for t in (survivor.unsubscribed_at, gone.unsubscribed_at) if t is not None]
    marketing = newest.get(MARKETING)
    if not stops or (marketing is not None and marketing.given_at > max(stops)):
        return None
    if marketing is not None:
        marketing.withdrawn_at = now
    return max(stops)


async def _merge_handoffs(uow: UnitOfWork, survivor_id: int, gone_id: int) -> bool:
    """Keep the more advanced handoff (the survivor's on a tie); True when it was the gone
    lead's, now the survivor's."""
    ours = await uow.session.get(Handoff, survivor_id)
    theirs = await uow.session.get(Handoff, gone_id)
    if theirs is None:
        return False
    if ours is not None and HANDOFF_RANK.get(ours.status, 0) >= HANDOFF_RANK.get(theirs.status, 0):
        await uow.session.delete(theirs)
        await uow.session.flush()
        return False
    if ours is not None:
        await uow.session.delete(ours)
    fields = {c.key: getattr(theirs, c.key) for c in Handoff.__table__.columns}
    await uow.session.delete(theirs)
    await uow.session.flush()
    uow.session.add(Handoff(**(fields | {"lead_id": survivor_id})))
    await uow.session.flush()
    return True


async def _lost(uow: UnitOfWork, lead_id: int) -> bool:
    handoff = await uow.session.get(Handoff, lead_id)
    return handoff is not None and handoff.status in ("lost", "not_fit")


async def _merge_referrals(uow: UnitOfWork, survivor_id: int, gone_id: int, now: datetime) -> None:
    """Friends the gone lead brought are the survivor's now. The gone lead's own referral
    is void: the survivor, older, was known before it came (the referrer may even be the
    survivor: the person invited himself from the other messenger)."""
    await uow.session.execute(
        update(Referral).where(Referral.referrer_id == gone_id).values(referrer_id=survivor_id)
    )
    for friend_id in (gone_id, survivor_id):
        referral = await uow.session.get(Referral, friend_id)
        if referral is None or referral.void_at is not None:
            continue
        if referral.referrer_id == survivor_id:
            reason = "self-referral: merged with the referrer"
        elif friend_id == gone_id:
            reason = f"known before: merged into lead #{survivor_id}"
        else:
            continue
        referral.void_at, referral.void_reason = now, reason
        uow.events.add(survivor_id, "referral_void", now=now, payload={"reason": reason})


async def _merge_links(uow: UnitOfWork, survivor_id: int, gone_id: int) -> None:
    """Tracked links go over, but where the survivor has one for the same URL and event
    (one token per lead, URL and event): the gone lead's token keeps redirecting, and as its
    lead is a tombstone a click on it is not recorded."""
    ours = {(link.url, link.event) for link in await uow.leads.tracked_links(survivor_id)}
    for link in await uow.leads.tracked_links(gone_id):
        if (link.url, link.event) not in ours:
            link.lead_id = survivor_id


# ---- the lead rows ----


def _merge_fields(
    survivor: Lead, gone: Lead, *, awaiting: dict[str, Any] | None, score: int
) -> None:
    for name in ("first_name", "source", "offer", "timezone"):
        if getattr(survivor, name) is None:
            setattr(survivor, name, getattr(gone, name))
    survivor.awaiting = awaiting
    survivor.score = score


def _merge_stages(
    uow: UnitOfWork,
    survivor: Lead,
    gone: Lead,
    *,
    unsubscribed_at: datetime | None,
    lost: bool,
    now: datetime,
) -> None:
    """The further funnel stage; the side stage: blocked only if both were (the person is
    reachable in the other messenger), unsubscribed by the last word, else lost if the kept
    handoff was lost."""
    old_stage, old_funnel = survivor.stage, survivor.funnel_stage
    funnel = max(old_funnel, gone.funnel_stage, key=lambda stage: stages.RANK.get(stage, 0))
    blocked = [t for t in (survivor.unreachable_at, gone.unreachable_at) if t is not None]
    survivor.unreachable_at = max(blocked) if len(blocked) == 2 else None
    survivor.unsubscribed_at = unsubscribed_at
    survivor.funnel_stage = funnel
    if survivor.unreachable_at is not None:
        survivor.stage = "blocked"
    elif unsubscribed_at is not None:
        survivor.stage = "unsubscribed"
    else:
        survivor.stage = "lost" if lost else funnel
    reason = f"merged with lead #{gone.id}"
    if funnel != old_funnel:
        uow.events.add_stage_change(survivor.id, old_funnel, funnel, reason=reason, now=now)
    if survivor.stage != old_stage and not (old_stage == old_funnel and survivor.stage == funnel):
        uow.events.add_stage_change(survivor.id, old_stage, survivor.stage, reason=reason, now=now)


def _empty(gone: Lead, now: datetime) -> None:
    """The tombstone: anonymous, its stage, source, offer and arrival kept for the counts
    (as an erased lead's are), nothing of the person."""
    gone.first_name = gone.awaiting = gone.timezone = gone.referral_code = None
    gone.score = 0
    gone.erased_at = gone.erased_at or now
    gone.updated_at = now
