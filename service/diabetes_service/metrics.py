"""Prometheus metrics, aggregated over every worker process.

With several workers the supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh folder before
starting them, and `/metrics` collects every worker's samples from there, so a scrape sees the
whole service whichever worker answers it.
"""

from __future__ import annotations

import os
from typing import Any

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
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[str, Any] = {}
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
        # `labels()` looks the child up under a lock on every call; routes and statuses are few,
        # so each (route, status) pair's children are looked up once and kept.
        children = self._children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_predictions(self, method: str, rows: int) -> None:
        child = self._prediction_children.get(method)
        if child is None:
            child = self._prediction_children[method] = self.predictions.labels(method)
        child.inc(rows)

    def render(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self._registry)
