"""The service's Prometheus metrics, one registry per app so tests and several apps never share counts."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter("engine_webhooks_received_total", "Webhooks accepted and stored",
                                ["retailer", "source"], registry=self.registry)
        self.ignored = Counter("engine_webhooks_ignored_total", "Webhooks of a type the retailer does not map",
                               ["retailer"], registry=self.registry)
        self.rejected = Counter("engine_webhooks_rejected_total", "Webhooks refused, by reason",
                                ["reason"], registry=self.registry)
        self.delivered = Counter("engine_events_delivered_total", "Events Klaviyo accepted",
                                 ["retailer"], registry=self.registry)
        self.retried = Counter("engine_events_retried_total", "Delivery attempts that will be tried again",
                               ["retailer"], registry=self.registry)
        self.dead = Counter("engine_events_dead_lettered_total", "Events given up on", ["retailer"],
                            registry=self.registry)
        self.latency = Histogram("engine_delivery_latency_seconds", "From event stored to Klaviyo accepting it",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
                                 registry=self.registry)
        self.queue = Gauge("engine_queue_depth", "Jobs and events waiting, by kind", ["kind"], registry=self.registry)

    def render(self, queue_depth: Callable[[], dict[str, int]]) -> bytes:
        for kind, depth in queue_depth().items():
            self.queue.labels(kind).set(depth)
        return generate_latest(self.registry)
