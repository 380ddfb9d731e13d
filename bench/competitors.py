"""The same no-op task for Celery and Dramatiq, on the Redis in $BENCH_REDIS_URL (broker and
result store both), for bench/throughput.py."""

from __future__ import annotations

import os

import dramatiq
from celery import Celery
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")

celery_app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.update(
    task_default_queue="bench",
    worker_prefetch_multiplier=16,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
)


@celery_app.task(name="bench.noop")
def celery_noop(index: int) -> int:
    return index


broker = RedisBroker(url=REDIS_URL)
broker.add_middleware(Results(backend=RedisBackend(url=REDIS_URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", store_results=True, max_retries=0)
def dramatiq_noop(index: int) -> int:
    return index
