"""Latency and outcome figures of a list of calls `(sent, done, outcome)`."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q ≤ 100) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Summary:
    calls: int
    first_sent: float
    last_done: float
    outcomes: dict[int | str, int]  # HTTP status or exception name -> count
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def errors(self) -> int:
        return self.calls - self.outcomes.get(200, 0)

    @property
    def rate(self) -> float:
        span = self.last_done - self.first_sent
        return self.calls / span if span > 0 else 0.0

    @staticmethod
    def merge(parts: list[Summary]) -> Summary:
        """Several generators' summaries as one; percentiles are the worst part's (a bound, not a blend)."""
        outcomes: Counter = Counter()
        for part in parts:
            outcomes.update(part.outcomes)
        return Summary(
            calls=sum(part.calls for part in parts),
            first_sent=min(part.first_sent for part in parts),
            last_done=max(part.last_done for part in parts),
            outcomes=dict(outcomes),
            p50_ms=max(part.p50_ms for part in parts),
            p99_ms=max(part.p99_ms for part in parts),
            max_ms=max(part.max_ms for part in parts),
        )


def summarize(calls: list[tuple[float, float, int | str]]) -> Summary:
    latencies = [(done - sent) * 1000 for sent, done, _ in calls]
    return Summary(
        calls=len(calls),
        first_sent=min((sent for sent, _, _ in calls), default=0.0),
        last_done=max((done for _, done, _ in calls), default=0.0),
        outcomes=dict(Counter(outcome for _, _, outcome in calls)),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=0.0),
    )


def describe(outcomes: dict[int | str, int]) -> str:
    """`200 × 5,012, ConnectionResetError × 3`: most frequent first."""
    return ", ".join(f"{outcome} × {count:,}" for outcome, count in Counter(outcomes).most_common()) or "none"
