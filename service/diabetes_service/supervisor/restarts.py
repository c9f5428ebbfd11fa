"""How the supervisor paces worker restarts, and what it tells the log and /metrics about them.

A worker that served for a while and died is replaced at once. One that dies again soon after its
start is in a crash loop: each further restart waits twice as long as the one before (0.5 s up to
30 s), so a model that crashes its workers does not burn the CPUs the live ones need. Restarts are
counted by reason in a metrics snapshot of the supervisor's own, added up with the workers'.
"""

from __future__ import annotations

import logging
import signal

from diabetes_service.observability.metrics import Metrics

log = logging.getLogger("diabetes_service.supervisor")

STABLE_SECONDS = 10.0  # a worker that lived this long was not crash-looping
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
CRASH_LOOP_AFTER = 3  # failures in a row that count as a crash loop in /metrics


class RestartLog:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics  # the supervisor's own snapshot
        self.started: dict[int, float] = {}
        self.failures: dict[int, int] = {}  # failures in a row, by slot
        self.hung_slots: set[int] = set()

    def spawned(self, slot: int, now: float) -> None:
        self.started[slot] = now

    def hung(self, slot: int) -> None:
        """The slot's worker is being killed for its silence: its end counts as a heartbeat restart."""
        self.hung_slots.add(slot)

    def record(self, slot: int, code: int, now: float) -> float:
        """A worker ended unasked: count it, log it, and say how long to wait before its replacement."""
        if slot in self.hung_slots:
            reason, how = "heartbeat", "was killed for missing its heartbeat"
            self.hung_slots.discard(slot)
        elif code < 0:
            reason, how = "signal", f"was killed by {signal.Signals(-code).name}"
        else:
            reason, how = "exit", f"exited with status {code}"
        stable = now - self.started.get(slot, now) >= STABLE_SECONDS
        failures = 1 if stable else self.failures.get(slot, 0) + 1
        self.failures[slot] = failures
        delay = 0.0 if failures == 1 else min(FIRST_BACKOFF_SECONDS * 2 ** (failures - 2), MAX_BACKOFF_SECONDS)
        if failures >= CRASH_LOOP_AFTER:
            log.error(
                "worker slot %d %s (%d failures in a row): crash loop, next start in %.1fs", slot, how, failures, delay
            )
        else:
            log.warning("worker slot %d %s; starting a new one in %.1fs", slot, how, delay)
        totals = self.metrics.totals
        totals.worker_restarts[reason] = totals.worker_restarts.get(reason, 0) + 1
        self._publish()
        return delay

    def settle(self, slot: int, now: float) -> None:
        """The slot's worker is alive: once it has lived STABLE_SECONDS, it is no longer failing."""
        if self.failures.get(slot) and now - self.started.get(slot, now) >= STABLE_SECONDS:
            self.failures[slot] = 0
            self._publish()

    def _publish(self) -> None:
        self.metrics.totals.crash_looping = sum(count >= CRASH_LOOP_AFTER for count in self.failures.values())
        self.metrics.save()
