"""Prometheus metrics (the official ``prometheus_client``) for ``GET /metrics``.

Two kinds of numbers:

* **Read from the database at each scrape** (``DatabaseCollector``): queue depths
  (``mailforum_spool_messages{state}``, ``mailforum_outbox_copies{state}``), posts
  (``mailforum_posts_total``, ``mailforum_posts{status}``) and members. Every node of
  one database answers the same values, so a dashboard takes ``max`` over instances,
  never ``sum``.
* **Counted in the process that did the work**: ingest and processing latency
  histograms, copies sent and failed, bounces, digest runs, web requests. Under
  ``serve --processes`` each role is its own process, so the supervisor gives its
  children one ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multi-process mode:
  each process writes its values to memory-mapped files there) and the web child adds
  them up at each scrape; a child that dies and restarts keeps its counts, so counters
  never go back. Each node counts its own work: sum counters over instances.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from mailforum.db.session import Database

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

INGEST_SECONDS = Histogram(
    "mailforum_ingest_seconds", "From the end of DATA to the committed spool row (the 250).", buckets=_LATENCY
)
PROCESSING_SECONDS = Histogram(
    "mailforum_processing_seconds",
    "From a message's arrival in the spool to the end of its processing.",
    buckets=_LATENCY,
)
DELIVERY_SECONDS = Histogram(
    "mailforum_delivery_seconds", "From an outbox copy's creation to the relay's 250.", buckets=_LATENCY
)
COPIES_SENT = Counter("mailforum_copies_sent", "Outgoing copies the relay accepted.")
COPIES_FAILED = Counter("mailforum_copies_failed", "Outgoing copies given up on (5xx, or lifetime over).")
BOUNCES = Counter("mailforum_bounces", "Bounces counted against members.", ["kind"])
DIGEST_RUNS = Counter("mailforum_digest_runs", "Digest runs queued by the scheduler or the CLI.")
WEB_REQUESTS = Counter("mailforum_web_requests", "HTTP requests answered.", ["kind", "status"])
WEB_SECONDS = Histogram("mailforum_web_request_seconds", "Time to answer an HTTP request.", ["kind"])


class DatabaseCollector(Collector):
    """The numbers every node reads alike from the shared database, at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        from mailforum.db import admin_queries
        from mailforum.db.enums import OutboxState, PostStatus, SpoolState

        with self.db.read_session() as session:
            spool = admin_queries.spool_by_state(session)
            outbox = admin_queries.outbox_by_state(session)
            posts = admin_queries.posts_by_status(session)
            members, disabled = admin_queries.members_total(session)
        gauge = GaugeMetricFamily("mailforum_spool_messages", "Spool entries by state.", labels=["state"])
        for state in SpoolState:
            gauge.add_metric([state.value], spool.get(state.value, 0))
        yield gauge
        gauge = GaugeMetricFamily("mailforum_outbox_copies", "Outbox copies by state.", labels=["state"])
        for copy_state in OutboxState:
            gauge.add_metric([copy_state.value], outbox.get(copy_state.value, 0))
        yield gauge
        yield CounterMetricFamily(
            "mailforum_posts", "Published posts.", value=posts.get(PostStatus.PUBLISHED.value, 0)
        )
        gauge = GaugeMetricFamily("mailforum_posts_by_status", "Posts by status.", labels=["status"])
        for status in PostStatus:
            gauge.add_metric([status.value], posts.get(status.value, 0))
        yield gauge
        yield GaugeMetricFamily("mailforum_members", "Memberships of every list.", value=members)
        yield GaugeMetricFamily(
            "mailforum_members_delivery_disabled", "Members whose delivery bounces disabled.", value=disabled
        )


def exposition(db: Database) -> bytes:
    """The Prometheus text of this process (or, in multi-process mode, of every process of
    this node) followed by the numbers read from the database. Blocking: call it in a thread."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    shared = CollectorRegistry()
    shared.register(DatabaseCollector(db))
    return generate_latest(registry) + generate_latest(shared)
