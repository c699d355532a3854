"""The hourglass: funnel stages only move forward; side stages (lost, unsubscribed, blocked)
can happen at any point and do not erase how far the lead got."""

from __future__ import annotations

from datetime import datetime

from bot.scenario.fields import FUNNEL_STAGES, SIDE_STAGES
from storage.models import Lead
from storage.repositories import EventRepository

RANK = {stage: rank for rank, stage in enumerate(FUNNEL_STAGES)}


def advance(
    lead: Lead, stage: str, *, reason: str, now: datetime, events: EventRepository
) -> bool:
    """Move the lead forward to funnel `stage`; False when it is there or further already."""
    if RANK[stage] <= RANK[lead.funnel_stage]:
        return False
    events.add_stage_change(lead.id, lead.funnel_stage, stage, reason=reason, now=now)
    lead.funnel_stage = stage
    if lead.stage not in SIDE_STAGES:
        lead.stage = stage
    return True


def set_side_stage(
    lead: Lead, stage: str, *, reason: str, now: datetime, events: EventRepository
) -> bool:
    if lead.stage == stage:
        return False
    events.add_stage_change(lead.id, lead.stage, stage, reason=reason, now=now)
    lead.stage = stage
    return True


def leave_side_stage(
    lead: Lead, stage: str, *, reason: str, now: datetime, events: EventRepository
) -> bool:
    """Back from `stage` (say, unsubscribed) to the furthest funnel stage reached."""
    if lead.stage != stage:
        return False
    events.add_stage_change(lead.id, stage, lead.funnel_stage, reason=reason, now=now)
    lead.stage = lead.funnel_stage
    return True
