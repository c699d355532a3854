"""What the bot counts for Prometheus: one `Metrics` per process, made in the composition root
(bot/app.py) and handed to what records into it (the engine, the delivery worker, the
redemptions), each with a registry of its own. No global registry: tests and the terminal
chat make as many bots in one process as they like, and each exposes only its own numbers.

The outbox's depth and the lag of its oldest due row are not counted but read when scraped:
`scrape` runs one aggregate query, bounded in time, and the collector reports what it read
(or `leadbot_scrape_error` 1 and no outbox figures, rather than a failed scrape)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from storage.database import Database
from storage.models import OutboxRow

log = logging.getLogger(__name__)

# An update takes a few milliseconds on SQLite and tens on a busy PostgreSQL; seconds mean
# lock waits or a database that is away.
UPDATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCRAPE_TIMEOUT = 2.0  # seconds the outbox query may take before the scrape goes without it


def delivery_outcome(asked: str, became: str) -> str:
    """The label of a decided outbox row: what the sender asked for (`Skip.status`) and the
    status the recorder gave the row. A retry is `retried` until it runs out of attempts
    (`failed`); a row put back for quiet hours, pacing or a retry-after is `deferred`."""
    if asked == "retry":
        return "retried" if became == "pending" else "failed"
    if asked == "pending":
        return "deferred"
    return became


class OutboxGauges(Collector):
    """The outbox's pending rows and the lag of the oldest due one, as last read by `read`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds  # the query's bound
        self.pending: int | None = None
        self.lag_seconds: float | None = None
        self.error = 0

    async def read(self, db: Database, now: datetime) -> None:
        """One aggregate query in a short read-only transaction; on failure or timeout the
        figures are dropped (not left stale) and the error is flagged."""
        # Pending rows, and the earliest due_at among those already due (the partial MIN
        # needs FILTER: SQLite 3.30+ and PostgreSQL). The (status, due_at, id) index serves it.
        query = select(
            func.count(),
            func.min(OutboxRow.due_at).filter(OutboxRow.due_at <= now),
        ).where(OutboxRow.status == "pending")
        try:
            async with asyncio.timeout(self.seconds):
                async with db.reading() as session:
                    pending, oldest = (await session.execute(query)).one()
        except Exception as exc:  # a timeout included: the scrape goes on without the figures
            log.warning("reading the outbox for metrics failed: %s", _short(exc))
            self.pending, self.lag_seconds, self.error = None, None, 1
            return
        self.pending = int(pending)
        self.lag_seconds = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
        self.error = 0

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families(0, 0.0, 0)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families(self.pending, self.lag_seconds, self.error)

    @staticmethod
    def _families(
        pending: int | None, lag: float | None, error: int
    ) -> Iterable[GaugeMetricFamily]:
        if pending is not None:
            yield GaugeMetricFamily(
                "leadbot_outbox_pending_rows", "Outbox rows waiting to be sent.", value=pending
            )
        if lag is not None:
            yield GaugeMetricFamily(
                "leadbot_outbox_lag_seconds",
                "How long the oldest due pending outbox row has been due (0: none is due).",
                value=lag,
            )
        yield GaugeMetricFamily(
            "leadbot_scrape_error",
            "1 when the last scrape could not read the outbox in time, else 0.",
            value=error,
        )


class Metrics:
    """The process's counters; `scrape` renders them in Prometheus' text format."""

    def __init__(self, *, scrape_seconds: float = SCRAPE_TIMEOUT) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter(
            "leadbot_updates_handled",
            "Incoming updates the engine took, by channel and outcome "
            "(handled, duplicate, failed, unavailable, cancelled).",
            ["channel", "outcome"],
            registry=r,
        )
        self.update_seconds = Histogram(
            "leadbot_update_duration_seconds",
            "Seconds the engine took over one incoming update, by channel.",
            ["channel"],
            buckets=UPDATE_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "leadbot_messages",
            "Outbox rows (messages, managers' posts, CRM exports) recorded by the delivery "
            "worker, by channel and outcome (sent, retried, deferred, failed, cancelled, "
            "skipped).",
            ["channel", "outcome"],
            registry=r,
        )
        self.pacing_waits = Counter(
            "leadbot_pacing_waits",
            "Sends that waited for a rate-limit slot or a platform's retry-after, by channel.",
            ["channel"],
            registry=r,
        )
        self.pacing_wait_seconds = Counter(
            "leadbot_pacing_wait_seconds",
            "Seconds sends waited for rate-limit slots and retry-afters, by channel.",
            ["channel"],
            registry=r,
        )
        self.handoff_cards = Counter(
            "leadbot_handoff_cards_posted",
            "Lead cards posted in a managers' chat, by channel and purpose "
            "(card, reminder, escalation).",
            ["channel", "purpose"],
            registry=r,
        )
        self.redemptions = Counter(
            "leadbot_promo_redemptions",
            "Promo code redemption attempts, by outcome "
            "(redeemed, unknown, expired, used_up, locked, repeated).",
            ["outcome"],
            registry=r,
        )
        self.outbox = OutboxGauges(scrape_seconds)
        r.register(self.outbox)

    def update_handled(self, channel: str, outcome: str, seconds: float) -> None:
        self.updates.labels(channel, outcome).inc()
        self.update_seconds.labels(channel).observe(seconds)

    def row_recorded(self, channel: str, outcome: str) -> None:
        self.messages.labels(channel, outcome).inc()

    def paced(self, channel: str, seconds: float) -> None:
        self.pacing_waits.labels(channel).inc()
        self.pacing_wait_seconds.labels(channel).inc(seconds)

    def card_posted(self, channel: str, purpose: str) -> None:
        self.handoff_cards.labels(channel, purpose).inc()

    def redeemed(self, outcome: str) -> None:
        self.redemptions.labels(outcome).inc()

    async def scrape(self, db: Database, now: Callable[[], datetime]) -> bytes:
        """The text exposition, the outbox read first (prometheus-client collects
        synchronously, the database answers asynchronously)."""
        await self.outbox.read(db, now())
        return generate_latest(self.registry)


def _short(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0]
    return f"{exc.__class__.__name__}: {first}"[:200]
