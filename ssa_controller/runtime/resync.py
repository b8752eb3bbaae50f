"""The periodic resync: an APScheduler job that only enqueues every cached AppTask.

The job never talks to the API server: reconciles decide from the cache, so a resync over
converged objects costs no requests. max_instances=1 and coalesce=True keep a slow or missed
run from piling up.
"""

from __future__ import annotations

from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

JOB_ID = "resync"


def start(enqueue_all: Callable[[], None], period: float, jitter: float) -> BackgroundScheduler:
    """Run `enqueue_all` every `period` seconds, each run shifted by up to period*jitter."""
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(enqueue_all, IntervalTrigger(seconds=period, jitter=period * jitter or None),
                      id=JOB_ID, max_instances=1, coalesce=True, misfire_grace_time=None)
    scheduler.start()
    return scheduler
