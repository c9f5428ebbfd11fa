"""Which workers are warm, in memory shared by the supervisor and every worker it forks.

Readiness is a property of the service, not of whichever worker answers the probe: the service
is ready only when every worker has loaded the model and answered its warm-up prediction, so a
load balancer never sends traffic to a worker that would have to turn it away.
"""

from __future__ import annotations

import ctypes
from multiprocessing.sharedctypes import RawArray


class WorkerBoard:
    def __init__(self, workers: int) -> None:
        # Anonymous shared memory, created before the fork: every worker sees the same bytes.
        self._warm = RawArray(ctypes.c_byte, workers)

    def mark(self, slot: int, warm: bool) -> None:
        self._warm[slot] = 1 if warm else 0

    def all_warm(self) -> bool:
        return all(self._warm)


# Set in a worker right after the fork; None when the app runs outside the supervisor.
current: tuple[WorkerBoard, int] | None = None
