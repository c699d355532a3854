"""The heartbeat's periodic jobs, for `/wait`: run at each moment one of them has work, so
that a week played in a second sees every expiry reminder and unclaimed-card reminder in
order. The running bot runs them every 30 or 60 seconds instead (bot/heartbeat.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select

from bot.analytics.experiments import decide
from bot.engine.funnel import Funnel
from bot.handoff import remind_unclaimed
from bot.heartbeat import forget_old_update_keys
from bot.reactions import remind_expiring_codes
from bot.recurring import next_queued, queue_due
from bot.time_triggers import next_fire, start_due
from storage.models import Handoff, PromoCode


class PeriodicJobs:
    """The jobs of `start_heartbeat` but delivery (the chat drives the worker itself) and the
    scenario reload (the chat looks before each line typed)."""

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel

    async def run(self) -> None:
        """Each job once, at the clock's time."""
        f = self.funnel
        await remind_expiring_codes(f.db, f.scenarios, f.clock)
        await remind_unclaimed(f.db, f.scenarios, f.clock, f.routes.managers)
        await forget_old_update_keys(f.db, f.clock)
        await decide(f.db, f.scenarios, f.clock, f.routes)
        await start_due(f.db, f.scenarios, f.clock)
        await queue_due(f.db, f.scenarios, f.clock)

    async def next_due(self) -> datetime | None:
        """The first moment after now at which a job finds work it would not find now. Read
        with the jobs' own conditions (promos.remind_expiring, handoff.remind_unclaimed);
        one they missed is still done when `/wait` ends, at its end."""
        f = self.funnel
        s = f.scenarios.current.scenario
        now = f.clock.now()
        moments: list[datetime] = []
        async with f.db.unit_of_work() as uow:
            for promo_id, promo in s.promos.items():
                window = promo.remind_before
                if window is None or promo.kind != "personal":
                    continue
                query = select(func.min(PromoCode.expires_at)).where(
                    PromoCode.promo == promo_id,
                    PromoCode.lead_id.is_not(None),
                    PromoCode.reminded_at.is_(None),
                    PromoCode.expires_at > now + window,
                    or_(PromoCode.uses_left.is_(None), PromoCode.uses_left > 0),
                )
                expires = (await uow.session.execute(query)).scalar_one_or_none()
                if expires is not None:
                    moments.append(expires - window)
            if f.routes.managers:
                for after, column in (
                    (s.handoff.remind_after, Handoff.reminded_at),
                    (s.handoff.escalate_after, Handoff.escalated_at),
                ):
                    query = select(func.min(Handoff.qualified_at)).where(
                        Handoff.status == "open",
                        column.is_(None),
                        Handoff.qualified_at > now - after,
                    )
                    qualified = (await uow.session.execute(query)).scalar_one_or_none()
                    if qualified is not None:
                        moments.append(qualified + after)
            fires = await next_fire(uow, s, now)
            if fires is not None:
                moments.append(fires)
        queued = next_queued(f.scenarios, now)
        if queued is not None:
            moments.append(queued)
        return min(moments, default=None)
