"""Delivery of everything the outbox holds: see `worker` for the life of a row."""

from bot.delivery.outcomes import LEASE, MAX_ATTEMPTS, Prepared, Skip, backoff
from bot.delivery.sending import CONCURRENCY
from bot.delivery.worker import BATCH, DeliveryWorker

__all__ = [
    "BATCH",
    "CONCURRENCY",
    "LEASE",
    "MAX_ATTEMPTS",
    "DeliveryWorker",
    "Prepared",
    "Skip",
    "backoff",
]
