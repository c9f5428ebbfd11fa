"""Prometheus metrics, added up over every worker process.

A request only adds to plain counters in its own worker's memory. (Prometheus' multiprocess mode
writes a memory-mapped file under a lock for every sample: four of those per request cost more
than scoring the model.) Under the supervisor each worker writes a snapshot of its totals to a
shared folder at most every FLUSH_SECONDS, and `/metrics` adds up every worker's snapshot, dead
workers' included so that counters never go back; prometheus-client renders the text.

Every counter an alert rule names (diabetes_deploy/monitoring.py) is rendered from start-up with the
label values the rules count on at 0, even before anything was counted: Prometheus' `increase()`
and `rate()` need a sample before an event to see it, so a series born at 1 hides its first event
(the first refused swap, the first restarts after start-up would never fire their alert).
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from diabetes_service.observability.later import FlushLater

if TYPE_CHECKING:
    from prometheus_client.core import Metric

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FLUSH_SECONDS = 0.1

# The label values the alert rules count on, rendered at 0 until counted (see above). The reasons are
# supervisor/restarts.py's, the outcomes supervisor/follow.py's; the routes and statuses those the
# rules pin (the readiness probe's 200 and 503) or count as failed (5xx, 408) on the scoring route.
RESTART_REASONS = ("exit", "signal", "heartbeat")
SWAP_OUTCOMES = ("swapped", "refused")
# Payload logging's accounting (observability/payloads.py): every sampled record is written or dropped.
PAYLOAD_OUTCOMES = ("written", "dropped", "sampled_out")
ALERTED_REQUESTS = (
    ("/health/ready", 200),
    ("/health/ready", 503),
    ("/score", 200),
    ("/score", 408),
    ("/score", 500),
    ("/score", 503),
)
ALERTED_LATENCY_ROUTES = ("/score",)
# Safe rollout (scoring/rollout.py): its states, one at 1 and the others at 0 from start-up, and its counters.
ROLLOUT_STATES = ("off", "shadow", "canary", "rolled_back", "promoted")
ROLLOUT_COUNTERS = {
    "shadow_calls": "Shadow copies the challenger scored",
    "shadow_dropped": "Shadow copies dropped: the challenger's queue was full",
    "shadow_batches": "Challenger calls that scored shadow copies: fewer than the copies when batched",
    "challenger_calls": "Calls (canary) and shadow copies the challenger scored or failed",
    "challenger_errors": "Calls and copies the challenger failed that the champion scored",
    "diverged_rows": "Shadow rows whose challenger answer is beyond the tolerance of the champion's (or another label)",
    "compared_rows": "Shadow rows compared between the challenger and the champion",
}

log = logging.getLogger("diabetes_service")


class Totals:
    """What one worker has counted since it started."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        # Per route: a count per latency bucket, one for over the last bucket, then the sum of seconds.
        self.latency: dict[str, list[float]] = {}
        self.predictions: dict[str, int] = {}
        self.model_calls: dict[str, int] = {}
        self.models: set[tuple[str, str]] = set()
        self.artifacts: set[tuple[str, str, str]] = set()  # (name, version, sha256 of the artifact file)
        # Kept by the supervisor (restarts.py), in a snapshot of its own.
        self.worker_restarts: dict[str, int] = {}
        self.crash_looping = 0
        self.model_swaps: dict[str, int] = {}
        self.payload_records: dict[str, int] = {}
        # Safe rollout: the workers' counters, answers (count, latency) by model version; the supervisor's state.
        self.rollout: dict[str, int] = {}
        self.versions: dict[str, list[float]] = {}
        self.rollout_state: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "requests": [[route, status, count] for (route, status), count in self.requests.items()],
                "latency": self.latency,
                "predictions": self.predictions,
                "model_calls": self.model_calls,
                "models": sorted(self.models),
                "artifacts": sorted(self.artifacts),
                "worker_restarts": self.worker_restarts,
                "crash_looping": self.crash_looping,
                "model_swaps": self.model_swaps,
                "payload_records": self.payload_records,
                "rollout": self.rollout,
                "versions": self.versions,
                "rollout_state": self.rollout_state,
            }
        )

    def add(self, snapshot: dict) -> None:
        for route, status, count in snapshot["requests"]:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + count
        for route, counts in snapshot["latency"].items():
            mine = self.latency.setdefault(route, [0] * len(counts))
            self.latency[route] = [a + b for a, b in zip(mine, counts, strict=True)]
        _add_counts(self.predictions, snapshot["predictions"])
        _add_counts(self.model_calls, snapshot["model_calls"])
        self.models.update((name, version) for name, version in snapshot["models"])
        self.artifacts.update((name, version, sha) for name, version, sha in snapshot.get("artifacts", []))
        _add_counts(self.worker_restarts, snapshot.get("worker_restarts", {}))
        self.crash_looping += snapshot.get("crash_looping", 0)
        _add_counts(self.model_swaps, snapshot.get("model_swaps", {}))
        _add_counts(self.payload_records, snapshot.get("payload_records", {}))
        _add_counts(self.rollout, snapshot.get("rollout", {}))
        for version, counts in snapshot.get("versions", {}).items():
            mine = self.versions.setdefault(version, [0] * len(counts))
            self.versions[version] = [a + b for a, b in zip(mine, counts, strict=True)]
        self.rollout_state = snapshot.get("rollout_state") or self.rollout_state


class Metrics:
    @property
    def content_type(self) -> bytes:
        from prometheus_client import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST.encode()

    def __init__(self, directory: str | None = None, owner: str | None = None) -> None:
        self.totals = Totals()
        self._directory = Path(directory) if directory else None
        owner = owner or str(os.getpid())
        self._snapshot = self._directory / f"worker-{owner}.json" if self._directory else None
        self._flush = FlushLater(self.save, FLUSH_SECONDS)

    def observe(self, route: str, status: int, seconds: float) -> None:
        totals = self.totals
        key = (route, status)
        totals.requests[key] = totals.requests.get(key, 0) + 1
        latency = totals.latency.get(route)
        if latency is None:
            latency = totals.latency[route] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
        latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # a bucket counts values <= its bound
        latency[-1] += seconds
        if self._snapshot is not None:
            self._flush.request()

    def observe_version(self, version: str, seconds: float) -> None:
        """A scoring call answered by model `version` (a rollout's two versions side by side)."""
        latency = self.totals.versions.get(version)
        if latency is None:
            latency = self.totals.versions[version] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
        latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency[-1] += seconds

    def touch(self) -> None:
        """Counted outside a request (a shadow copy): the snapshot is written soon all the same."""
        if self._snapshot is not None:
            self._flush.request()

    def count_predictions(self, method: str, rows: int) -> None:
        predictions = self.totals.predictions
        predictions[method] = predictions.get(method, 0) + rows

    def count_payload_records(self, outcome: str, count: int) -> None:
        """Payload records by outcome (PAYLOAD_OUTCOMES); on the event loop's thread, as every count here."""
        records = self.totals.payload_records
        records[outcome] = records.get(outcome, 0) + count
        if self._snapshot is not None:
            self._flush.request()

    def serving(self, name: str, version: str, model_calls: dict[str, int], sha256: str | None = None) -> None:
        """A model is loaded (or swapped in): label it, and count its calls from `model_calls` (the runner's)."""
        self.totals.models = {(name, version)}
        self.totals.artifacts = {(name, version, sha256)} if sha256 else set()
        previous = self.totals.model_calls
        self.totals.model_calls = model_calls
        for method, count in previous.items():  # counters never go back across a swap
            model_calls[method] = model_calls.get(method, 0) + count
        self.save()

    def render(self) -> bytes:
        # prometheus-client is imported at the first scrape, not at start: ~50 ms off every cold start.
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Exposition(self._gather()))
        return generate_latest(registry)

    def _gather(self) -> Totals:
        if self._directory is None:
            return self.totals
        self.save()
        gathered = Totals()
        for path in self._directory.glob("worker-*.json"):
            try:
                gathered.add(orjson.loads(path.read_bytes()))
            except (OSError, ValueError) as exc:  # a worker's snapshot that cannot be read is left out
                log.warning("metrics: skipping %s: %s", path.name, exc)
        return gathered

    def save(self) -> None:
        """Write this worker's snapshot now (at shutdown, before a scrape); alone, it has none."""
        if self._snapshot is None:
            return
        partial = self._snapshot.with_suffix(".partial")
        try:
            partial.write_bytes(self.totals.to_json())
            os.replace(partial, self._snapshot)  # readers see the old snapshot or the new, never half
        except OSError as exc:
            log.warning("metrics: cannot write %s: %s", self._snapshot, exc)


class _Exposition:
    """A prometheus-client collector over gathered totals."""

    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        totals = self.totals
        requests = CounterMetricFamily("diabetes_http_requests", "HTTP requests answered", labels=["route", "status"])
        for (route, status), count in sorted(_with_zeros(totals.requests, ALERTED_REQUESTS).items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "diabetes_http_request_duration_seconds", "Time from request to response", labels=["route"]
        )
        no_calls = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
        for route, counts in sorted(_with_zeros(totals.latency, ALERTED_LATENCY_ROUTES, no_calls).items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, LATENCY_BUCKETS), "+Inf"], counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, sum_value=counts[-1])
        yield latency
        yield _by_method("diabetes_predictions", "Rows scored, by method", totals.predictions)
        yield _by_method(
            "diabetes_model_calls",
            "Calls to the model, by method (fewer than requests when gathered)",
            totals.model_calls,
        )
        model = GaugeMetricFamily(
            "diabetes_model_info",
            "The served model (value 1), labelled with its name and version",
            labels=["name", "version"],
        )
        for name, version in sorted(totals.models):
            model.add_metric([name, version], 1)
        yield model
        artifact = GaugeMetricFamily(
            "diabetes_model_artifact_info",
            "The served artifact file (value 1), labelled with its sha256: what --model-sha256 pins",
            labels=["name", "version", "sha256"],
        )
        for name, version, sha in sorted(totals.artifacts):
            artifact.add_metric([name, version, sha], 1)
        yield artifact
        yield _labelled(
            "diabetes_worker_restarts",
            "Workers replaced by the supervisor, by why the old one ended (exit, signal, heartbeat)",
            "reason",
            _with_zeros(totals.worker_restarts, RESTART_REASONS),
        )
        yield _labelled(
            "diabetes_model_swaps",
            "New model versions the supervisor prepared, by outcome (swapped, or refused and why)",
            "outcome",
            _with_zeros(totals.model_swaps, SWAP_OUTCOMES),
        )
        yield _labelled(
            "diabetes_payload_records",
            "Payload records (--log-payloads), by outcome: written, dropped (sink failing or queue full), sampled_out",
            "outcome",
            _with_zeros(totals.payload_records, PAYLOAD_OUTCOMES),
        )
        yield from _rollout(totals)
        yield GaugeMetricFamily(
            "diabetes_workers_crash_looping",
            "Worker slots that failed several times in a row and wait out a growing backoff",
            value=totals.crash_looping,
        )


def _rollout(totals: Totals) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    state = GaugeMetricFamily(
        "diabetes_rollout_state", "The safe rollout's state: 1 for the current one", labels=["state"]
    )
    for name in ROLLOUT_STATES:
        state.add_metric([name], 1 if name == (totals.rollout_state or "off") else 0)
    yield state
    for name, documentation in ROLLOUT_COUNTERS.items():
        yield CounterMetricFamily(f"diabetes_rollout_{name}", documentation, value=totals.rollout.get(name, 0))
    latency = HistogramMetricFamily(
        "diabetes_model_version_duration_seconds",
        "Scoring calls answered during a rollout, by the model version that computed them: time in the model",
        labels=["version"],
    )
    for version, counts in sorted(totals.versions.items()):
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, LATENCY_BUCKETS), "+Inf"], counts[:-1], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        latency.add_metric([version], buckets, sum_value=counts[-1])
    yield latency


def _with_zeros(counts: dict, keys: tuple, zero: object = 0) -> dict:
    """`counts`, with a `zero` for each of `keys` not counted yet."""
    return {**dict.fromkeys(keys, zero), **counts}


def _add_counts(mine: dict[str, int], theirs: dict[str, int]) -> None:
    for key, count in theirs.items():
        mine[key] = mine.get(key, 0) + count


def _by_method(name: str, documentation: str, counts: dict[str, int]) -> Metric:
    return _labelled(name, documentation, "method", counts)


def _labelled(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    """A counter family with one sample per value of `label`."""
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family
