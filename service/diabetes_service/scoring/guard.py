"""The challenger's guardrails in one worker: its last calls, and whether it must be rolled back.

Over a sliding window of the challenger's last `guard_min_calls` calls (the window fills first: no
decision rests on fewer), the challenger is rolled back when
- its error rate (calls it could not score that the champion scored, exceptions, timeouts) passes
  `guard_error_rate`; errors are counted against the whole window from the first call, so a
  challenger that fails at once is stopped at once rather than after N calls;
- its p99 passes `guard_p99_ms`;
- its divergence (share of rows whose answers are beyond `divergence_tolerance` of the champion's,
  label disagreement for classifiers; shadow only, where both answers exist) passes `guard_divergence`.
The decision is the worker's; board.py makes it every worker's (scoring/rollout.py). A batch of
shadow copies (scoring/shadow.py) is one call each in the window, decided on once, after its last.
"""

from __future__ import annotations

from collections import deque

from diabetes_service.settings import ServiceSettings


class Guard:
    def __init__(self, settings: ServiceSettings) -> None:
        self.size = settings.guard_min_calls
        self.error_rate = settings.guard_error_rate
        self.p99 = None if settings.guard_p99_ms is None else settings.guard_p99_ms / 1000
        self.divergence = settings.guard_divergence
        self.window: deque[tuple[bool, float, int, int]] = deque(maxlen=self.size)  # ok, seconds, diverged, rows
        self.errors = 0

    def reset(self) -> None:
        self.window.clear()
        self.errors = 0

    def record(self, ok: bool, seconds: float, diverged: int = 0, rows: int = 0) -> str | None:
        """Count one challenger call; the reason to roll back, when a guardrail is passed."""
        self._push(ok, seconds, diverged, rows)
        return self._decide()

    def record_scored(self, seconds: float, copies: list[tuple[int, int]]) -> str | None:
        """Count the shadow copies of one batch, each scored (`diverged`, `rows`) in `seconds`: each one
        call in the window, decided once after the last (an error rate only falls as they come)."""
        for diverged, rows in copies:
            self._push(True, seconds, diverged, rows)
        return self._decide()

    def _push(self, ok: bool, seconds: float, diverged: int, rows: int) -> None:
        window = self.window
        if len(window) == self.size and not window[0][0]:
            self.errors -= 1  # the oldest call, an error, leaves the window
        window.append((ok, seconds, diverged, rows))
        if not ok:
            self.errors += 1

    def _decide(self) -> str | None:
        window = self.window
        if self.errors > self.error_rate * self.size:
            return f"error rate {self.errors}/{len(window)} calls over {self.error_rate:.2%}"
        if len(window) < self.size:
            return None
        if self.p99 is not None:
            times = sorted(seconds for _, seconds, _, _ in window)
            p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
            if p99 > self.p99:
                return f"p99 {p99 * 1000:.1f} ms over {self.p99 * 1000:g} ms"
        if self.divergence is not None:
            compared = sum(rows for *_, rows in window)
            diverged = sum(d for _, _, d, _ in window)
            if compared and diverged / compared > self.divergence:
                return f"divergence {diverged}/{compared} rows over {self.divergence:.2%}"
        return None
