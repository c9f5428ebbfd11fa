"""Prometheus metrics, aggregated over every worker process.

With several workers the supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh folder before
starting them, and `/metrics` collects every worker's samples from there, so a scrape sees the
whole service whichever worker answers it.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "diabetes_http_requests", "HTTP requests answered", ["route", "status"], registry=self._registry
        )
        self.latency = Histogram(
            "diabetes_http_request_duration_seconds",
            "Time from request to response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self._registry,
        )
        self.predictions = Counter(
            "diabetes_predictions", "Rows scored, by method", ["method"], registry=self._registry
        )
        self.model_info = Gauge(
            "diabetes_model_info",
            "The served model (value 1), labelled with its name and version",
            ["name", "version"],
            registry=self._registry,
            multiprocess_mode="max",
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self._registry)
