"""What each worker is doing, in memory shared by the supervisor and every worker it forks.

Readiness is a property of the service, not of whichever worker answers the probe: the service
is ready only when every worker that takes connections has loaded the model and answered its
warm-up prediction, so a load balancer never sends traffic to a worker that would turn it away.
A replacement worker takes no connections until it is warm, so its restart does not turn the
service unready.

Each worker also beats here from its event loop; the supervisor replaces one whose beat stops (a
SIGSTOP, a model call stuck in C on the loop). The model's generation says when the supervisor has
prepared a new version: each worker then loads it and swaps it in between requests.
"""

from __future__ import annotations

import ctypes
import time
from multiprocessing.sharedctypes import RawArray

COLD = 0  # listening, still loading the model: answers 503 to scoring
WARM = 1  # listening and warm
AWAY = 2  # not accepting: a replacement loading its model (live workers adopt its socket), a dead worker's slot


class WorkerBoard:
    def __init__(self, workers: int) -> None:
        # Anonymous shared memory, created before the fork: every worker sees the same bytes.
        self._state = RawArray(ctypes.c_byte, workers)
        self._beat = RawArray(ctypes.c_double, workers)  # time.monotonic(): one clock for every process
        self._generation = RawArray(ctypes.c_long, 1)  # bumped when a new model version is announced

    def mark(self, slot: int, state: int) -> None:
        self._state[slot] = state

    def state(self, slot: int) -> int:
        return self._state[slot]

    def beat(self, slot: int) -> None:
        self._beat[slot] = time.monotonic()

    def last_beat(self, slot: int) -> float:
        return self._beat[slot]

    def announce_generation(self, generation: int) -> None:
        self._generation[0] = generation

    def generation(self) -> int:
        return self._generation[0]

    def all_warm(self) -> bool:
        """Every listening worker is warm, and at least one is."""
        states = list(self._state)
        return COLD not in states and WARM in states


# Set in a worker right after the fork; None when the app runs outside the supervisor.
current: tuple[WorkerBoard, int] | None = None
