"""Saturation finder: a step-load shape that adds users until p95 crosses its SLO.

Each step holds a user count for `DIABETES_SATURATION_STEP_SECONDS`, then measures that step alone
(requests and latencies made during it): its req/s and p95. The run stops at the first step whose
p95 exceeds `DIABETES_SATURATION_P95_MS` (or whose failure ratio exceeds
`DIABETES_SATURATION_MAX_FAILURE_RATIO`), at `DIABETES_SATURATION_MAX_USERS`, or after
`DIABETES_SATURATION_MAX_SECONDS`, whichever comes first; it then logs the highest req/s a step held
within the SLO and writes every step to `DIABETES_SATURATION_RESULT` (JSON) when that is set.
Runs on the master (or the single local process): in a distributed run the master's statistics
are the workers' reports, so steps shorter than a few report intervals (3 s) measure poorly.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from locust import LoadTestShape
from locust.stats import StatsEntry, calculate_response_time_percentile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """What one step measured."""

    users: int
    seconds: float
    requests: int
    failures: int
    rps: float
    p95_ms: float | None

    def within(self, p95_target_ms: float, max_failure_ratio: float) -> bool:
        """True when the step answered, its p95 met the target and few enough requests failed.

        Failures count too: a service answering fast 503s has a fine p95 and holds nothing.
        """
        return (
            self.requests > 0
            and self.p95_ms is not None
            and self.p95_ms <= p95_target_ms
            and self.failures <= max_failure_ratio * self.requests
        )


@dataclass(frozen=True)
class SaturationResult:
    """The finder's verdict: the best step held within the SLO (None if none did), and why it stopped."""

    p95_target_ms: float
    best: Step | None
    stopped_because: str
    steps: list[Step]

    def summary(self) -> str:
        """One line: the highest req/s held within the p95 SLO."""
        if self.best is None:
            return f"saturation: no step held p95 <= {self.p95_target_ms:g} ms (stopped: {self.stopped_because})"
        return (
            f"saturation: highest throughput within p95 <= {self.p95_target_ms:g} ms: "
            f"{self.best.rps:.1f} req/s at {self.best.users} users "
            f"(p95 {self.best.p95_ms:g} ms; stopped: {self.stopped_because})"
        )

    def to_json(self) -> str:
        """The result as JSON, every step included."""
        return json.dumps(
            {
                "p95_target_ms": self.p95_target_ms,
                "best": asdict(self.best) if self.best else None,
                "stopped_because": self.stopped_because,
                "steps": [asdict(step) for step in self.steps],
            },
            indent=2,
        )


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


class SaturationShape(LoadTestShape):
    """Step load: `step_users` more users every `step_seconds`, stopping once p95 crosses the target."""

    def __init__(self) -> None:
        super().__init__()
        self.p95_target_ms = _env_float("DIABETES_SATURATION_P95_MS", 250.0)
        self.max_failure_ratio = _env_float("DIABETES_SATURATION_MAX_FAILURE_RATIO", 0.01)
        self.step_users = max(1, int(_env_float("DIABETES_SATURATION_STEP_USERS", 2)))
        self.step_seconds = max(1.0, _env_float("DIABETES_SATURATION_STEP_SECONDS", 10.0))
        self.max_users = max(self.step_users, int(_env_float("DIABETES_SATURATION_MAX_USERS", 50)))
        self.max_seconds = _env_float("DIABETES_SATURATION_MAX_SECONDS", 300.0)
        result = os.environ.get("DIABETES_SATURATION_RESULT")
        self.result_path = Path(result) if result else None
        self.steps: list[Step] = []
        self._step_started: float | None = None
        self._snapshot: tuple[int, int, dict[int, int]] = (0, 0, {})
        self.result: SaturationResult | None = None

    @property
    def _users(self) -> int:
        return min(self.max_users, self.step_users * (len(self.steps) + 1))

    @property
    def _total(self) -> StatsEntry:
        assert self.runner is not None, "Locust sets the runner before the first tick"
        return self.runner.stats.total

    def _take_snapshot(self) -> None:
        total = self._total
        self._snapshot = (total.num_requests, total.num_failures, dict(total.response_times))
        self._step_started = time.monotonic()

    def _close_step(self) -> Step:
        total = self._total
        requests0, failures0, times0 = self._snapshot
        times = {ms: n - times0.get(ms, 0) for ms, n in total.response_times.items()}
        times = {ms: n for ms, n in times.items() if n > 0}
        requests = total.num_requests - requests0
        seconds = time.monotonic() - (self._step_started or time.monotonic())
        p95 = calculate_response_time_percentile(times, sum(times.values()), 0.95) if times else None
        step = Step(
            users=self._users,
            seconds=round(seconds, 2),
            requests=requests,
            failures=total.num_failures - failures0,
            rps=round(requests / seconds, 2) if seconds > 0 else 0.0,
            p95_ms=p95,
        )
        log.info(
            "saturation step: %d users, %.1f req/s, p95 %s ms, %d failures",
            step.users,
            step.rps,
            step.p95_ms,
            step.failures,
        )
        self.steps.append(step)
        return step

    def _finish(self, because: str) -> None:
        held = [step for step in self.steps if step.within(self.p95_target_ms, self.max_failure_ratio)]
        best = max(held, key=lambda step: step.rps) if held else None
        self.result = SaturationResult(self.p95_target_ms, best, because, list(self.steps))
        log.info("%s", self.result.summary())
        if self.result_path:
            self.result_path.write_text(self.result.to_json() + "\n")

    def tick(self) -> tuple[int, float] | None:
        """Called every second: the user count for now, or None to stop."""
        if self.result is not None:
            return None
        if self._step_started is None:
            self._take_snapshot()
            return self._users, float(self.step_users)
        if time.monotonic() - self._step_started < self.step_seconds:
            return self._users, float(self.step_users)
        at_max = self._users >= self.max_users
        step = self._close_step()
        if not step.within(self.p95_target_ms, self.max_failure_ratio):
            self._finish(
                f"{step.users} users broke the SLO (p95 {step.p95_ms} ms, {step.failures}/{step.requests} failed)"
            )
        elif at_max:
            self._finish(f"reached the {self.max_users}-user limit within the SLO")
        elif self.get_run_time() + self.step_seconds > self.max_seconds:
            self._finish(f"reached the {self.max_seconds:g} s time limit within the SLO")
        if self.result is not None:
            return None
        self._take_snapshot()
        return self._users, float(self.step_users)
